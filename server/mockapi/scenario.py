"""What the mock API is told to do wrong: the scenario record, read from JSON.

A scenario is plain data. ``Scenario.from_json`` checks every field and
raises :class:`ScenarioError` naming the field at fault; ``to_json`` gives the
normalized form back with every key present, so ``GET /_scenario`` always shows
the whole picture.

Times are seconds since the scenario started (the moment it was installed by
``PUT /_scenario``, ``POST /_reset`` or at server start).

Outage windows answer 503. Their ``Retry-After`` header is the window's
``retry_after`` when one is configured, otherwise the whole seconds left until
the window ends (rounded up, at least 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Latency", "Outage", "RateLimit", "RepeatingOutage", "Scenario", "ScenarioError"]

#: Largest latency (mean + jitter) and largest time value a scenario may ask for, in seconds.
MAX_LATENCY = 30.0
MAX_SECONDS = 86_400.0


class ScenarioError(ValueError):
    """A scenario field is missing its right type or range; the message names the field."""


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` admitted requests in any window of ``per`` seconds."""

    requests: int
    per: float = 1.0


@dataclass(frozen=True)
class Outage:
    """One window ``[start, start + duration)`` answered with 503."""

    start: float
    duration: float
    retry_after: int | None = None


@dataclass(frozen=True)
class RepeatingOutage:
    """Windows ``[start + k*period, start + k*period + duration)`` for k = 0, 1, 2...

    ``start`` defaults to ``period``: the first period runs without an outage.
    """

    period: float
    duration: float
    retry_after: int | None = None
    start: float | None = None

    @property
    def first_start(self) -> float:
        return self.period if self.start is None else self.start


@dataclass(frozen=True)
class Latency:
    """Seconds added to each admitted request: uniform in ``[mean - jitter, mean + jitter]``, floored at 0."""

    mean: float = 0.0
    jitter: float = 0.0


@dataclass(frozen=True)
class Scenario:
    """The whole scenario; the default misbehaves in no way at all."""

    rate_limit: RateLimit | None = None
    outages: tuple[Outage, ...] = ()
    outage_every: RepeatingOutage | None = None
    error_rate: float = 0.0
    drop_rate: float = 0.0
    latency: Latency = field(default_factory=Latency)
    seed: int = 0

    @property
    def is_quiet(self) -> bool:
        """True when no request can be limited, failed, dropped or delayed."""
        return self == Scenario(seed=self.seed)

    @property
    def needs_dice(self) -> bool:
        """True when some request may be dropped, failed or delayed."""
        return bool(self.error_rate or self.drop_rate or self.latency.mean or self.latency.jitter)

    def outage_at(self, t: float) -> tuple[float, int | None] | None:
        """``(seconds until the window ends, configured retry_after)`` if ``t`` is inside an outage."""
        for outage in self.outages:
            if outage.start <= t < outage.start + outage.duration:
                return outage.start + outage.duration - t, outage.retry_after
        every = self.outage_every
        if every is not None and t >= every.first_start:
            into = (t - every.first_start) % every.period
            if into < every.duration:
                return every.duration - into, every.retry_after
        return None

    @classmethod
    def from_json(cls, data: Any) -> Scenario:
        """Check and convert a decoded JSON object; missing keys take their defaults."""
        obj = _object(data, "scenario", _SCENARIO_KEYS)
        rate = obj.get("rate_limit")
        if rate is not None:
            r = _object(rate, "rate_limit", {"requests", "per"})
            if "requests" not in r:
                raise ScenarioError("rate_limit.requests is required (an integer >= 1), e.g. {\"requests\": 100, \"per\": 1.0}")
            rate = RateLimit(
                requests=_int(r["requests"], "rate_limit.requests", low=1),
                per=_number(r.get("per", 1.0), "rate_limit.per", low=0.0, high=MAX_SECONDS, low_open=True),
            )
        outages_raw = obj.get("outages", [])
        if not isinstance(outages_raw, list):
            raise ScenarioError("outages must be a list of {\"start\": s, \"duration\": s, \"retry_after\": n}")
        outages = tuple(_outage(o, f"outages[{i}]") for i, o in enumerate(outages_raw))
        every = obj.get("outage_every")
        if every is not None:
            e = _object(every, "outage_every", {"period", "duration", "retry_after", "start"})
            for key in ("period", "duration"):
                if key not in e:
                    raise ScenarioError(f"outage_every.{key} is required (seconds > 0)")
            period = _number(e["period"], "outage_every.period", low=0.0, high=MAX_SECONDS, low_open=True)
            duration = _number(e["duration"], "outage_every.duration", low=0.0, high=MAX_SECONDS, low_open=True)
            if duration >= period:
                raise ScenarioError("outage_every.duration must be shorter than outage_every.period")
            start = e.get("start")
            every = RepeatingOutage(
                period=period,
                duration=duration,
                retry_after=_retry_after(e.get("retry_after"), "outage_every.retry_after"),
                start=None if start is None else _number(start, "outage_every.start", low=0.0, high=MAX_SECONDS),
            )
        lat = _object(obj.get("latency") or {}, "latency", {"mean", "jitter"})
        latency = Latency(
            mean=_number(lat.get("mean", 0.0), "latency.mean", low=0.0, high=MAX_LATENCY),
            jitter=_number(lat.get("jitter", 0.0), "latency.jitter", low=0.0, high=MAX_LATENCY),
        )
        if latency.mean + latency.jitter > MAX_LATENCY:
            raise ScenarioError(f"latency.mean + latency.jitter must be at most {MAX_LATENCY:g} seconds")
        return cls(
            rate_limit=rate,
            outages=outages,
            outage_every=every,
            error_rate=_number(obj.get("error_rate", 0.0), "error_rate", low=0.0, high=1.0),
            drop_rate=_number(obj.get("drop_rate", 0.0), "drop_rate", low=0.0, high=1.0),
            latency=latency,
            seed=_int(obj.get("seed", 0), "seed", low=0),
        )

    def to_json(self) -> dict[str, Any]:
        """The normalized scenario, every key present (what ``GET /_scenario`` shows)."""
        rate = self.rate_limit
        every = self.outage_every
        return {
            "rate_limit": None if rate is None else {"requests": rate.requests, "per": rate.per},
            "outages": [
                {"start": o.start, "duration": o.duration, "retry_after": o.retry_after} for o in self.outages
            ],
            "outage_every": None
            if every is None
            else {
                "period": every.period,
                "duration": every.duration,
                "retry_after": every.retry_after,
                "start": every.first_start,
            },
            "error_rate": self.error_rate,
            "drop_rate": self.drop_rate,
            "latency": {"mean": self.latency.mean, "jitter": self.latency.jitter},
            "seed": self.seed,
        }


_SCENARIO_KEYS = {"rate_limit", "outages", "outage_every", "error_rate", "drop_rate", "latency", "seed"}


def _object(value: Any, name: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ScenarioError(f"{name} must be a JSON object, not {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ScenarioError(f"{name} has unknown key(s) {unknown}; allowed keys are {sorted(allowed)}")
    return value


def _number(
    value: Any, name: str, *, low: float, high: float | None = None, low_open: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScenarioError(f"{name} must be a number, not {value!r}")
    if value < low or (low_open and value == low) or (high is not None and value > high):
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        upper = f" and <= {high:g}" if high is not None else ""
        raise ScenarioError(f"{name} must be {bound}{upper}, not {value!r}")
    return float(value)


def _int(value: Any, name: str, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(f"{name} must be an integer, not {value!r}")
    if value < low:
        raise ScenarioError(f"{name} must be >= {low}, not {value!r}")
    return value


def _retry_after(value: Any, name: str) -> int | None:
    return None if value is None else _int(value, name, low=1)


def _outage(value: Any, name: str) -> Outage:
    o = _object(value, name, {"start", "duration", "retry_after"})
    for key in ("start", "duration"):
        if key not in o:
            raise ScenarioError(f"{name}.{key} is required (seconds since the scenario started)")
    return Outage(
        start=_number(o["start"], f"{name}.start", low=0.0, high=MAX_SECONDS),
        duration=_number(o["duration"], f"{name}.duration", low=0.0, high=MAX_SECONDS, low_open=True),
        retry_after=_retry_after(o.get("retry_after"), f"{name}.retry_after"),
    )
