"""ThrottledQueue: FIFO, spaced gets, no lost item when a getter is cancelled."""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_right

from course.queues import ThrottledQueue


async def test_every_item_comes_out_once_spaced_to_the_rate() -> None:
    queue: ThrottledQueue[int] = ThrottledQueue(rate=10, per=0.1)  # 100/s in 0.1 s windows
    for i in range(40):
        queue.put_nowait(i)
    stamps: list[float] = []
    got: list[int] = []

    async def worker() -> None:
        for _ in range(10):
            got.append(await queue.get())
            stamps.append(time.monotonic())
            queue.task_done()

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(4))), timeout=30)
    assert sorted(got) == list(range(40))  # each item exactly once
    stamps.sort()
    # The queue spaces its own moments; a worker stamps a few microseconds after
    # get() returns, and by a varying amount. Items 1 and 11 are exactly 0.1 s
    # apart by the queue's clock, so the window is 1 ms short of 0.1 s.
    assert max(i - bisect_right(stamps, t - 0.099) + 1 for i, t in enumerate(stamps)) <= 10


async def test_a_getter_cancelled_while_waiting_for_its_slot_loses_no_item() -> None:
    queue: ThrottledQueue[str] = ThrottledQueue(rate=1, per=60.0)
    queue.put_nowait("first")
    queue.put_nowait("second")
    assert await queue.get() == "first"  # uses the only slot for a minute
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0.05)  # it holds "second" and waits for a slot
    getter.cancel()
    await asyncio.gather(getter, return_exceptions=True)
    assert queue.qsize() == 1
    assert queue.get_nowait() == "second"


async def test_an_empty_queue_does_not_bank_slots_for_a_later_burst() -> None:
    queue: ThrottledQueue[int] = ThrottledQueue(rate=5, per=0.1)  # one every 20 ms
    waiters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0.2)  # ten slots' worth of time with nothing to take
    stamps: list[float] = []
    for task in waiters:
        task.add_done_callback(lambda _t: stamps.append(time.monotonic()))
    put_at = time.monotonic()
    for i in range(3):
        queue.put_nowait(i)
    await asyncio.wait_for(asyncio.gather(*waiters), timeout=10)
    # Slots at +0, +20, +40 ms from the first put: had the idle time been
    # banked, all three would have come out at once.
    assert sum(1 for t in stamps if t < put_at + 0.03) <= 2
