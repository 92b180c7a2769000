"""One coroutine per request (approach 1): every attempt takes a slot, bounded retries, nothing dropped."""

from __future__ import annotations

import asyncio
from typing import Any

from throttler import Throttler

from course.client import fetch_each
from course.limiters import RateLimiter
from course.records import Failure, Result


class CountingLimiter:
    """Wraps a limiter and counts how many times a slot was taken."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.taken = 0

    async def __aenter__(self) -> None:
        self.taken += 1
        await self.inner.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.__aexit__(*exc)


async def test_every_attempt_retries_included_takes_its_own_slot(mock_api) -> None:
    mock_api.scenario({"error_rate": 0.2, "seed": 4})
    limiter = CountingLimiter(Throttler(rate_limit=1000, period=1.0))
    outcomes = await asyncio.wait_for(
        fetch_each(range(300), mock_api.url + "/items/{item}", limiter=limiter), timeout=60
    )
    stats = mock_api.stats()
    assert stats["by_status"].get("500", 0) > 0
    assert limiter.taken == stats["requests"]  # retries went through the limiter too
    assert sorted(o.item for o in outcomes) == list(range(300))
    assert stats["items"]["max_per_item"] == 1


async def test_bodies_are_read_and_items_are_returned_in_order(mock_api) -> None:
    outcomes = await fetch_each([5, 3, 9], mock_api.url + "/items/{item}", limiter=RateLimiter(500))
    assert [o.item for o in outcomes] == [5, 3, 9]
    assert all(isinstance(o, Result) and "@" in o.data["email"] for o in outcomes)


async def test_an_item_that_keeps_failing_becomes_a_failure_with_its_last_error(mock_api) -> None:
    mock_api.scenario({"error_rate": 1.0})
    outcomes = await asyncio.wait_for(
        fetch_each(range(4), mock_api.url + "/items/{item}", limiter=None, attempts=3), timeout=60
    )
    assert all(isinstance(o, Failure) for o in outcomes)
    assert all(o.attempts == 3 and "HTTP 500" in o.error and o.status == 500 for o in outcomes)
    assert mock_api.stats()["requests"] == 12  # bounded: 3 attempts each, no more


async def test_a_404_is_a_failure_at_once(mock_api) -> None:
    [outcome] = await fetch_each([10**9], mock_api.url + "/items/{item}", limiter=None)
    assert isinstance(outcome, Failure) and outcome.status == 404 and outcome.attempts == 1


async def test_with_a_sink_outcomes_are_handed_over_not_kept(mock_api) -> None:
    seen: list[Any] = []
    kept = await fetch_each(range(20), mock_api.url + "/items/{item}", limiter=None, on_outcome=seen.append)
    assert kept == [] and len(seen) == 20


async def test_an_item_cannot_reach_another_route_of_the_server(mock_api) -> None:
    [outcome] = await fetch_each(["../_stats"], mock_api.url + "/items/{item}", limiter=None)
    assert isinstance(outcome, Failure) and outcome.status == 404  # asked for as an item
    assert mock_api.stats()["by_status"] == {"404": 1}


async def test_a_body_over_max_body_fails_its_item_without_a_retry(mock_api) -> None:
    outcomes = await fetch_each([1, 2], mock_api.url + "/items/{item}", limiter=None, max_body=10)
    assert all(isinstance(o, Failure) and o.attempts == 1 for o in outcomes)
    assert all("ResponseTooLarge" in o.error and "max_body=10 bytes" in o.error for o in outcomes)
    assert mock_api.stats()["requests"] == 2  # each sent once, not retried
