"""One rate limit for a fleet of clients: ``SharedRateLimiter``, a schedule kept in Redis.

``course.limiters.RateLimiter`` keeps its schedule in the memory of one
process. Run three processes and each keeps a schedule of its own: the API
is offered three times its limit. ``SharedRateLimiter`` keeps *one* schedule
for every process that names the same ``key``, in Redis, and spaces them all
evenly, as ``RateLimiter`` spaces the workers of one process.

The schedule is GCRA (the generic cell rate algorithm): Redis keeps one
number per key, the *theoretical arrival time* (TAT) of the next free slot.
Asking for a slot is one Lua script, so one atomic step and one round trip:

    slot = max(TAT, now)          -- now: Redis's own clock, the same for all
    TAT  = slot + interval        -- interval = per / (rate * (1 - margin))
    return slot - now             -- how long the caller waits

The caller sleeps until its slot and goes. Slots are handed out one interval
apart, whoever asks; no caller can take two at once, and an idle period
builds up no burst (``slot`` is never before ``now``).

Why the ``margin`` (default 2 %)? The server stamps a request when it
*arrives*, a little after the slot (the reply from Redis, a late timer, the
network). A strict sliding window of ``per`` seconds then sees the slots of
``per`` plus that lateness: the schedule must run about ``lateness / per``
under the limit. A caller that wakes later than ``late`` seconds (default:
half the slack the margin buys, ``margin * per / 2``) does not use its slot
but asks for a new one: a stalled process then costs a slot, never a 429.

    >>> limiter = SharedRateLimiter("redis://127.0.0.1:6379/0", "api.example.com", 100)
    >>> async with limiter:          # waits for this process's slot in the shared schedule
    ...     await send_the_request()
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from course.limiters import RateLimiter

__all__ = ["SharedLimitError", "SharedRateLimiter"]

log = logging.getLogger(__name__)

#: Prefix of the keys the limiter keeps in Redis (one per limit key).
KEY_PREFIX = "course:limit:"

# KEYS[1]: the TAT key. ARGV[1]: the interval in microseconds.
# Returns the wait in microseconds (0: go now). Times are Redis's clock, in
# whole microseconds (written with %.0f: Lua's tostring keeps 14 digits only).
GCRA_SCRIPT = """
local interval = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = tat
if slot < now then slot = now end
local next_tat = slot + interval
local ttl_ms = math.ceil((next_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', ttl_ms)
return slot - now
"""

#: How many late slots in a row a caller gives back before it goes anyway.
MAX_SKIPS = 10


class SharedLimitError(RuntimeError):
    """Redis could not be reached or refused the limiter's script; the message says where."""


class SharedRateLimiter(RateLimiter):
    """At most ``rate`` requests per ``per`` seconds, evenly spaced, for every process using ``key``.

    ``redis_url`` is ``redis://HOST:PORT/DB``. Use ``async with limiter:``
    around a request or ``await limiter.acquire()`` before one, as with
    ``RateLimiter`` (a ``WorkerPool`` takes either). Every process that
    shares the limit must give the same ``rate`` and ``per``: the interval
    is each caller's own, the schedule is shared.
    ``slow_down()`` (after a 429) makes each slot this process takes reserve
    a longer stretch of the shared schedule, so the whole fleet slows down;
    the pace recovers over ``recovery`` seconds.
    """

    def __init__(
        self,
        redis_url: str,
        key: str,
        rate: float,
        per: float = 1.0,
        *,
        margin: float = 0.02,
        late: float | None = None,
        recovery: float = 5.0,
        client: aioredis.Redis | None = None,
    ) -> None:
        super().__init__(rate, per, margin=margin, recovery=recovery)
        if not key:
            raise ValueError("SharedRateLimiter needs a non-empty key (processes with the same key share the rate)")
        if late is not None and not (math.isfinite(late) and late >= 0):
            raise ValueError(f"late is a number of seconds >= 0, got {late}")
        self.redis_url = redis_url
        self.key = key
        self.late = margin * per / 2 if late is None else late
        self._redis_key = KEY_PREFIX + key
        self._client = client if client is not None else aioredis.Redis.from_url(redis_url)
        self._script: Any = self._client.register_script(GCRA_SCRIPT)
        self._held = 0
        self._slowed = 1.0  # this process's pace, as a fraction of the rate (slow_down)
        self._slowed_at = 0.0
        #: Slots given back because the caller woke too late to use them.
        self.skipped = 0

    @property
    def in_flight(self) -> int:
        return self._held

    @property
    def current_rate(self) -> float:
        return self._target * self._slowed

    async def acquire(self, *, hold: bool = False) -> None:
        """Wait for this caller's slot in the shared schedule (``hold``: count it in flight until ``release``)."""
        loop = asyncio.get_running_loop()
        interval = self.per / (self.rate * (1.0 - self.margin))
        skips = 0
        while True:
            if self._slowed < 1.0:
                self._recover(loop.time())
            asked = loop.time()
            wait = await self._ask(interval / self._slowed)
            answered = loop.time()
            # The slot, on our clock: Redis read its clock somewhere between asking and the answer.
            slot = (asked + answered) / 2 + wait
            if slot > answered:
                await asyncio.sleep(slot - answered)
            lateness = loop.time() - slot
            if lateness <= self.late or skips >= MAX_SKIPS:
                break
            skips += 1
            self.skipped += 1
            log.debug("woke %.1f ms after the slot for %s: asking for another", lateness * 1000, self.key)
        if hold:
            self._held += 1

    async def _ask(self, interval: float) -> float:
        """One round trip: the seconds until this caller's slot."""
        try:
            micros = await self._script(keys=[self._redis_key], args=[max(1, round(interval * 1e6))])
        except (RedisError, OSError) as error:
            raise SharedLimitError(f"the shared rate limit at {self.redis_url} failed: {error}") from error
        return int(micros) / 1e6

    def release(self) -> None:
        """A request is over; the shared schedule needs no word of it."""
        if self._held <= 0:
            raise RuntimeError("SharedRateLimiter.release() called more often than acquire(hold=True)")
        self._held -= 1

    def slow_down(self, factor: float = 0.9) -> None:
        """Take slots ``factor`` times as often (never below a tenth); recovers over ``recovery`` s."""
        if not 0 < factor <= 1:
            raise ValueError(f"slow_down factor must be in (0, 1], got {factor}")
        self._slowed = max(0.1, self._slowed * factor)
        self._slowed_at = asyncio.get_running_loop().time()

    def _recover(self, now: float) -> None:
        self._slowed = min(1.0, self._slowed + (now - self._slowed_at) / self.recovery)
        self._slowed_at = now

    async def reset(self) -> None:
        """Forget the schedule (every process's next caller goes at once)."""
        await self._client.delete(self._redis_key)

    async def aclose(self) -> None:
        """Close the connection to Redis."""
        await self._client.aclose()

    def __repr__(self) -> str:
        return (
            f"SharedRateLimiter({self.redis_url!r}, key={self.key!r}, rate={self.rate}, per={self.per}, "
            f"margin={self.margin}, skipped={self.skipped})"
        )
