"""ThrottledQueue: FIFO, spaced gets, no lost item when a getter is cancelled.

The spacing tests run on fake time (``fake_time.FakeTimeLoop``), so the moment
each item leaves is exact; one test checks the spacing on the real clock.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right

import pytest
from fake_time import fake_loop, on_fake_time

from course.queues import ThrottledQueue

NS = 1e-9  # float rounding of the virtual clock


@on_fake_time
async def test_every_item_comes_out_once_spaced_to_the_rate() -> None:
    loop = fake_loop()
    queue: ThrottledQueue[int] = ThrottledQueue(rate=10, per=0.1)  # 100/s in 0.1 s windows
    for i in range(40):
        queue.put_nowait(i)
    start = loop.time()
    stamps: list[float] = []
    got: list[int] = []

    async def worker() -> None:
        for _ in range(10):
            got.append(await queue.get())
            stamps.append(loop.time() - start)
            queue.task_done()

    await asyncio.gather(*(worker() for _ in range(4)))
    assert got == list(range(40))  # each item exactly once, in order
    assert stamps == pytest.approx([i / 100 for i in range(40)], abs=NS)


@on_fake_time
async def test_a_getter_cancelled_while_waiting_for_its_slot_loses_no_item() -> None:
    queue: ThrottledQueue[str] = ThrottledQueue(rate=1, per=60.0)
    queue.put_nowait("first")
    queue.put_nowait("second")
    assert await queue.get() == "first"  # uses the only slot for a minute
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(30.0)  # it holds "second" and waits for its slot at 60 s
    assert not getter.done() and queue.qsize() == 0
    getter.cancel()
    await asyncio.gather(getter, return_exceptions=True)
    assert queue.qsize() == 1
    assert queue.get_nowait() == "second"


@on_fake_time
async def test_an_empty_queue_does_not_bank_slots_for_a_later_burst() -> None:
    loop = fake_loop()
    queue: ThrottledQueue[int] = ThrottledQueue(rate=5, per=0.1)  # one every 20 ms
    waiters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0.2)  # ten slots' worth of time with nothing to take
    put_at = loop.time()
    stamps: list[float] = []
    for task in waiters:
        task.add_done_callback(lambda _t: stamps.append(loop.time() - put_at))
    for i in range(3):
        queue.put_nowait(i)
    assert await asyncio.gather(*waiters) == [0, 1, 2]
    # Slots at +0, +20, +40 ms from the put: had the idle time been banked,
    # all three would have come out at once.
    assert stamps == pytest.approx([0.0, 0.02, 0.04], abs=NS)


@on_fake_time
async def test_an_explicit_clock_is_the_one_the_queue_reads() -> None:
    loop = fake_loop()
    reading = [0.0]
    queue: ThrottledQueue[str] = ThrottledQueue(rate=1, per=60.0, clock=lambda: reading[0])
    queue.put_nowait("first")
    queue.put_nowait("second")
    assert await queue.get() == "first"
    reading[0] = 60.0  # a minute passes, by that clock only
    before = loop.time()
    assert await queue.get() == "second"  # its slot is due: no wait on the loop
    assert loop.time() == before


async def test_every_item_comes_out_once_spaced_to_the_rate_on_the_real_clock() -> None:
    loop = asyncio.get_running_loop()
    queue: ThrottledQueue[int] = ThrottledQueue(rate=10, per=0.1)  # 100/s in 0.1 s windows
    for i in range(40):
        queue.put_nowait(i)
    stamps: list[float] = []
    got: list[int] = []

    async def worker() -> None:
        for _ in range(10):
            got.append(await queue.get())
            stamps.append(loop.time())
            queue.task_done()

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(4))), timeout=30)
    assert sorted(got) == list(range(40))  # each item exactly once
    stamps.sort()
    # A worker stamps a little after get() returns, and by a varying amount; items 1
    # and 11 are exactly 0.1 s apart by the queue's clock, so the window is 1 ms short.
    assert max(i - bisect_right(stamps, t - 0.099) + 1 for i, t in enumerate(stamps)) <= 10
