"""Statistics of a run, kept in constant memory per request, and request hooks.

``Stats`` counts requests by status and by error, retries, results and
failures; keeps request durations in a log-scale histogram (percentiles
without storing every duration) and requests per second of the run.
``Stats.snapshot()`` returns a ``StatsSnapshot`` record; ``summary()`` one
line for a log or a notebook.

Hooks see every request: ``before_request(event)`` and
``after_request(event)``; ``LogHook`` logs them (DEBUG by default).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Hook", "LogHook", "RequestEvent", "Stats", "StatsSnapshot", "quantile"]

# Histogram buckets: 20 per decade from 10 us to 100 s.
_BUCKETS_PER_DECADE = 20
_LOWEST = 1e-5
_NBUCKETS = 7 * _BUCKETS_PER_DECADE + 1


def quantile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (sorted ascending), nearest rank; NaN if empty.

    The smallest value with at least ``fraction`` of the values at or below
    it: a value that really occurred, never an interpolation. The lessons'
    delivery delays (03, 09) use this rule. (``Stats`` durations are kept
    in a histogram instead, so their percentiles are bucket bounds, up to
    about 12 % above the true value.)
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    if not values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(values)))
    return values[rank - 1]


@dataclass(frozen=True)
class StatsSnapshot:
    """The figures of a run at one moment."""

    elapsed: float
    requests: int
    results: int
    failures: int
    retries: int
    by_status: dict[str, int]
    errors: dict[str, int]
    duration_mean: float
    duration_p50: float
    duration_p95: float
    duration_max: float
    per_second: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Requests per second over the whole run."""
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0


class Stats:
    """Counters for one run (or several, if shared). Cheap to update."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.requests = 0
        self.results = 0
        self.failures = 0
        self.retries = 0
        self.by_status: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self._per_second: list[int] = []
        self._hist = [0] * _NBUCKETS
        self._total_time = 0.0
        self._max_time = 0.0
        self._last = 0.0

    def start(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def record_request(self, status: int | None, error: BaseException | None, duration: float) -> None:
        """One HTTP attempt (answered with ``status``, or failed with ``error``)."""
        now = time.monotonic()
        if self.started is None:
            self.started = now - duration
        self._last = now
        self.requests += 1
        if error is not None:
            self.errors[type(error).__name__] += 1
        elif status is not None:
            self.by_status[status] += 1
        second = int(now - self.started)
        per_second = self._per_second
        while len(per_second) <= second:
            per_second.append(0)
        per_second[second] += 1
        self._total_time += duration
        if duration > self._max_time:
            self._max_time = duration
        index = 0 if duration <= _LOWEST else int(math.log10(duration / _LOWEST) * _BUCKETS_PER_DECADE)
        self._hist[min(index, _NBUCKETS - 1)] += 1

    def record_retry(self) -> None:
        self.retries += 1

    def record_outcome(self, ok: bool) -> None:
        if ok:
            self.results += 1
        else:
            self.failures += 1

    def _percentile(self, fraction: float) -> float:
        timed = sum(self._hist)
        if timed == 0:
            return 0.0
        rank = fraction * timed
        seen = 0
        for index, count in enumerate(self._hist):
            seen += count
            if seen >= rank:
                upper = _LOWEST * 10 ** ((index + 1) / _BUCKETS_PER_DECADE)
                return min(upper, self._max_time)
        return self._max_time

    def snapshot(self) -> StatsSnapshot:
        elapsed = 0.0 if self.started is None else (self._last or time.monotonic()) - self.started
        return StatsSnapshot(
            elapsed=elapsed,
            requests=self.requests,
            results=self.results,
            failures=self.failures,
            retries=self.retries,
            by_status={str(k): v for k, v in sorted(self.by_status.items())},
            errors=dict(sorted(self.errors.items())),
            duration_mean=self._total_time / self.requests if self.requests else 0.0,
            duration_p50=self._percentile(0.50),
            duration_p95=self._percentile(0.95),
            duration_max=self._max_time,
            per_second=list(self._per_second),
        )

    def summary(self) -> str:
        s = self.snapshot()
        statuses = ", ".join(f"{k}: {v}" for k, v in s.by_status.items()) or "none"
        errors = ", ".join(f"{k}: {v}" for k, v in s.errors.items()) or "none"
        return (
            f"{s.results} results, {s.failures} failures, {s.requests} requests "
            f"({s.retries} retries) in {s.elapsed:.1f} s = {s.rate:.0f}/s; "
            f"status {{{statuses}}}; errors {{{errors}}}; "
            f"duration p50 {s.duration_p50 * 1e3:.1f} ms, p95 {s.duration_p95 * 1e3:.1f} ms"
        )


@dataclass(slots=True)
class RequestEvent:
    """What a hook sees: before a request ``status``/``error``/``duration`` are unset."""

    item: Any
    url: str
    attempt: int
    stage: str = ""
    status: int | None = None
    error: BaseException | None = None
    duration: float = 0.0


class Hook(Protocol):
    def before_request(self, event: RequestEvent) -> None: ...

    def after_request(self, event: RequestEvent) -> None: ...


class LogHook:
    """Log a line before and after each request."""

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.DEBUG) -> None:
        self.logger = logger or logging.getLogger("course.requests")
        self.level = level

    def before_request(self, event: RequestEvent) -> None:
        self.logger.log(self.level, "-> %s (item %r, attempt %d)", event.url, event.item, event.attempt)

    def after_request(self, event: RequestEvent) -> None:
        outcome = event.status if event.error is None else type(event.error).__name__
        self.logger.log(
            self.level, "<- %s %s in %.1f ms (item %r)", event.url, outcome, event.duration * 1e3, event.item
        )
