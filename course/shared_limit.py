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
    return slot, now              -- the caller waits slot - now

The caller sleeps until its slot and goes. Slots are handed out one
interval apart, whoever asks; no caller can take two at once, and an idle
period builds up no burst (``slot`` is never before ``now``). A slot is a
time on Redis's clock, read on the caller's clock through an offset: the
smallest ``(our time when the answer came) - (Redis's time in it)`` of the
recent round trips, i.e. the offset plus the shortest trip. So a slot is
never taken early, even after a slow round trip (a new connection, a busy
moment).

An even schedule is not enough by itself. The server stamps a request when
it *arrives*: after the slot, by a late timer, a busy client, a busy server.
Requests sent one interval apart can arrive bunched, and a strict sliding
window then counts more than ``rate``. So, like ``RateLimiter`` in one
process, the limiter also keeps the *server's* count, conservatively, for the
whole fleet (``window=True``, the default): a sorted set in Redis holds one
entry per request from the moment it goes (``acquire``) until ``per`` seconds
after its answer (``release``), and a caller goes only while fewer than
``rate`` entries are there. Whatever the jitter, no window of the server can
then see more than ``rate`` requests. An entry whose process died before
its answer leaves after ``in_flight_ttl`` seconds.

Round trips per request: one for the slot; with ``window``, one to enter the
count when the slot comes and one (not awaited) when the answer is in.
``window=False`` keeps the one round trip of plain GCRA; the ``margin``
(default 2 %) must then absorb the jitter (about ``margin * per`` seconds).
A caller that wakes later than ``late`` seconds after its slot (default
``margin * per / 2``) does not use it but asks for a new one.

    >>> limiter = SharedRateLimiter("redis://127.0.0.1:6379/0", "api.example.com", 100)
    >>> async with limiter:          # waits for this process's slot in the shared schedule
    ...     await send_the_request()
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections import deque
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from course.limiters import RateLimiter

__all__ = ["GCRA_SCRIPT", "SharedLimitError", "SharedRateLimiter"]

log = logging.getLogger(__name__)

#: Prefix of the keys the limiter keeps in Redis (one per limit key).
KEY_PREFIX = "course:limit:"

# KEYS[1]: the TAT key. ARGV[1]: the interval in microseconds.
# Returns {slot, now} on Redis's clock, in whole microseconds (written with
# %.0f: Lua's tostring keeps 14 digits only).
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
return {slot, now}
"""

# KEYS[1]: the window's sorted set (member: a request, score: when it leaves
# the count, microseconds on Redis's clock). ARGV: the limit, how long a
# request entering now stays, its name. Returns 0 (entered) or the
# microseconds until the oldest entry leaves.
ENTER_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  local stay = tonumber(ARGV[2])
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + stay), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(stay / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) - now)
"""

# KEYS[1]: the window's sorted set. ARGV: how long the request still counts
# (microseconds), its name. An entry already gone (expired) is not added back.
LEAVE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local stay = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], 'XX', string.format('%.0f', now + stay), ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(stay / 1000) + 60000)
return 0
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
        window: bool = True,
        in_flight_ttl: float = 60.0,
        recovery: float = 5.0,
        client: aioredis.Redis | None = None,
    ) -> None:
        super().__init__(rate, per, margin=margin, recovery=recovery)
        if not key:
            raise ValueError("SharedRateLimiter needs a non-empty key (processes with the same key share the rate)")
        if late is not None and not (math.isfinite(late) and late >= 0):
            raise ValueError(f"late is a number of seconds >= 0, got {late}")
        if not (math.isfinite(in_flight_ttl) and in_flight_ttl > 0):
            raise ValueError(f"in_flight_ttl is a number of seconds > 0, got {in_flight_ttl}")
        self.redis_url = redis_url
        self.window = window
        self.in_flight_ttl = in_flight_ttl
        self.key = key
        self.late = margin * per / 2 if late is None else late
        self._redis_key = KEY_PREFIX + key
        self._client = client if client is not None else aioredis.Redis.from_url(redis_url)
        self._window_key = KEY_PREFIX + key + ":window"
        self._script: Any = self._client.register_script(GCRA_SCRIPT)
        self._enter_script: Any = self._client.register_script(ENTER_SCRIPT)
        self._leave_script: Any = self._client.register_script(LEAVE_SCRIPT)
        self._name = uuid.uuid4().hex[:12]  # this limiter's prefix for its requests' names
        self._count = 0
        self._tokens: list[str] = []  # the names of this limiter's requests in flight
        self._leaving: set[asyncio.Task[None]] = set()
        self._full = asyncio.Lock()  # one caller of this process at a time waits for room
        self._held = 0
        self._slowed = 1.0  # this process's pace, as a fraction of the rate (slow_down)
        self._slowed_at = 0.0
        self._offsets: deque[float] = deque(maxlen=64)  # our clock - Redis's, over the last round trips
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
            slot = await self._ask(interval / self._slowed)
            while True:  # the offset may improve while we sleep: the slot, on our clock, is read again
                wait = slot + min(self._offsets) - loop.time()
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            lateness = -wait
            if lateness <= self.late or skips >= MAX_SKIPS:
                break
            skips += 1
            self.skipped += 1
            log.debug("woke %.1f ms after the slot for %s: asking for another", lateness * 1000, self.key)
        if self.window:
            await self._enter(hold)
        if hold:
            self._held += 1

    async def _enter(self, hold: bool) -> None:
        """Wait until the fleet's count has room; count this request (until ``release`` if ``hold``)."""
        self._count += 1
        token = f"{self._name}:{self._count}"
        stay = self.in_flight_ttl if hold else self.per
        async with self._full:
            while True:
                try:
                    wait = await self._enter_script(
                        keys=[self._window_key], args=[max(1, int(self.rate)), round(stay * 1e6), token]
                    )
                except (RedisError, OSError) as error:
                    raise SharedLimitError(f"the shared rate limit at {self.redis_url} failed: {error}") from error
                if not wait:
                    break
                await asyncio.sleep(int(wait) / 1e6)
        if hold:
            self._tokens.append(token)

    async def _ask(self, interval: float) -> float:
        """One round trip: this caller's slot, in seconds on Redis's clock."""
        try:
            slot, now = await self._script(keys=[self._redis_key], args=[max(1, round(interval * 1e6))])
        except (RedisError, OSError) as error:
            raise SharedLimitError(f"the shared rate limit at {self.redis_url} failed: {error}") from error
        self._offsets.append(asyncio.get_running_loop().time() - int(now) / 1e6)
        return int(slot) / 1e6

    def release(self) -> None:
        """A request is over: it counts for ``per`` more seconds (told to Redis in the background)."""
        if self._held <= 0:
            raise RuntimeError("SharedRateLimiter.release() called more often than acquire(hold=True)")
        self._held -= 1
        if self._tokens:
            task = asyncio.get_running_loop().create_task(self._leave(self._tokens.pop()))
            self._leaving.add(task)
            task.add_done_callback(self._leaving.discard)

    async def _leave(self, token: str) -> None:
        try:
            await self._leave_script(keys=[self._window_key], args=[round(self.per * 1e6), token])
        except (RedisError, OSError) as error:  # the entry then leaves after in_flight_ttl
            log.warning("the shared rate limit at %s could not count a request out: %s", self.redis_url, error)

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
        """Forget the schedule and the count (every process's next caller goes at once)."""
        await self._client.delete(self._redis_key, self._window_key)

    async def aclose(self) -> None:
        """Tell Redis about the requests over, then close the connection."""
        if self._leaving:
            await asyncio.gather(*self._leaving, return_exceptions=True)
        await self._client.aclose()

    def __repr__(self) -> str:
        return (
            f"SharedRateLimiter({self.redis_url!r}, key={self.key!r}, rate={self.rate}, per={self.per}, "
            f"margin={self.margin}, skipped={self.skipped})"
        )
