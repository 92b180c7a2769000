"""Rate limiting: an evenly spaced schedule, and a gate that pauses every worker.

``RateLimiter`` does two things, both cheap:

1. It hands out send times on an *absolute* schedule: each caller gets the
   next free slot, one interval after the previous slot, and sleeps until
   it. Time lost to a late wake-up is not lost from the schedule (the next
   slot is computed from the previous slot, not from when anyone woke up),
   so the achieved rate stays at the target; and there is no start-up
   burst: the first caller goes at once, the second one interval later.
   Only lateness up to ``catch_up`` seconds is made up that way (ordinary
   timer overshoot, a busy moment). After a longer stall -- a blocked event
   loop, a suspended laptop -- the time lost is dropped from the schedule
   instead: every slot still waiting moves later by it, so the callers whose
   slots fell inside the stall do not all go at once when it ends.
2. It keeps the server's own count, conservatively. A server with a
   sliding-window limit stamps a request when it *arrives*; we cannot see
   that moment, but we know it lies between our ``acquire()`` and the end of
   the response (``release()``). So a request counts as "in the window"
   from ``acquire()`` until ``per`` seconds after its ``release()``, and a
   caller waits while ``rate`` requests are in that state. Whatever the
   jitter between our clock and the server's stamps (a slow connect, a busy
   event loop, a server that stalls), no window of the server can then see
   more than ``rate`` requests.

The schedule runs a small ``margin`` under the rate, so that the window
check (2) seldom has to hold anyone back.

``Gate`` is the "pause everyone" switch. ``pause(seconds)`` closes it (a 503
with ``Retry-After``); every worker waits at ``enter()`` until the pause
ends, then exactly one worker goes through as a *probe*. If the probe gets
an ordinary answer the gate opens for all; if it gets another 503 the pause
starts again. So during an outage the server sees one request per
``Retry-After`` period from the whole pool, not one per worker.

Both read "now" from the running event loop's clock (``loop.time()``:
monotonic, in seconds; looked up on first use, so they can be made before
any loop runs) and wait with ``asyncio.sleep``. ``clock=`` gives them another
source of "now"; it must keep pace with the loop's timers. Tests run them on
a fake-time event loop, whose clock jumps from timer to timer.

    >>> limiter = RateLimiter(500)          # at most 500 requests per second
    >>> async with limiter:                 # waits for this caller's slot
    ...     await send_the_request()        # counted until the answer is in
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

__all__ = ["Gate", "RateLimiter"]


class _LoopClock:
    """Reads "now" from ``clock`` if given, else from the running event loop's ``time()``.

    The loop's clock is looked up on the first reading and kept (one function
    call per reading after that), so the object may be created outside any
    loop -- at import, in a notebook cell -- and belongs to the loop it first
    runs in.
    """

    _now: Callable[[], float]

    def _use_clock(self, clock: Callable[[], float] | None) -> None:
        self._now = clock if clock is not None else self._first_reading

    def _first_reading(self) -> float:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                f"{type(self).__name__} reads the running event loop's clock: use it from async code, "
                "or pass clock= (a function returning monotonic seconds)"
            ) from None
        self._now = loop.time
        return self._now()


class RateLimiter(_LoopClock):
    """At most ``rate`` requests in any ``per`` seconds, evenly spaced.

    Use ``async with limiter:`` around a request (or ``await acquire(hold=True)``
    before it and ``release()`` once its answer or error is in); a plain
    ``await acquire()`` spaces a momentary event and needs no release. ``margin`` (a
    fraction, default 0.5 %) keeps the schedule under the limit.
    ``slow_down(factor)`` lowers the pace (after a 429); it recovers to the
    target linearly over ``recovery`` seconds. Lateness up to ``catch_up``
    seconds is made up; beyond that it is dropped from the schedule, so the
    burst after a stall is at most about ``catch_up * rate / per`` requests.
    ``clock`` replaces the event loop's clock as the source of "now".
    """

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        *,
        margin: float = 0.005,
        burst: int = 1,
        recovery: float = 5.0,
        catch_up: float = 0.05,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if rate <= 0 or per <= 0:
            raise ValueError(f"RateLimiter needs rate > 0 and per > 0, got rate={rate}, per={per}")
        if not 0 <= margin < 1:
            raise ValueError(f"margin is a fraction of the rate in [0, 1), got {margin}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1 (no burst), got {burst}")
        if catch_up < 0:
            raise ValueError(f"catch_up is a number of seconds >= 0, got {catch_up}")
        self.rate = rate
        self.per = per
        self.margin = margin
        self.burst = burst
        self.recovery = recovery
        self.catch_up = catch_up
        self._shift = 0.0  # seconds dropped from the schedule after stalls, in all
        self._target = rate * (1.0 - margin) / per  # slots per second
        self._current = self._target
        self._interval = 1.0 / self._target
        self._tat = 0.0  # theoretical arrival time of the next slot (GCRA)
        self._adjusted = 0.0  # when slow_down() last set the pace (read only below the target)
        self._limit = max(1, int(rate))
        self._leaves: deque[float] = deque()  # when each released request leaves the window
        self._in_flight = 0
        self._full = asyncio.Lock()  # held by the one caller waiting for room
        self._use_clock(clock)

    @property
    def current_rate(self) -> float:
        """The pace right now, in acquisitions per second."""
        return self._current

    @property
    def in_flight(self) -> int:
        """Requests acquired and not yet released."""
        return self._in_flight

    async def acquire(self, *, hold: bool = False) -> None:
        """Wait for this caller's slot.

        By default the caller is counted as having gone *now* (a moment, like
        a queue handing out an item). With ``hold=True`` it counts as in flight
        until ``release()``: what ``async with limiter:`` and the worker pool
        do around a request, since the server may stamp it any time before
        the answer.
        """
        now = self._now()
        if self._current < self._target:
            self._recover(now)
        slot = self._tat - (self.burst - 1) * self._interval
        if slot < now:
            slot = now
        self._tat = (self._tat if self._tat > slot else slot) + self._interval
        shift = self._shift
        if slot > now:
            await asyncio.sleep(slot - now)
            while True:  # a stall may have moved the schedule while we slept
                slot += self._shift - shift
                shift = self._shift
                now = self._now()
                if slot > now:
                    await asyncio.sleep(slot - now)
                    continue
                late = now - slot
                if late > self.catch_up:
                    # A stall: drop what is beyond catch_up from the schedule
                    # (this caller goes now; the slots behind it move later).
                    dropped = late - self.catch_up
                    self._shift += dropped
                    self._tat += dropped
                break
        leaves = self._leaves  # when each counted request leaves the window, oldest first
        while leaves and leaves[0] <= now:
            leaves.popleft()
        if len(leaves) + self._in_flight >= self._limit or self._full.locked():
            now = await self._wait_for_room()
        if hold:
            self._in_flight += 1
        else:
            leaves.append(now + self.per)

    def release(self) -> None:
        """A request is over (answered, failed or abandoned); it leaves the window ``per`` s from now."""
        if self._in_flight <= 0:
            raise RuntimeError("RateLimiter.release() called more often than acquire()")
        self._in_flight -= 1
        self._leaves.append(self._now() + self.per)

    async def _wait_for_room(self) -> float:
        # One caller at a time waits for the window (the others queue on the
        # lock, first come first served), so a full window costs one timer,
        # not a wake-up of every waiter. A release never makes room by itself
        # (the request still counts for `per` s); only the oldest ageing out does.
        # Returns the time at which there was room.
        async with self._full:
            leaves = self._leaves
            while True:
                now = self._now()
                while leaves and leaves[0] <= now:
                    leaves.popleft()
                if len(leaves) + self._in_flight < self._limit:
                    return now
                await asyncio.sleep(leaves[0] - now if leaves else self.per)

    async def __aenter__(self) -> None:  # so it fits where a Throttler or AsyncLimiter would
        await self.acquire(hold=True)

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def slow_down(self, factor: float = 0.9) -> None:
        """Lower the pace by ``factor`` (never below a tenth of the target)."""
        if not 0 < factor <= 1:
            raise ValueError(f"slow_down factor must be in (0, 1], got {factor}")
        self._current = max(self._target * 0.1, self._current * factor)
        self._interval = 1.0 / self._current
        self._adjusted = self._now()

    def _recover(self, now: float) -> None:
        step = self._target * (now - self._adjusted) / self.recovery
        self._adjusted = now
        self._current = min(self._target, self._current + step)
        self._interval = 1.0 / self._current

    def __repr__(self) -> str:
        return (
            f"RateLimiter(rate={self.rate}, per={self.per}, margin={self.margin}, catch_up={self.catch_up}, "
            f"current={self._current * self.per:.1f}/{self.per:g}s)"
        )


class Gate(_LoopClock):
    """A shared pause: closed by ``pause()``, reopened by one successful probe.

    ``clock`` replaces the event loop's clock as the source of "now".
    """

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._until = 0.0
        self._closed = False
        self._probing = False
        self._changed: asyncio.Event | None = None
        self.pauses = 0  # how many times pause() was called (for stats)
        self._use_clock(clock)

    @property
    def is_open(self) -> bool:
        return not self._closed

    def pause(self, seconds: float) -> None:
        """Close the gate for ``seconds`` (extends, never shortens, a pause)."""
        until = self._now() + max(0.0, seconds)
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
            delay = self._until - self._now()
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
        if self._now() >= self._until:
            self._closed = False
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def __repr__(self) -> str:
        state = "open" if self.is_open else f"paused until {self._until:.3f}"
        return f"<Gate {state}, {self.pauses} pauses>"
