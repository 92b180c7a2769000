"""Decide, per request, what the scenario does to it.

The checks run in this order, and the first that applies answers:

1. **outage** — inside an outage window: 503 with ``Retry-After``.
2. **rate limit** — over the sliding-window limit: 429 with ``Retry-After``
   (whole seconds until a slot frees, rounded up, at least 1) and
   ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` / ``X-RateLimit-Reset``
   (seconds until a slot frees, rounded up to the millisecond). Admitted
   requests carry the same three ``X-RateLimit-*`` headers. With
   ``rate_limit.headers`` both also carry the IETF httpapi draft's
   ``RateLimit-Policy: "default";q=REQUESTS;w=PER`` and
   ``RateLimit: "default";r=REMAINING;t=SECONDS`` (whole seconds until the
   oldest admission leaves the window, rounded up).
3. **drop** — with probability ``drop_rate``: the connection is closed with no answer.
4. **error** — with probability ``error_rate``: 500.
5. **latency** — the answer waits ``mean ± jitter`` seconds.
6. **answer** — the route's normal response.

Drop, error and latency are decided by dice that depend only on
``(scenario seed, path with query, k)`` where k counts the requests to that
path admitted so far (since the scenario or the counters were reset). So the
same client behaviour meets the same faults on every run, however its
concurrent requests interleave.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import Enum

from .limiter import SlidingWindowLimiter
from .scenario import Scenario

__all__ = ["Decision", "FaultPlan", "Verdict"]


class Verdict(Enum):
    OUTAGE = "outage"
    LIMITED = "limited"
    DROP = "drop"
    ERROR = "error"
    ANSWER = "answer"


@dataclass(frozen=True)
class Decision:
    """What to do with one request; ``headers`` go on the response."""

    verdict: Verdict
    retry_after: int = 0
    wait: float = 0.0
    latency: float = 0.0
    headers: dict[str, str] | None = None


ANSWER = Decision(Verdict.ANSWER)


class FaultPlan:
    """A scenario put in motion: its clock, its rate limiter and its per-path counters."""

    def __init__(self, scenario: Scenario, started: float) -> None:
        self.scenario = scenario
        self.started = started
        rate = scenario.rate_limit
        self.limiter = None if rate is None else SlidingWindowLimiter(rate.requests, rate.per)
        #: True for a scenario that never interferes: callers may skip ``decide``.
        self.quiet = scenario.is_quiet
        self._dice = scenario.needs_dice
        self._has_outages = bool(scenario.outages or scenario.outage_every)
        self._counts: dict[str, int] = {}
        self._announce = rate is not None and rate.headers
        self._policy = "" if rate is None else f'"default";q={rate.requests};w={int(rate.per)}'

    def _announced(self, remaining: int, reset: float) -> dict[str, str]:
        """The IETF draft's headers: the policy, and what is left of it (``t``: whole seconds, rounded up)."""
        return {"RateLimit-Policy": self._policy, "RateLimit": f'"default";r={remaining};t={math.ceil(reset)}'}

    def decide(self, path: str, now: float) -> Decision:
        """The decision for a request to ``path`` (path and query) arriving at ``now`` (monotonic)."""
        if self.quiet:
            return ANSWER
        scenario = self.scenario
        if self._has_outages:
            outage = scenario.outage_at(now - self.started)
            if outage is not None:
                left, configured = outage
                retry = configured if configured is not None else max(1, math.ceil(left))
                return Decision(Verdict.OUTAGE, retry_after=retry, wait=left)
        headers = None
        if self.limiter is not None:
            wait = self.limiter.try_acquire(now)
            limit = str(self.limiter.requests)
            if wait:
                headers = {
                    "X-RateLimit-Limit": limit,
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": _seconds_up(wait),
                }
                if self._announce:
                    headers.update(self._announced(0, wait))
                return Decision(Verdict.LIMITED, retry_after=max(1, math.ceil(wait)), wait=wait, headers=headers)
            remaining, reset = self.limiter.remaining(now), self.limiter.reset_in(now)
            headers = {
                "X-RateLimit-Limit": limit,
                "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": _seconds_up(reset),
            }
            if self._announce:
                headers.update(self._announced(remaining, reset))
        if not self._dice:
            return Decision(Verdict.ANSWER, headers=headers)
        k = self._counts.get(path, 0)
        self._counts[path] = k + 1
        dice = random.Random(f"{scenario.seed}:{path}:{k}")
        drop = dice.random() < scenario.drop_rate
        error = dice.random() < scenario.error_rate
        latency = max(0.0, scenario.latency.mean + scenario.latency.jitter * (2.0 * dice.random() - 1.0))
        if drop:
            return Decision(Verdict.DROP)
        if error:
            return Decision(Verdict.ERROR, headers=headers)
        return Decision(Verdict.ANSWER, latency=latency, headers=headers)


def _seconds_up(seconds: float) -> str:
    """Seconds rounded up to the millisecond, so a client that waits that long is never early."""
    return f"{math.ceil(round(seconds * 1000, 6)) / 1000:.3f}"
