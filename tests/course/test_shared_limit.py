"""course.shared_limit: one budget for every process naming a key, on a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from redis_fixture import fetch_process, redis_server, requires_redis, steady_rate

from course.mockapi_control import MockAPIControl
from course.servers import ServerHandle, free_port, start_mock_api
from course.shared_limit import SharedLimitError, SharedRateLimiter

pytestmark = requires_redis
__all__ = ["redis_server"]  # the fixture, imported for the tests below

RATE = 20  # requests per second, for the whole fleet
ITEMS = 40


@pytest.fixture(scope="module")
def api() -> Iterator[ServerHandle]:
    handle = start_mock_api(port=None, items=ITEMS)
    yield handle
    handle.stop()


async def test_callers_sharing_a_key_get_slots_one_interval_apart(redis_server) -> None:
    first = SharedRateLimiter(redis_server.url, "spacing", 100)
    second = SharedRateLimiter(redis_server.url, "spacing", 100)
    try:
        # Twenty asks from two clients (two connections) at once: the slots, on
        # Redis's clock, are exactly one interval apart, whoever asks.
        interval = 1 / 95
        slots = await asyncio.gather(*((first if n % 2 else second)._ask(interval) for n in range(20)))
        gaps = [later - earlier for earlier, later in zip(sorted(slots), sorted(slots)[1:], strict=False)]
        assert gaps == pytest.approx([interval] * 19, abs=2e-6)
    finally:
        await first.aclose()
        await second.aclose()


async def test_different_keys_are_different_budgets(redis_server) -> None:
    busy = SharedRateLimiter(redis_server.url, "busy", 10)
    quiet = SharedRateLimiter(redis_server.url, "quiet", 10)
    try:
        slots = [await busy._ask(0.1) for _ in range(10)]  # busy's schedule is now a second ahead
        assert await quiet._ask(0.1) < slots[1]  # quiet's first slot is now, not after busy's
        assert await busy._ask(0.1) == pytest.approx(slots[-1] + 0.1, abs=2e-6)
    finally:
        await busy.aclose()
        await quiet.aclose()


async def test_hold_and_release_count_what_is_in_flight(redis_server) -> None:
    limiter = SharedRateLimiter(redis_server.url, "held", 1000)
    try:
        async with limiter:
            assert limiter.in_flight == 1
        assert limiter.in_flight == 0
        with pytest.raises(RuntimeError, match="more often"):
            limiter.release()
    finally:
        await limiter.aclose()


async def test_an_unreachable_redis_is_a_clear_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    limiter = SharedRateLimiter(url, "nowhere", 10)
    with pytest.raises(SharedLimitError, match=f"the shared rate limit at {url} failed"):
        await asyncio.wait_for(limiter.acquire(), 10)
    await limiter.aclose()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"key": ""}, "non-empty key"),
        ({"rate": 0}, "rate > 0"),
        ({"margin": 1.5}, "margin"),
        ({"late": -1}, "late"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message) -> None:
    arguments = {"redis_url": "redis://127.0.0.1:1/0", "key": "k", "rate": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        SharedRateLimiter(**arguments)


@pytest.mark.slow
def test_four_processes_share_one_rate_with_no_429(redis_server, api) -> None:
    """Four `course.fetch` processes, each fetching every item, against a strict sliding window of RATE/s."""
    control = MockAPIControl(api.url)
    control.use({"rate_limit": {"requests": RATE, "per": 1.0}})
    fleet = [
        fetch_process(
            api.url, "--rate", str(RATE), "--shared-limit", redis_server.url, "--limit-key", "four", "--quiet"
        )
        for _ in range(4)
    ]
    for process in fleet:
        _out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert f"{ITEMS} fetched, 0 failed" in err
    stats = control.stats(detail=True)
    assert stats["by_status"] == {"200": 4 * (ITEMS + 1)}  # every item and listing, not one 429
    assert steady_rate(stats["arrivals"]) >= 0.9 * RATE
