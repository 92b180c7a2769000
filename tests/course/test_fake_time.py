"""The fake-time event loop the spacing tests run on: jumps to timers, stalls, still does real I/O."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from fake_time import START, fake_loop, on_fake_time


@on_fake_time
async def test_sleeps_end_in_order_at_exactly_their_virtual_deadlines() -> None:
    loop = fake_loop()
    start = loop.time()
    woke: list[tuple[str, float]] = []

    async def nap(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        woke.append((name, loop.time() - start))

    # An hour: the test would hit pytest's timeout if anything really waited.
    await asyncio.gather(nap("hour", 3600.0), nap("one", 1.0), nap("half", 0.5), nap("two", 2.0))
    assert woke == [("half", 0.5), ("one", 1.0), ("two", 2.0), ("hour", 3600.0)]
    assert loop.time() - start == 3600.0


@on_fake_time
async def test_a_stall_moves_the_clock_and_runs_nothing_meanwhile() -> None:
    loop = fake_loop()
    start = loop.time()
    fired: asyncio.Future[float] = loop.create_future()
    loop.call_later(1.0, lambda: fired.set_result(loop.time() - start))
    loop.stall(5.0)  # as if this coroutine had called time.sleep(5)
    assert not fired.done() and loop.time() - start == 5.0
    assert await fired == 5.0  # the timer fires late, when the loop runs again
    with pytest.raises(ValueError, match="forward"):
        loop.stall(-1.0)


@on_fake_time
async def test_running_code_takes_no_virtual_time_and_real_io_still_arrives() -> None:
    loop = fake_loop()
    start = loop.time()
    answer: asyncio.Future[str] = loop.create_future()

    def other_thread() -> None:
        time.sleep(0.05)  # real time passes; no timer is pending on the loop
        loop.call_soon_threadsafe(answer.set_result, "hello")

    threading.Thread(target=other_thread).start()
    assert await answer == "hello"
    assert loop.time() == start


def test_each_decorated_test_starts_on_a_fresh_loop_at_the_same_time() -> None:
    seen: list[float] = []

    @on_fake_time
    async def look() -> None:
        seen.append(fake_loop().time())
        await asyncio.sleep(10.0)

    look()
    look()
    assert seen == [START, START]


async def test_fake_loop_refuses_an_ordinary_loop() -> None:
    with pytest.raises(TypeError, match="on_fake_time"):
        fake_loop()
