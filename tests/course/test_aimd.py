"""course.aimd: a pace found by AIMD, or read from the IETF RateLimit headers; and `--rate auto`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from course.aimd import AimdLimiter, AnnouncedLimit, aimd_policy, parse_rate_limit_headers
from course.mockapi_control import MockAPIControl
from course.servers import ServerHandle, start_mock_api

LIMIT = 50  # the mock API's limit, requests per second
ITEMS = 400


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"RateLimit-Policy": '"default";q=100;w=1', "RateLimit": '"default";r=37;t=1'}, (100, 1.0, 37, 1.0)),
        ({"RateLimit-Policy": '"burst";q=10;w=2, "day";q=1000;w=86400'}, (10, 2.0, None, None)),
        ({"RateLimit-Policy": "100;w=60", "RateLimit": "limit=100, remaining=0, reset=7"}, (100, 60.0, 0, 7.0)),
        ({"RateLimit-Policy": '"p";q=5'}, (5, 1.0, None, None)),  # w defaults to 1 s
    ],
)
def test_the_drafts_headers_are_read(headers, expected) -> None:
    announced = parse_rate_limit_headers(headers)
    assert announced is not None
    assert (announced.quota, announced.window, announced.remaining, announced.reset) == expected


@pytest.mark.parametrize(
    "headers",
    [{}, {"RateLimit": '"default";r=3;t=1'}, {"RateLimit-Policy": "lots"}, {"RateLimit-Policy": '"p";q=0;w=1'},
     {"RateLimit-Policy": '"p";q=5;w=0'}],
)  # fmt: skip
def test_missing_or_unusable_headers_announce_nothing(headers) -> None:
    assert parse_rate_limit_headers(headers) is None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _acquire_every(limiter: AimdLimiter, clock: Clock, until: float, step: float = 0.1) -> None:
    """Requests every ``step`` s of the test clock up to ``until``."""
    while clock.now < until - 1e-9:
        clock.now = round(clock.now + step, 6)
        await limiter.acquire()


async def test_slow_start_doubles_the_pace_every_window_while_requests_go() -> None:
    clock = Clock()
    limiter = AimdLimiter(10, clock=clock)
    await limiter.acquire()
    await _acquire_every(limiter, clock, 1.0)
    assert limiter.pace == pytest.approx(20)
    await _acquire_every(limiter, clock, 2.0)
    assert limiter.pace == pytest.approx(40)
    clock.now = 7.0  # five idle seconds: they are not counted as seconds without a refusal
    await limiter.acquire()
    assert limiter.pace == pytest.approx(40 * 2**0.25)


def _accept(limiter: AimdLimiter, clock: Clock, count: int) -> None:
    """``count`` accepted answers spread over the last window of the test clock."""
    now = clock.now
    for k in range(count):
        clock.now = now - 1 + (k + 1) / count
        limiter.accepted()
    clock.now = now


async def test_a_429_notes_the_ceiling_and_cuts_once_per_window() -> None:
    clock = Clock()
    limiter = AimdLimiter(10, clock=clock)
    await limiter.acquire()
    await _acquire_every(limiter, clock, 3.0)  # 80/s by now
    _accept(limiter, clock, 30)  # but the server accepted 30 in the last second
    limiter.slow_down()  # the first 429: 90 % of what was accepted (not of the pace)
    assert (limiter.ceiling, limiter.pace, limiter.cuts, limiter.slow_start) == (30, pytest.approx(27), 1, False)
    clock.now = 3.5
    limiter.slow_down()  # a 429 of a request sent before the cut: nothing new
    assert (limiter.pace, limiter.cuts) == (pytest.approx(27), 1)
    clock.now = 4.2
    await limiter.acquire()  # no window without a 429 yet (the last came at 3.5): no increase
    assert limiter.pace == pytest.approx(27)
    clock.now = 4.6
    await limiter.acquire()  # a quiet window: straight back to 95 % of the ceiling
    assert limiter.pace == pytest.approx(28.5)
    clock.now = 5.7
    await limiter.acquire()  # then a probe of 1 % of the ceiling per window
    assert limiter.pace == pytest.approx(28.8)


async def test_a_429_just_after_an_increase_still_cuts() -> None:
    """The probe that crossed the limit is the one that must be cut (once a window has passed since the
    last cut), however recent the increase."""
    clock = Clock()
    limiter = AimdLimiter(60, increase=0.5, clock=clock)
    await limiter.acquire()
    clock.now = 1.0
    _accept(limiter, clock, 50)
    limiter.slow_down()
    assert limiter.pace == pytest.approx(45)
    for second in range(3, 12):  # a quiet window each: the pace grows
        clock.now = float(second)
        await limiter.acquire()
    assert limiter.pace > 49
    clock.now = 11.1  # 0.1 s after that increase, the server refuses
    _accept(limiter, clock, 50)
    limiter.slow_down()
    assert (limiter.cuts, limiter.pace) == (2, pytest.approx(45))


async def test_a_cut_by_a_given_factor_and_a_given_probe_step() -> None:
    clock = Clock()
    limiter = AimdLimiter(60, increase=2, settle=0.5, clock=clock)
    await limiter.acquire()
    clock.now = 1.0
    _accept(limiter, clock, 40)
    limiter.slow_down(0.5)  # a factor overrides decrease, once
    assert limiter.pace == pytest.approx(20)
    clock.now = 2.5
    await limiter.acquire()  # at settle x ceiling already: the given step
    assert limiter.pace == pytest.approx(22)
    with pytest.raises(ValueError, match="factor"):
        limiter.slow_down(1.5)  # a "cut" that raises the pace is refused


async def test_an_announced_limit_sets_the_pace_and_the_window_count() -> None:
    clock = Clock()
    limiter = AimdLimiter(5, clock=clock)
    limiter.accepted(AnnouncedLimit(quota=100, window=2, remaining=99, reset=2))
    assert limiter.pace == pytest.approx(100 * 0.98 / 2)
    assert (limiter.rate, limiter.per) == (100, 2)  # RateLimiter's count: 100 in any 2 s
    limiter.slow_down()  # a 429 then is not the pace's doing: the pace stays
    assert limiter.pace == pytest.approx(49)
    clock.now = 5.0
    await limiter.acquire()  # no slow start on top of an announced pace
    assert limiter.pace == pytest.approx(49)


def test_the_policy_shows_the_limiter_accepted_and_refused_answers() -> None:
    policy = aimd_policy()
    assert not policy.plain_success(200)  # a 200 goes through the handler that reads its headers
    assert policy.handler_for(429) is not policy.handler_for(200)
    assert policy.handler_for(503).__name__ == "pause_everyone"  # the rest of the defaults stay


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"start": 0}, "start"),
        ({"decrease": 1}, "decrease"),
        ({"window": 0}, "window"),
        ({"increase": -1}, "increase"),
        ({"settle": 0}, "settle"),
        ({"settle": 1.5}, "settle"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        AimdLimiter(**kwargs)


@pytest.fixture(scope="module")
def api() -> Iterator[ServerHandle]:
    handle = start_mock_api(port=None, items=ITEMS)
    yield handle
    handle.stop()


def _fetch_auto(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "course.fetch", url, "--rate", "auto", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _accepted_rate_after_the_start(stats: dict) -> float:
    """200s per second, from 40 % of the run on (slow start over) to the last 10 %."""
    accepted = [t for t, status in zip(stats["arrivals"], stats["statuses"], strict=True) if status == "200"]
    steady = accepted[int(len(accepted) * 0.4) : int(len(accepted) * 0.9)]
    return (len(steady) - 1) / (steady[-1] - steady[0])


@pytest.mark.slow
def test_rate_auto_finds_an_unannounced_limit(api) -> None:
    control = MockAPIControl(api.url)
    control.use({"rate_limit": {"requests": LIMIT, "per": 1}})
    done = _fetch_auto(api.url)
    assert done.returncode == 0, done.stderr
    assert f"{ITEMS} fetched, 0 failed" in done.stderr
    stats = control.stats(detail=True)
    assert "429" in stats["by_status"]  # it had to be refused to find the limit ...
    assert _accepted_rate_after_the_start(stats) >= 0.9 * LIMIT  # ... and then kept close to it


@pytest.mark.slow
def test_rate_auto_paces_from_the_headers_with_no_429(api) -> None:
    control = MockAPIControl(api.url)
    control.use({"rate_limit": {"requests": LIMIT, "per": 1, "headers": True}})
    done = _fetch_auto(api.url)
    assert done.returncode == 0, done.stderr
    stats = control.stats(detail=True)
    assert stats["by_status"] == {"200": ITEMS + 1}  # not one 429, from the first answer on
    # Paced at the announced quota, not stuck in slow start (10/s, 20/s ...). The bound is
    # looser than for AIMD: a request counts until `per` s after its answer, so slow answers
    # on a busy machine cost pace (about quota / (per + latency)).
    assert _accepted_rate_after_the_start(stats) >= 0.8 * LIMIT
