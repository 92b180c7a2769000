"""RateLimiter and Gate: spacing, windows, slow-down, the shared pause and its single probe.

Most tests run on fake time (``fake_time.FakeTimeLoop``): the loop's clock
jumps from timer to timer, so every send time is known exactly and the
assertions are exact (to a nanosecond of float rounding). The two
``..._on_the_real_clock`` tests check the same guarantees on an ordinary loop,
with bounds that load can only make safer.
"""

from __future__ import annotations

import asyncio
import random
from bisect import bisect_right

import pytest
from fake_time import fake_loop, on_fake_time

from course.limiters import Gate, RateLimiter

NS = 1e-9  # float rounding of the virtual clock, far below any interval here


def exactly(expected: list[float]) -> object:
    return pytest.approx(expected, abs=NS)


def max_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` that one window ``(t - window, t]`` holds."""
    times = sorted(times)
    return max(i - bisect_right(times, t - window) + 1 for i, t in enumerate(times))


def most_in_one_window(spans: list[tuple[float, float]], per: float) -> int:
    """The most requests one server window ``[a, a + per)`` can stamp, whatever its stamps.

    A request is stamped somewhere in its span (sent, answered), so a window
    can count it iff it meets the span: sent < a + per and answered >= a,
    that is a in (sent - per, answered]. The most such spans at one ``a``.
    """
    return max(sum(1 for sent, answered in spans if sent - per + NS < a <= answered) for _, a in spans)


# --- the schedule --------------------------------------------------------------------------


@on_fake_time
async def test_the_101st_acquire_is_one_second_after_the_first() -> None:
    loop = fake_loop()
    limiter = RateLimiter(100, margin=0.0)
    start = loop.time()
    stamps: list[float] = []
    for _ in range(101):
        await limiter.acquire()
        stamps.append(loop.time() - start)
    assert stamps == exactly([i / 100 for i in range(101)])


@on_fake_time
async def test_no_startup_burst_concurrent_callers_get_consecutive_slots() -> None:
    loop = fake_loop()
    limiter = RateLimiter(50, per=1.0, margin=0.0)  # one slot every 20 ms
    start = loop.time()
    stamps: list[float] = []

    async def take() -> None:
        async with limiter:
            stamps.append(loop.time() - start)

    await asyncio.gather(*(take() for _ in range(10)))
    assert stamps == exactly([i * 0.02 for i in range(10)])


@on_fake_time
async def test_margin_spaces_the_schedule_a_little_under_the_limit() -> None:
    loop = fake_loop()
    limiter = RateLimiter(100, margin=0.01)  # 99 per second
    start = loop.time()
    for _ in range(100):
        await limiter.acquire()
    assert loop.time() - start == pytest.approx(1.0, abs=NS)  # the 100th slot: 99 intervals of 1/99 s
    assert limiter.current_rate == pytest.approx(99)


def test_margin_lowers_the_rate_per_second() -> None:
    assert RateLimiter(1000, margin=0.01).current_rate == pytest.approx(990)
    assert RateLimiter(10, per=2.0, margin=0.0).current_rate == pytest.approx(5)


# --- stalls: catch_up ----------------------------------------------------------------------


async def stamps_around_a_stall(callers: int, before: float, stall: float) -> list[float]:
    """``callers`` tasks take slots of a 100/s limiter (catch_up 50 ms) from t = 0; the loop
    is blocked from t = ``before`` for ``stall`` s. Returns when each caller went, in order."""
    loop = fake_loop()
    limiter = RateLimiter(100, per=1.0, margin=0.0, catch_up=0.05)  # a slot every 10 ms
    start = loop.time()
    stamps: list[float] = []

    async def take() -> None:
        await limiter.acquire()
        stamps.append(loop.time() - start)

    tasks = [asyncio.create_task(take()) for _ in range(callers)]
    await asyncio.sleep(before)
    loop.stall(stall)  # the event loop is blocked: nothing runs, the clock moves on
    await asyncio.gather(*tasks)
    return sorted(stamps)


@on_fake_time
async def test_after_a_3_s_stall_at_most_catch_up_times_rate_go_at_once() -> None:
    stamps = await stamps_around_a_stall(60, before=0.105, stall=3.0)  # blocked from 0.105 to 3.105
    # Slots 0 .. 0.10 went before the stall. Slot 0.11 is 2.995 s late: it goes, and all but
    # catch_up (50 ms) of that is dropped from the schedule, so every later slot moves
    # 2.945 s on. Slots 0.12 .. 0.16 are then at most 50 ms late and go with it: 1 + 5 at once.
    # The rest keep the 10 ms spacing.
    went_at_once = [3.105] * 6
    assert stamps == exactly([i / 100 for i in range(11)] + went_at_once + [2.945 + i / 100 for i in range(17, 60)])
    assert sum(1 for t in stamps if abs(t - 3.105) < NS) == 1 + 0.05 * 100


@on_fake_time
async def test_lateness_within_catch_up_is_made_up_and_the_schedule_stays() -> None:
    stamps = await stamps_around_a_stall(20, before=0.055, stall=0.035)  # blocked until 0.09
    # Slots 0.06, 0.07, 0.08 and 0.09 are at most 30 ms late: they all go when the loop runs
    # again, and the schedule does not move (slot 0.10 is still at 0.10).
    assert stamps == exactly([i / 100 for i in range(6)] + [0.09] * 4 + [i / 100 for i in range(10, 20)])


# --- the window: the server's count ---------------------------------------------------------


@on_fake_time
async def test_plain_acquire_needs_no_release_and_keeps_the_window() -> None:
    loop = fake_loop()
    limiter = RateLimiter(10, per=0.2, margin=0.0)
    start = loop.time()
    stamps: list[float] = []
    for _ in range(25):
        await limiter.acquire()
        stamps.append(loop.time() - start)
    assert limiter.in_flight == 0
    assert stamps == exactly([i * 0.02 for i in range(25)])
    assert max_in_window(stamps, 0.2 - NS) == 10


@on_fake_time
async def test_whatever_the_servers_stamps_no_window_of_per_seconds_holds_more_than_rate() -> None:
    # 80 requests of mixed durations (fixed seed) at 10 per second, counted in 1 s windows.
    loop = fake_loop()
    limiter = RateLimiter(10, per=1.0, margin=0.0)
    durations = random.Random(11).choices([0.0, 0.05, 0.3, 0.9, 2.5], k=80)
    start = loop.time()
    spans: list[tuple[float, float]] = []

    async def request(duration: float) -> None:
        async with limiter:
            sent = loop.time()
            await asyncio.sleep(duration)
            spans.append((sent, loop.time()))

    await asyncio.gather(*(request(d) for d in durations))
    assert len(spans) == 80
    assert most_in_one_window(spans, 1.0) <= 10
    # The window did hold requests back: on the schedule alone the last would go at 7.9 s.
    assert max(sent for sent, _ in spans) - start > 7.9 + 1.0


@on_fake_time
async def test_requests_in_flight_count_against_the_window_until_per_after_their_answer() -> None:
    # 3 per minute: three requests whose answers have not come back yet use
    # up the window, however long ago they were sent.
    loop = fake_loop()
    limiter = RateLimiter(3, per=60.0, margin=0.0, burst=3)
    start = loop.time()
    for _ in range(3):
        await limiter.acquire(hold=True)
    assert loop.time() == start  # burst=3: all three at once
    fourth = asyncio.create_task(limiter.acquire(hold=True))
    await asyncio.sleep(30.0)
    assert not fourth.done()  # its slot (20 s) has passed; the window is full
    limiter.release()  # an answer came back at 30 s: it still counts until 90 s
    await fourth
    assert loop.time() - start == 90.0


@on_fake_time
async def test_a_request_leaves_the_window_per_seconds_after_its_answer() -> None:
    loop = fake_loop()
    limiter = RateLimiter(2, per=0.2, margin=0.0, burst=2)
    for _ in range(2):
        async with limiter:
            pass
    answered = loop.time()
    async with limiter:  # its slot is at 0.1 s; the window has room only at 0.2 s
        went = loop.time()
    assert went - answered == pytest.approx(0.2, abs=NS)


@on_fake_time
async def test_a_slow_answer_keeps_its_request_in_the_window_until_per_after_it() -> None:
    # The jitter case: the server may have stamped a slow request as late as
    # its answer, so it must count until `per` after the answer, not the send.
    loop = fake_loop()
    limiter = RateLimiter(2, per=0.3, margin=0.0, burst=2)
    answers: dict[str, float] = {}

    async def request(name: str, duration: float) -> None:
        async with limiter:
            await asyncio.sleep(duration)
        answers[name] = loop.time()

    await asyncio.gather(request("slow", 0.2), request("quick", 0.0))
    async with limiter:  # room once the quick one has aged out
        assert loop.time() == pytest.approx(answers["quick"] + 0.3, abs=NS)
    async with limiter:  # room only once the slow one has aged out
        assert loop.time() == pytest.approx(answers["slow"] + 0.3, abs=NS)


# --- slow_down ----------------------------------------------------------------------------


@on_fake_time
async def test_slow_down_spaces_acquisitions_at_the_lower_pace() -> None:
    loop = fake_loop()
    limiter = RateLimiter(100, margin=0.0, recovery=1e9)  # a recovery too slow to show here
    limiter.slow_down(0.5)
    start = loop.time()
    stamps: list[float] = []
    for _ in range(5):
        await limiter.acquire()
        stamps.append(loop.time() - start)
    assert stamps == exactly([0.0, 0.02, 0.04, 0.06, 0.08])


@on_fake_time
async def test_slow_down_recovers_linearly_to_the_target_over_recovery_seconds() -> None:
    limiter = RateLimiter(1000, margin=0.0, recovery=0.2)
    limiter.slow_down(0.5)
    assert limiter.current_rate == pytest.approx(500)
    limiter.slow_down(0.01)  # never below a tenth of the target
    assert limiter.current_rate == pytest.approx(100)
    await asyncio.sleep(0.1)  # half the recovery time: half the target back
    async with limiter:
        pass
    assert limiter.current_rate == pytest.approx(100 + 500)
    await asyncio.sleep(0.1)
    async with limiter:
        pass
    assert limiter.current_rate == pytest.approx(1000)  # and no further


# --- arguments, context manager, the clock ---------------------------------------------------


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


def test_made_outside_any_loop_they_read_the_clock_of_the_loop_they_run_in() -> None:
    limiter, gate = RateLimiter(100, margin=0.0), Gate()  # as at import, or in a notebook cell
    stamps: list[float] = []

    @on_fake_time
    async def use_them() -> None:
        loop = fake_loop()
        start = loop.time()
        gate.pause(1.0)
        assert await gate.enter() is True
        gate.probe_finished()
        for _ in range(3):
            await limiter.acquire()
            stamps.append(loop.time() - start)

    use_them()
    assert stamps == exactly([1.0, 1.01, 1.02])


def test_used_outside_any_loop_without_a_clock_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="clock="):
        Gate().pause(1.0)
    with pytest.raises(RuntimeError, match="clock="):
        RateLimiter(10).slow_down()


@on_fake_time
async def test_an_explicit_clock_is_the_one_read() -> None:
    loop = fake_loop()
    reading = [0.0]
    limiter = RateLimiter(1, per=60.0, margin=0.0, clock=lambda: reading[0])
    gate = Gate(clock=lambda: reading[0])
    await limiter.acquire()
    gate.pause(5.0)
    reading[0] = 60.0  # a minute passes, by that clock only
    before = loop.time()
    await limiter.acquire()  # its slot (60) is due: no wait
    assert await gate.enter() is True  # the pause (until 5) is over: the probe goes at once
    assert loop.time() == before


# --- Gate -----------------------------------------------------------------------------------


async def test_an_open_gate_lets_everyone_through_without_a_probe() -> None:
    gate = Gate()
    assert await gate.enter() is False
    assert gate.is_open


@on_fake_time
async def test_a_paused_gate_releases_exactly_one_probe_then_everyone() -> None:
    loop = fake_loop()
    gate = Gate()
    start = loop.time()
    gate.pause(0.05)
    entered: list[tuple[bool, float]] = []

    async def worker() -> None:
        probe = await gate.enter()
        entered.append((probe, loop.time() - start))

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    await asyncio.sleep(10.0)  # every chance for the others to (wrongly) get through
    assert entered == [(True, pytest.approx(0.05, abs=NS))]  # the single probe, when the pause ended
    gate.probe_finished()  # the probe got an ordinary answer
    await asyncio.gather(*workers)
    assert entered[1:] == [(False, 10.0)] * 7
    assert gate.is_open


@on_fake_time
async def test_a_probe_that_meets_another_503_keeps_everyone_waiting() -> None:
    loop = fake_loop()
    gate = Gate()
    start = loop.time()
    gate.pause(0.02)
    assert await gate.enter() is True
    assert loop.time() - start == pytest.approx(0.02, abs=NS)
    entered: list[tuple[bool, float]] = []

    async def worker() -> None:
        probe = await gate.enter()
        entered.append((probe, loop.time() - start))

    others = [asyncio.create_task(worker()) for _ in range(4)]
    gate.pause(0.2)  # the probe's answer: still unavailable, for 0.2 s more
    gate.probe_finished()
    await asyncio.sleep(1.0)
    assert not gate.is_open
    assert entered == [(True, pytest.approx(0.22, abs=NS))]  # again exactly one probe, at the end
    gate.probe_finished()
    await asyncio.gather(*others)
    assert entered[1:] == [(False, pytest.approx(1.02, abs=NS))] * 3


@on_fake_time
async def test_during_an_outage_exactly_one_probe_goes_per_pause() -> None:
    # Requests take 0.25 s; the server answers 503 with Retry-After: 2 to every request
    # sent before t = 7. Eight workers share the gate.
    loop = fake_loop()
    gate = Gate()
    start = loop.time()
    sent: list[tuple[float, bool]] = []

    async def worker() -> None:
        while True:
            probe = await gate.enter()
            sent_at = loop.time() - start
            sent.append((sent_at, probe))
            await asyncio.sleep(0.25)
            down = sent_at < 7.0
            if down:
                gate.pause(2.0)
            if probe:
                gate.probe_finished()
            if not down:
                return

    await asyncio.gather(*(worker() for _ in range(8)))
    # All eight were sent before the first 503 came back; then one probe per pause
    # (each 2 s after the previous probe's answer), and everyone once a probe got through.
    probes = [(2.25, True), (4.5, True), (6.75, True), (9.0, True)]
    assert sent == [(0.0, False)] * 8 + probes + [(9.25, False)] * 7
    assert gate.is_open


@on_fake_time
async def test_pause_extends_but_never_shortens() -> None:
    loop = fake_loop()
    gate = Gate()
    start = loop.time()
    gate.pause(10.0)
    gate.pause(0.0)
    assert await gate.enter() is True
    assert loop.time() - start == 10.0


# --- the same guarantees on the real clock ----------------------------------------------------


async def test_no_window_of_per_seconds_holds_more_than_rate_on_the_real_clock() -> None:
    loop = asyncio.get_running_loop()
    limiter = RateLimiter(20, per=0.2, margin=0.0)  # 100/s, counted in 0.2 s windows
    stamps: list[float] = []

    async def take() -> None:
        async with limiter:
            stamps.append(loop.time())

    await asyncio.gather(*(take() for _ in range(120)))
    assert max_in_window(stamps, 0.2) <= 20  # a late wake-up only spreads them further


async def test_a_slow_answer_keeps_its_request_in_the_window_on_the_real_clock() -> None:
    loop = asyncio.get_running_loop()
    limiter = RateLimiter(2, per=0.3, margin=0.0, burst=2)
    answers: dict[str, float] = {}

    async def request(name: str, duration: float) -> None:
        async with limiter:
            await asyncio.sleep(duration)
        answers[name] = loop.time()

    await asyncio.gather(request("slow", 0.2), request("quick", 0.0))
    async with limiter:
        pass
    async with limiter:
        went = loop.time()
    assert went >= answers["slow"] + 0.3 - 1e-3  # a sleep never ends early
