"""Rate limiting: an evenly spaced schedule, and a gate that pauses every worker.

``RateLimiter`` hands out send times on an *absolute* schedule: each caller
gets the next free slot, one interval after the previous slot, and sleeps
until it. Time lost to a late wake-up is never lost from the schedule (the
next slot is computed from the previous slot, not from when anyone woke up),
so the achieved rate stays at the target. The target sits a small ``margin``
under the server's limit: the server stamps a request when it *arrives*,
a little later and a little less evenly than we sent it, and the margin
absorbs that jitter so no window of the server ever counts more than R.
There is no start-up burst: the first caller goes at once, the second one
interval later (``burst`` > 1 allows a GCRA-style allowance if the server
has one).

``Gate`` is the "pause everyone" switch. ``pause(seconds)`` closes it (a 503
with ``Retry-After``); every worker waits at ``enter()`` until the pause
ends, then exactly one worker goes through as a *probe*. If the probe gets
an ordinary answer the gate opens for all; if it gets another 503 the pause
starts again. So during an outage the server sees one request per
``Retry-After`` period from the whole pool, not one per worker.

    >>> limiter = RateLimiter(500)          # at most 500 requests per second
    >>> await limiter.acquire()             # returns at this caller's slot
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

__all__ = ["RateLimiter", "Gate"]


class RateLimiter:
    """At most ``rate`` acquisitions per ``per`` seconds, evenly spaced.

    ``margin`` (a fraction, default 0.8 %) keeps the schedule under the limit.
    On top of the schedule the limiter remembers when the last ``rate``
    callers actually went, and never lets more than ``rate`` go within
    ``per * (1 + margin)`` seconds: a caller that woke late (a busy event
    loop) does not leave the next window with one request too many.
    ``slow_down(factor)`` lowers the pace (after a 429); it recovers to the
    target linearly over ``recovery`` seconds.
    """

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        *,
        margin: float = 0.008,
        burst: int = 1,
        recovery: float = 5.0,
    ) -> None:
        if rate <= 0 or per <= 0:
            raise ValueError(f"RateLimiter needs rate > 0 and per > 0, got rate={rate}, per={per}")
        if not 0 <= margin < 1:
            raise ValueError(f"margin is a fraction of the rate in [0, 1), got {margin}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1 (no burst), got {burst}")
        self.rate = rate
        self.per = per
        self.margin = margin
        self.burst = burst
        self.recovery = recovery
        self._target = rate * (1.0 - margin) / per  # slots per second
        self._current = self._target
        self._interval = 1.0 / self._target
        self._tat = 0.0  # theoretical arrival time of the next slot (GCRA)
        self._adjusted = time.monotonic()
        self._window = per * (1.0 + margin)
        self._went: deque[float] = deque(maxlen=max(1, int(rate)))

    @property
    def current_rate(self) -> float:
        """The pace right now, in acquisitions per second."""
        return self._current

    async def acquire(self) -> None:
        """Wait until this caller's slot; slots are 1/rate apart, never reused."""
        now = time.monotonic()
        if self._current < self._target:
            self._recover(now)
        slot = self._tat - (self.burst - 1) * self._interval
        if slot < now:
            slot = now
        self._tat = (self._tat if self._tat > slot else slot) + self._interval
        delay = slot - now
        if delay > 0:
            await asyncio.sleep(delay)
        went = self._went
        if len(went) == went.maxlen:
            while True:  # the sliding-window check on actual departure times
                now = time.monotonic()
                wait = went[0] + self._window - now
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            went.append(now)
        else:
            went.append(time.monotonic())

    async def __aenter__(self) -> None:  # so it fits where a Throttler or AsyncLimiter would
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def slow_down(self, factor: float = 0.9) -> None:
        """Lower the pace by ``factor`` (never below a tenth of the target)."""
        if not 0 < factor <= 1:
            raise ValueError(f"slow_down factor must be in (0, 1], got {factor}")
        self._current = max(self._target * 0.1, self._current * factor)
        self._interval = 1.0 / self._current
        self._adjusted = time.monotonic()

    def _recover(self, now: float) -> None:
        step = self._target * (now - self._adjusted) / self.recovery
        self._adjusted = now
        self._current = min(self._target, self._current + step)
        self._interval = 1.0 / self._current

    def __repr__(self) -> str:
        return (
            f"RateLimiter(rate={self.rate}, per={self.per}, margin={self.margin}, "
            f"current={self._current * self.per:.1f}/{self.per:g}s)"
        )


class Gate:
    """A shared pause: closed by ``pause()``, reopened by one successful probe."""

    def __init__(self) -> None:
        self._until = 0.0
        self._closed = False
        self._probing = False
        self._changed: asyncio.Event | None = None
        self.pauses = 0  # how many times pause() was called (for stats)

    @property
    def is_open(self) -> bool:
        return not self._closed

    def pause(self, seconds: float) -> None:
        """Close the gate for ``seconds`` (extends, never shortens, a pause)."""
        until = time.monotonic() + max(0.0, seconds)
        self._closed = True
        self.pauses += 1
        if until > self._until:
            self._until = until

    async def enter(self) -> bool:
        """Wait while paused. Returns True if the caller is the probe.

        A probe must call ``probe_finished()`` when its request is over
        (after any ``pause()`` its answer caused), whatever happened.
        """
        while self._closed:
            delay = self._until - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            if not self._probing:
                self._probing = True
                return True
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()
        return False

    def probe_finished(self) -> None:
        """The probe's request is over: open the gate unless it paused it again."""
        self._probing = False
        if time.monotonic() >= self._until:
            self._closed = False
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def __repr__(self) -> str:
        state = "open" if self.is_open else f"paused until {self._until:.3f}"
        return f"<Gate {state}, {self.pauses} pauses>"
