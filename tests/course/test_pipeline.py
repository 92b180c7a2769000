"""Pipelines: stages joined by queues, fan-out unpackers, several consumers per stage."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from course.limiters import Gate, RateLimiter
from course.pipeline import Pipeline, list_then_fetch, run_stages
from course.records import Request, Response
from course.workers import WorkerPool


async def test_list_then_fetch_gets_every_listed_item_once(small_api) -> None:
    small_api.scenario({"error_rate": 0.05, "seed": 8})
    report = await asyncio.wait_for(list_then_fetch(small_api.url, rate=2000, workers=16), timeout=120)
    assert sorted(r.item for r in report.results) == list(range(500))
    assert not report.failures
    stats = small_api.stats()
    assert stats["items"]["max_per_item"] == 1 and stats["items"]["served"] == 500
    assert set(report.stats) == {"list", "fetch"} and report.stats["fetch"].results == 500


async def test_fan_out_through_three_stages_with_shared_limiter(mock_api) -> None:
    # page -> ids on that page -> emails; 4 pages of 25
    limiter, gate = RateLimiter(2000), Gate()

    def page_ids(page: int, response: Response) -> list[int]:
        return response.json()["items"]

    pages = WorkerPool(
        lambda page: Request(mock_api.url + "/items", params={"page": str(page), "per_page": "25"}),
        unpack=page_ids, workers=2, limiter=limiter, gate=gate, name="pages",
    )
    emails = WorkerPool(mock_api.url + "/items/{item}", workers=8, limiter=limiter, gate=gate, name="emails",
                        unpack=lambda item, r: [r.json()["email"]])
    domains = WorkerPool(lambda email: Request(mock_api.url + "/"), workers=3, limiter=limiter, gate=gate,
                         name="hello", unpack=lambda email, r: (email, r.text()))
    report = await asyncio.wait_for(Pipeline(pages, emails, domains).run([1, 2, 3, 4]), timeout=60)
    assert len(report.results) == 100
    assert {r.data[1] for r in report.results} == {"Hello, world"}
    assert all("@" in r.item and r.data[0] == r.item for r in report.results)
    assert report.stats["pages"].requests == 4 and report.stats["emails"].requests == 100


async def test_a_failure_in_an_early_stage_is_reported_not_dropped(mock_api) -> None:
    listing = WorkerPool(Request, unpack=lambda url, r: r.json(), workers=1, name="list")
    fetching = WorkerPool(mock_api.url + "/items/{item}", workers=2, name="fetch")
    report = await Pipeline(listing, fetching).run([mock_api.url + "/no-such-list"])
    assert len(report.failures) == 1 and report.failures[0].stage == "list"
    assert report.failures[0].status == 404


def test_stages_need_distinct_names() -> None:
    with pytest.raises(ValueError, match="own name"):
        Pipeline(WorkerPool("http://x/{item}"), WorkerPool("http://x/{item}"))


async def test_a_run_leaves_its_stages_as_they_were(mock_api) -> None:
    listing = WorkerPool(Request, unpack=lambda url, r: r.json()["items"], workers=1, name="list")
    fetching = WorkerPool(mock_api.url + "/items/{item}", workers=4, name="fetch")
    during: list[tuple[object, object]] = []
    report = await Pipeline(listing, fetching).run(
        [mock_api.url + "/items?page=1&per_page=10"],
        on_outcome=lambda outcome: during.append((listing.session, fetching.session)),
    )
    assert report.succeeded == 10
    assert set(during) == {(None, None)}  # the shared session was handed to the workers, not set on the stages


async def test_a_stage_with_its_own_session_sends_through_it(mock_api) -> None:
    sent: list[str] = []

    async def count(session: object, context: object, params: aiohttp.TraceRequestStartParams) -> None:
        sent.append(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(count)
    async with aiohttp.ClientSession(trace_configs=[trace]) as own:
        listing = WorkerPool(Request, unpack=lambda url, r: r.json()["items"], workers=1, name="list")
        fetching = WorkerPool(mock_api.url + "/items/{item}", workers=4, session=own, name="fetch")
        report = await Pipeline(listing, fetching).run([mock_api.url + "/items?page=1&per_page=10"])
        assert report.succeeded == 10
        assert sorted(sent) == sorted(f"/items/{i}" for i in range(10))  # the fetches, not the listing
        assert fetching.session is own and not own.closed  # still the caller's, still open
    assert listing.session is None


async def test_run_stages_needs_a_session_for_every_stage() -> None:
    with pytest.raises(RuntimeError, match="no open session"):
        await run_stages([WorkerPool("http://127.0.0.1:9/{item}", name="lonely")], [1])
