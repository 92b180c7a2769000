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


async def test_no_window_of_per_seconds_holds_more_than_rate() -> None:
    limiter = RateLimiter(20, per=0.2, margin=0.0)  # 100/s, counted in 0.2 s windows
    stamps: list[float] = []

    async def take() -> None:
        await limiter.acquire()
        stamps.append(time.monotonic())

    await asyncio.gather(*(take() for _ in range(120)))
    assert max_in_window(stamps, 0.2) <= 20


async def test_callers_are_spaced_from_the_first_no_startup_burst() -> None:
    limiter = RateLimiter(50, per=1.0, margin=0.0)  # one slot every 20 ms
    stamps: list[float] = []

    async def take() -> None:
        await limiter.acquire()
        stamps.append(time.monotonic())

    await asyncio.gather(*(take() for _ in range(6)))
    gaps = [b - a for a, b in zip(sorted(stamps), sorted(stamps)[1:])]
    # A sleep never ends early, so each slot is at least one interval after the last.
    assert all(gap >= 0.019 for gap in gaps), gaps


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
    await limiter.acquire()
    assert limiter.current_rate == pytest.approx(1000)


def test_nonsense_arguments_are_refused_with_a_message() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="margin"):
        RateLimiter(10, margin=1.5)
    with pytest.raises(ValueError, match="factor"):
        RateLimiter(10).slow_down(2)


async def test_limiter_is_an_async_context_manager_like_throttler() -> None:
    limiter = RateLimiter(1000)
    async with limiter:
        pass


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
