"""Lesson 11 — a fleet of clients: exercises.

- ``aimd_pace`` (async): ``AimdPace``, a controller that finds an unannounced
  limit by additive increase and multiplicative decrease (the reference also
  remembers the pace of its last cut and probes gently near it, as
  ``course.aimd.AimdLimiter`` does); the checker drives
  it with a few workers against a hidden limit on its own mock API and judges
  the share of 429s and the pace reached from what the server saw.
- ``consume_stream`` (async): the claim-and-ack loop of one worker on a Redis
  stream's consumer group; the checker starts its own Redis, feeds items,
  runs three consumers (one slow, one cancelled while it holds entries) and
  checks that every item has one result, the first one, and that every
  entry was acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from course.checks import Exercise, Incorrect, Mistake, checker_mock_api, source_as
from course.exercises.lesson06 import run_on_own_loop
from course.mockapi_control import MockAPIControl

__all__ = ["HIDDEN_LIMIT", "aimd_pace", "consume_stream", "drive_pace"]


# -- Exercise: an AIMD pace controller ---------------------------------------------------------------


class _AimdPace:
    """Find a hidden rate limit: speed up while answers are good, cut the pace on a refusal, remember where."""

    def __init__(self, start: float = 10.0, step: float = 5.0, cut: float = 0.8, window: float = 0.25) -> None:
        self.pace = start  # requests per second
        self.step, self.cut, self.window = step, cut, window
        self.ceiling = math.inf  # the pace at the last cut: none yet
        self.changed = time.monotonic()  # when the pace last changed
        self.last_cut = -math.inf  # when the pace was last cut
        self.last_429 = -math.inf  # when the last refusal came back
        self.next_slot = 0.0  # monotonic time of the next request
        self.turn = asyncio.Lock()

    def on_success(self) -> None:
        """A 2xx: after a whole window with no change and no refusal, raise the pace.

        Up to 95 % of the ceiling by whole steps; from there on by a fifth of a step (a gentle probe)."""
        now = time.monotonic()
        if min(now - self.changed, now - self.last_429) >= self.window:
            if self.pace < 0.95 * self.ceiling:
                self.pace = min(self.pace + self.step, 0.95 * self.ceiling)
            else:
                self.pace += self.step / 5
            self.changed = now

    def on_refused(self) -> None:
        """A 429: remember the pace as the ceiling and multiply it by cut, once per window since the last CUT.

        (Counting from the last increase instead would ignore the very 429 that the increase caused.)"""
        now = time.monotonic()
        self.last_429 = now
        if now - self.last_cut >= self.window:
            self.ceiling = self.pace
            self.pace = max(1.0, self.pace * self.cut)
            self.changed = self.last_cut = now

    async def wait(self) -> None:
        """Return when the next request may go: callers are let through 1/pace seconds apart."""
        async with self.turn:
            now = time.monotonic()
            delay = self.next_slot - now
            self.next_slot = max(self.next_slot, now) + 1.0 / self.pace
            await asyncio.sleep(max(0.0, delay))


HIDDEN_LIMIT = 40  # requests per second, a strict sliding window, announced nowhere
DRIVE_SECONDS, DRIVE_WORKERS, DRIVE_CAP = 4.0, 4, 600


async def drive_pace(controller: Any, base_url: str, seconds: float = DRIVE_SECONDS) -> list[float]:
    """``DRIVE_WORKERS`` workers: each ``await controller.wait()``, GET an item, then report the
    answer (``on_success`` for a 2xx, ``on_refused`` for a 429), for ``seconds`` (at most
    ``DRIVE_CAP`` requests). Returns the controller's pace every 0.1 s."""
    paces: list[float] = []
    sent = 0
    stop_at = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while time.monotonic() < stop_at and sent < DRIVE_CAP:
            await controller.wait()
            sent += 1
            async with session.get(f"{base_url}/items/{sent % 100}") as response:
                await response.read()
            reported = (controller.on_refused if response.status == 429 else controller.on_success)()
            if inspect.isawaitable(reported):  # written as coroutines: still heard
                await reported

    async def watch() -> None:
        while time.monotonic() < stop_at:
            pace = getattr(controller, "pace", None)
            paces.append(float(pace) if isinstance(pace, (int, float)) else math.nan)
            await asyncio.sleep(0.1)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(watch(), *(worker(session) for _ in range(DRIVE_WORKERS)))
    return paces


async def _run_aimd_pace(answer: Any) -> None:
    url = checker_mock_api({"rate_limit": {"requests": HIDDEN_LIMIT, "per": 1.0}})
    controller = answer()
    paces = await asyncio.wait_for(drive_pace(controller, url), DRIVE_SECONDS + 6)
    stats = MockAPIControl(url).stats(detail=True)
    pace = getattr(controller, "pace", None)
    Incorrect.unless(
        isinstance(pace, (int, float)) and not isinstance(pace, bool),
        f"after the run, your controller's pace is {pace!r}: keep the current pace, in requests per second, "
        "in an attribute `pace` (a number).",
    )
    assert isinstance(pace, (int, float))
    total = len(stats["statuses"])
    refused = sum(1 for status in stats["statuses"] if status == "429")
    Incorrect.unless(total > 0, "the server saw no request at all: wait() must return, and the workers send.")
    Incorrect.unless(
        pace <= 1.5 * HIDDEN_LIMIT,
        f"your pace ended at {pace:.1f}/s, though the server refused {refused} requests with a 429 and admits "
        f"only {HIDDEN_LIMIT}/s: on_refused() must cut the pace (by a factor, once per window).",
    )
    Incorrect.unless(
        refused <= 0.2 * total,
        f"the server refused {refused} of {total} requests ({refused / total:.0%}) with a 429 against a hidden "
        f"limit of {HIDDEN_LIMIT}/s: more than 20 %. After a 429, on_refused() must cut the pace, and wait() "
        f"must space the requests 1/pace seconds apart (your pace ended at {pace:.1f}/s).",
    )
    start = min(stats["arrivals"]) if stats["arrivals"] else 0.0
    late = [t for t, s in zip(stats["arrivals"], stats["statuses"], strict=True) if s == "200" and t >= start + 2.0]
    reached = len(late) / max(0.5, DRIVE_SECONDS - 2.0)
    Incorrect.unless(
        reached >= 0.6 * HIDDEN_LIMIT,
        f"in the last {DRIVE_SECONDS - 2:.0f} s the server admitted {reached:.1f} requests per second, under "
        f"60 % of the hidden limit of {HIDDEN_LIMIT}/s: the pace reached only {max(paces, default=0):.1f}/s. "
        "on_success() must raise the pace (by a step per window without a refusal) until the server refuses.",
    )


def _check_aimd_pace(answer: Any) -> None:
    run_on_own_loop(lambda: _run_aimd_pace(answer))


class _NeverSlowsDown(_AimdPace):
    """The mistake: a 429 changes nothing; the pace only grows."""

    def on_refused(self) -> None:
        return None  # the 429 is ignored


class _NeverSpeedsUp(_AimdPace):
    """The mistake: the pace stays where it started."""

    def on_success(self) -> None:
        return None  # the pace never grows


class _DoesNotPace(_AimdPace):
    """The mistake: the pace is computed, but wait() never waits for it."""

    async def wait(self) -> None:
        await asyncio.sleep(0)


aimd_pace = Exercise(
    "aimd_pace",
    checker=_check_aimd_pace,
    hint_text=(
        "Keep the pace, the ceiling (the pace at the last cut; infinite at first), when the pace last changed, "
        "when it was last cut, when the last 429 came and the time of the next slot. on_success(): if a whole "
        "window has passed since the last change AND since the last 429, add the step, but not beyond 95 % of "
        "the ceiling; once there, add a fifth of the step. on_refused(): note the time; if a window has passed "
        "since the last CUT (not the last increase: the 429 that an increase caused must cut), remember the "
        "pace as the ceiling and multiply it by the cut factor (keep it above 1). wait(): under an "
        "asyncio.Lock, sleep until the next slot (not before now) and move the next slot 1/pace later."
    ),
    answer=_AimdPace,
    solution_code=source_as(_AimdPace, "AimdPace"),
    wrong_answers=(
        Mistake(_NeverSlowsDown, "429"),
        Mistake(_NeverSpeedsUp, "on_success() must raise the pace"),
        Mistake(_DoesNotPace, "space the requests"),
    ),
    success="the pace climbed to the hidden limit and stayed just under it, with few 429s.",
    timeout=20.0,
)


# -- Exercise: claim and acknowledge on a Redis stream -------------------------------------------------


async def _consume_stream(
    redis: Any,
    stream: str,
    group: str,
    consumer: str,
    fetch: Callable[[str], Awaitable[str]],
    results: str,
    total: int,
    idle_ms: int = 400,
) -> None:
    """Work entries of ``stream`` until ``results`` holds ``total`` results."""
    while await redis.hlen(results) < total:
        reply = await redis.xreadgroup(group, consumer, {stream: ">"}, count=1)
        batch = reply[0][1] if reply else []
        if not batch:  # nothing fresh: take over what another consumer has held too long
            batch = (await redis.xautoclaim(stream, group, consumer, min_idle_time=idle_ms, count=1))[1]
        if not batch:
            await asyncio.sleep(0.05)
            continue
        for entry_id, fields in batch:
            if fields is None:
                continue
            item = fields["item"]
            if not await redis.hexists(results, item):
                value = await fetch(item)
                await redis.hsetnx(results, item, value)  # the first result stays
            await redis.xack(stream, group, entry_id)  # only now: done


STREAM_ITEMS, IDLE_MS = 24, 400
_REDIS: list[Any] = []  # the checkers' own Redis server, started on first use


_REDIS_LOCK = threading.Lock()


def _checker_redis_url() -> str:
    """The URL of the checkers' Redis (one per process, started on first use)."""
    from course.redis_server import start_redis

    with _REDIS_LOCK:
        if not _REDIS or not _REDIS[0].running:
            _REDIS[:] = [start_redis()]  # course.servers keeps it alive past this checker thread
        url: str = _REDIS[0].url
    return url


async def _run_consume_stream(answer: Any) -> None:
    import redis.asyncio as aioredis

    api = checker_mock_api({"latency": {"mean": 0.01, "jitter": 0.0}})
    client = aioredis.Redis.from_url(_checker_redis_url(), decode_responses=True)
    run = f"check-{time.monotonic_ns()}"
    stream, group, results = f"{run}:items", "workers", f"{run}:results"
    returned: dict[str, list[tuple[float, str]]] = {}  # item -> (when a fetch returned, its value), in order
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
        for item in range(STREAM_ITEMS):
            await client.xadd(stream, {"item": str(item)})
        async with aiohttp.ClientSession() as session:

            def fetcher(consumer: str, slow_call: int | None, hang_call: int | None) -> Callable[[str], Awaitable[str]]:
                calls = 0

                async def fetch(item: str) -> str:
                    nonlocal calls
                    calls += 1
                    if calls == hang_call:
                        await asyncio.Event().wait()  # this consumer stops here: the checker cancels it
                    async with session.get(f"{api}/items/{item}") as response:
                        await response.read()
                    if calls == slow_call:
                        await asyncio.sleep(3 * IDLE_MS / 1000)
                    value = json.dumps({"item": item, "by": consumer, "status": response.status})
                    returned.setdefault(item, []).append((time.monotonic(), value))
                    return value

                return fetch

            def consumer(name: str, slow: int | None = None, hang: int | None = None) -> Awaitable[Any]:
                return answer(client, stream, group, name, fetcher(name, slow, hang), results, STREAM_ITEMS, IDLE_MS)

            doomed = asyncio.ensure_future(consumer("c", hang=2))
            workers = asyncio.gather(consumer("a"), consumer("b", slow=2))
            await asyncio.sleep(0.3)
            doomed.cancel()  # the worker "dies" while it holds an entry
            await asyncio.wait({doomed}, timeout=1.0)
            done, _ = await asyncio.wait({workers}, timeout=10.0)
            if workers not in done:
                workers.cancel()
                with contextlib.suppress(BaseException):  # collect the cancelled consumers
                    await asyncio.wait_for(workers, 1.0)
                pending = await client.xpending(stream, group)
                owners = {row["name"]: row["pending"] for row in pending.get("consumers", [])}
                raise Incorrect(
                    f"consumers a and b did not finish within 10 s; {await client.hlen(results)} of "
                    f"{STREAM_ITEMS} items have a result, and entries are still pending under {owners}. "
                    f"Consumer c was cancelled while it held an entry: when nothing fresh is left, take over "
                    f"entries idle for idle_ms with XAUTOCLAIM."
                )
            workers.result()
        stored = {str(k): str(v) for k, v in (await client.hgetall(results)).items()}  # decoded already
        missing = [str(item) for item in range(STREAM_ITEMS) if str(item) not in stored]
        Incorrect.unless(not missing, f"item {missing[:1]} has no result in the hash ({len(missing)} missing).")
        for key, value in sorted(stored.items(), key=lambda pair: int(pair[0])):
            first_time, first_value = returned[key][0] if key in returned else (0.0, "")
            kept = [t for t, v in returned.get(key, []) if v == value]
            Incorrect.unless(
                bool(kept) and kept[0] - first_time <= 0.1,
                f"item {key}'s result was replaced: the first fetch to return gave {first_value}, the hash "
                f"holds {value}. Keep the first result (HSETNX), a late duplicate must not overwrite it.",
            )
        pending = await client.xpending(stream, group)
        Incorrect.unless(
            pending["pending"] == 0,
            f"{pending['pending']} entries were never acknowledged (still pending, e.g. {pending['min']}): "
            "XACK each entry once its result is stored.",
        )
        served = MockAPIControl(api).stats(detail=True)["served"]
        unfetched = [str(item) for item in range(STREAM_ITEMS) if served.get(str(item), 0) == 0]
        Incorrect.unless(not unfetched, f"the server never served item {unfetched[:1]}, yet it has a result.")
    finally:
        await client.delete(stream, results)
        await client.aclose()


def _check_consume_stream(answer: Any) -> None:
    run_on_own_loop(lambda: _run_consume_stream(answer))


async def _overwrites(
    redis: Any,
    stream: str,
    group: str,
    consumer: str,
    fetch: Callable[[str], Awaitable[str]],
    results: str,
    total: int,
    idle_ms: int = 400,
) -> None:
    """The mistake: HSET, so a slow duplicate's result replaces the first one."""
    while await redis.hlen(results) < total:
        reply = await redis.xreadgroup(group, consumer, {stream: ">"}, count=1)
        batch = reply[0][1] if reply else []
        if not batch:
            batch = (await redis.xautoclaim(stream, group, consumer, min_idle_time=idle_ms, count=1))[1]
        if not batch:
            await asyncio.sleep(0.05)
            continue
        for entry_id, fields in batch:
            if fields is not None:
                await redis.hset(results, fields["item"], await fetch(fields["item"]))
                await redis.xack(stream, group, entry_id)


async def _never_takes_over(
    redis: Any,
    stream: str,
    group: str,
    consumer: str,
    fetch: Callable[[str], Awaitable[str]],
    results: str,
    total: int,
    idle_ms: int = 400,
) -> None:
    """The mistake: only fresh entries are read; a dead consumer's entries are never taken over."""
    while await redis.hlen(results) < total:
        reply = await redis.xreadgroup(group, consumer, {stream: ">"}, count=1)
        for entry_id, fields in reply[0][1] if reply else []:
            await redis.hsetnx(results, fields["item"], await fetch(fields["item"]))
            await redis.xack(stream, group, entry_id)
        if not reply:
            await asyncio.sleep(0.05)


async def _never_acknowledges(
    redis: Any,
    stream: str,
    group: str,
    consumer: str,
    fetch: Callable[[str], Awaitable[str]],
    results: str,
    total: int,
    idle_ms: int = 400,
) -> None:
    """The mistake: results are stored, entries are never acknowledged."""
    while await redis.hlen(results) < total:
        reply = await redis.xreadgroup(group, consumer, {stream: ">"}, count=1)
        batch = reply[0][1] if reply else []
        if not batch:
            batch = (await redis.xautoclaim(stream, group, consumer, min_idle_time=idle_ms, count=1))[1]
        if not batch:
            await asyncio.sleep(0.05)
        for _entry_id, fields in batch:
            if fields is not None:
                await redis.hsetnx(results, fields["item"], await fetch(fields["item"]))


consume_stream = Exercise(
    "consume_stream",
    checker=_check_consume_stream,
    hint_text=(
        "Loop while HLEN of the results is under total. Read one fresh entry with XREADGROUP (id '>'); "
        "if there is none, XAUTOCLAIM one idle for idle_ms; if still none, sleep a little. For each "
        "entry: fetch its item unless the hash has it already, store with HSETNX (never HSET), and only "
        "then XACK the entry."
    ),
    answer=_consume_stream,
    solution_code=source_as(_consume_stream, "consume_stream"),
    wrong_answers=(
        Mistake(_overwrites, "was replaced"),
        Mistake(_never_takes_over, "XAUTOCLAIM"),
        Mistake(_never_acknowledges, "never acknowledged"),
    ),
    success="every item has one result, the first one, and every entry is acknowledged.",
    timeout=20.0,
)
