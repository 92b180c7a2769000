"""RateLimiter and Gate: spacing, windows, slow-down, the shared pause and its single probe."""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_right

import pytest

from course.limiters import Gate, RateLimiter


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(i - bisect_right(times, t - window) + 1 for i, t in enumerate(times))


async def test_plain_acquire_needs_no_release_and_keeps_the_window() -> None:
    limiter = RateLimiter(10, per=0.2, margin=0.0)
    stamps: list[float] = []
    for _ in range(25):
        await limiter.acquire()
        stamps.append(time.monotonic())  # no await in between: the limiter's own moment, to the us
    assert limiter.in_flight == 0
    assert max_in_window(stamps, 0.199) <= 10


async def test_no_window_of_per_seconds_holds_more_than_rate() -> None:
    limiter = RateLimiter(20, per=0.2, margin=0.0)  # 100/s, counted in 0.2 s windows
    stamps: list[float] = []

    async def take() -> None:
        async with limiter:
            stamps.append(time.monotonic())

    await asyncio.gather(*(take() for _ in range(120)))
    assert max_in_window(stamps, 0.2) <= 20


async def test_no_startup_burst_callers_get_consecutive_slots() -> None:
    limiter = RateLimiter(50, per=1.0, margin=0.0)  # one slot every 20 ms
    started = time.monotonic()
    stamps: list[float] = []

    async def take() -> None:
        async with limiter:
            stamps.append(time.monotonic())

    await asyncio.gather(*(take() for _ in range(10)))
    # Slots at +0, +20, +40 ms... A sleep never ends early, so at most three
    # callers can have gone in the first 50 ms, however loaded the machine.
    assert sum(1 for t in stamps if t < started + 0.05) <= 3


async def stamps_around_a_stall(callers: int, before: float, stall: float) -> tuple[list[float], float]:
    """``callers`` tasks take slots of a 100/s limiter (catch_up 50 ms); the loop blocks for
    ``stall`` s after ``before`` s. Returns when each caller went, and when the stall ended."""
    limiter = RateLimiter(100, per=1.0, margin=0.0, catch_up=0.05)  # a slot every 10 ms
    stamps: list[float] = []

    async def take() -> None:
        await limiter.acquire()
        stamps.append(time.monotonic())

    tasks = [asyncio.create_task(take()) for _ in range(callers)]
    await asyncio.sleep(before)
    time.sleep(stall)  # the event loop is blocked
    ended = time.monotonic()
    await asyncio.gather(*tasks)
    return stamps, ended


async def test_after_a_stall_the_overdue_slots_do_not_all_go_at_once() -> None:
    # About ten go first; fifty hold slots up to 0.6 s ahead; forty fall inside the stall.
    stamps, ended = await stamps_around_a_stall(60, before=0.1, stall=0.4)
    after = [t for t in stamps if t >= ended]
    # Without the catch-up bound, about forty would go together right after the stall.
    assert sum(1 for t in after if t < ended + 0.02) <= 8
    assert len(stamps) == 60
    # The rest keep the spacing: no 50 ms after the stall holds more than about 5 + 5.
    assert max_in_window(after, 0.05) <= 12


async def test_lateness_within_catch_up_is_made_up() -> None:
    stamps, ended = await stamps_around_a_stall(20, before=0.05, stall=0.035)  # three or four slots inside
    # Those slots are not lost: their callers go as soon as the loop runs again.
    assert sum(1 for t in stamps if ended <= t < ended + 0.005) >= 3


async def test_margin_lowers_the_schedule_below_the_limit() -> None:
    assert RateLimiter(1000, margin=0.01).current_rate == pytest.approx(990)
    assert RateLimiter(10, per=2.0, margin=0.0).current_rate == pytest.approx(5)


async def test_slow_down_lowers_the_pace_and_it_recovers_to_the_target() -> None:
    limiter = RateLimiter(1000, margin=0.0, recovery=0.2)
    limiter.slow_down(0.5)
    assert limiter.current_rate == pytest.approx(500)
    limiter.slow_down(0.01)  # never below a tenth of the target
    assert limiter.current_rate == pytest.approx(100)
    await asyncio.sleep(0.3)
    async with limiter:
        pass
    assert limiter.current_rate == pytest.approx(1000)


def test_nonsense_arguments_are_refused_with_a_message() -> None:
    with pytest.raises(ValueError, match="catch_up"):
        RateLimiter(10, catch_up=-1)
    with pytest.raises(ValueError, match="rate > 0"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="margin"):
        RateLimiter(10, margin=1.5)
    with pytest.raises(ValueError, match="factor"):
        RateLimiter(10).slow_down(2)


async def test_limiter_is_an_async_context_manager_like_throttler() -> None:
    limiter = RateLimiter(1000)
    async with limiter:
        assert limiter.in_flight == 1
    assert limiter.in_flight == 0
    with pytest.raises(RuntimeError, match="more often"):
        limiter.release()


async def test_requests_in_flight_count_against_the_window() -> None:
    # 3 per minute: three requests whose answers have not come back yet use
    # up the window, however long ago they were sent.
    limiter = RateLimiter(3, per=60.0, margin=0.0, burst=3)
    for _ in range(3):
        await asyncio.wait_for(limiter.acquire(hold=True), timeout=10)
    fourth = asyncio.create_task(limiter.acquire(hold=True))
    await asyncio.sleep(0.1)
    assert not fourth.done()
    limiter.release()  # an answer came back: it still counts for `per` seconds
    await asyncio.sleep(0.1)
    assert not fourth.done()
    fourth.cancel()


async def test_a_request_leaves_the_window_per_seconds_after_its_answer() -> None:
    limiter = RateLimiter(2, per=0.2, margin=0.0, burst=2)
    for _ in range(2):
        async with limiter:
            pass
    answered = time.monotonic()
    async with limiter:  # must wait until the first answer is 0.2 s old
        went = time.monotonic()
    assert went - answered >= 0.19


async def test_a_slow_answer_keeps_its_request_in_the_window_until_per_after_it() -> None:
    # The jitter case: the server may have stamped a slow request as late as
    # its answer, so it must count until `per` after the answer, not the send.
    limiter = RateLimiter(2, per=0.3, margin=0.0, burst=2)
    answers: dict[str, float] = {}

    async def request(name: str, duration: float) -> None:
        async with limiter:
            await asyncio.sleep(duration)
        answers[name] = time.monotonic()

    await asyncio.gather(request("slow", 0.2), request("quick", 0.0))
    async with limiter:  # room once the quick one has aged out
        pass
    async with limiter:  # room only once the slow one has aged out
        went = time.monotonic()
    assert went >= answers["slow"] + 0.3 - 1e-3


async def test_an_open_gate_lets_everyone_through_without_a_probe() -> None:
    gate = Gate()
    assert await gate.enter() is False
    assert gate.is_open


async def test_a_paused_gate_releases_exactly_one_probe_then_everyone() -> None:
    gate = Gate()
    gate.pause(0.05)
    waiters = [asyncio.create_task(gate.enter()) for _ in range(8)]
    done, pending = await asyncio.wait(waiters, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.sleep(0.05)  # give the others every chance to (wrongly) get through
    finished = [task for task in waiters if task.done()]
    assert len(finished) == 1 and finished[0].result() is True  # the single probe
    gate.probe_finished()  # the probe got an ordinary answer
    results = await asyncio.wait_for(asyncio.gather(*waiters), timeout=10)
    assert results.count(True) == 1 and results.count(False) == 7
    assert gate.is_open


async def test_a_probe_that_meets_another_503_keeps_everyone_waiting() -> None:
    gate = Gate()
    gate.pause(0.02)
    probe = await asyncio.wait_for(gate.enter(), timeout=10)
    assert probe is True
    others = [asyncio.create_task(gate.enter()) for _ in range(4)]
    gate.pause(0.2)  # the probe's answer: still unavailable
    gate.probe_finished()
    await asyncio.sleep(0.05)
    assert not any(task.done() for task in others)
    assert not gate.is_open
    # After the new pause, again exactly one of them is the probe.
    first_done, _ = await asyncio.wait(others, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.sleep(0.05)
    assert sum(task.done() for task in others) == 1
    gate.probe_finished()
    results = await asyncio.wait_for(asyncio.gather(*others), timeout=10)
    assert results.count(True) == 1


async def test_pause_extends_but_never_shortens() -> None:
    gate = Gate()
    gate.pause(10.0)
    gate.pause(0.0)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(gate.enter(), timeout=0.1)
