"""The worker pool against real mock-API processes: exactly once, pauses, rate, shutdown."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from course.http import DEFAULT_MAX_BODY
from course.limiters import Gate, RateLimiter
from course.listing import ListingError, list_items
from course.policies import Decision, ErrorPolicy, RetryPolicy
from course.records import Failure, Result
from course.stats import RequestEvent
from course.workers import WorkerPool, url_for

MIXED_FAULTS = {
    "rate_limit": {"requests": 2000, "per": 1.0},
    "outage_every": {"period": 2.0, "duration": 0.3, "retry_after": 1},
    "error_rate": 0.05,
    "drop_rate": 0.01,
    "latency": {"mean": 0.002, "jitter": 0.002},
    "seed": 5,
}


@pytest.mark.slow
async def test_ten_thousand_items_each_fetched_exactly_once_under_mixed_faults(mock_api) -> None:
    mock_api.scenario(MIXED_FAULTS)
    outcomes: list[Any] = []
    pool = WorkerPool(mock_api.url + "/items/{item}", limiter=RateLimiter(2000), workers=64,
                      retry=RetryPolicy(retries=6, seed=1))
    report = await asyncio.wait_for(pool.run(range(10_000), on_outcome=outcomes.append), timeout=120)

    ids = [outcome.item for outcome in outcomes]
    assert len(ids) == 10_000 and set(ids) == set(range(10_000))  # none lost, none twice
    results = [o for o in outcomes if isinstance(o, Result)]
    failures = [o for o in outcomes if isinstance(o, Failure)]
    assert report.succeeded == len(results) and report.failures == failures
    for failure in failures:  # a failure only when the budget ran out, and it says why
        assert "gave up after" in failure.error and failure.attempts >= 7

    stats = mock_api.stats(detail=True)
    assert stats["items"]["served"] == len(results)
    assert stats["items"]["max_per_item"] == 1
    served = stats["served"]
    assert all(served.get(str(r.item)) == 1 for r in results)
    assert all(str(f.item) not in served for f in failures)
    # The faults did happen, so this run exercised the retries.
    assert stats["by_status"].get("500", 0) > 0 and stats["by_status"].get("503", 0) > 0
    assert all(r.data["email"] and "@" in r.data["email"] for r in results)


async def test_exhausted_budget_is_reported_as_a_failure_with_its_last_error(mock_api) -> None:
    mock_api.scenario({"error_rate": 0.6, "seed": 2})
    pool = WorkerPool(mock_api.url + "/items/{item}", workers=8, retry=RetryPolicy(retries=1, base=0.001))
    report = await asyncio.wait_for(pool.run(range(200)), timeout=60)
    assert report.completed == 200
    assert report.failures, "with 60 % errors and one retry, some items must fail"
    for failure in report.failures:
        assert failure.attempts == 2 and failure.status == 500
        assert "last error: HTTP 500" in failure.error
    stats = mock_api.stats()
    assert stats["items"]["served"] == report.succeeded
    assert stats["requests"] == report.stats["fetch"].requests


async def test_a_503_window_pauses_every_worker_down_to_one_probe(mock_api, arrivals_between) -> None:
    # 4 s of outage from t=1 s, Retry-After 1 s; 32 workers at 300/s.
    mock_api.scenario({"outages": [{"start": 1.0, "duration": 4.0, "retry_after": 1}]})
    pool = WorkerPool(mock_api.url + "/items/{item}", limiter=RateLimiter(300), workers=32)
    report = await asyncio.wait_for(pool.run(range(700)), timeout=90)
    assert report.succeeded == 700
    stats = mock_api.stats(detail=True)
    arrivals = stats["arrivals"]
    first_503 = next(t for t in arrivals if t >= 1.0)
    # Requests sent before the first 503 came back still land (how many
    # depends on how busy the machine is); from then on the whole pool sends
    # one probe per Retry-After: about 3 in the last 3 s of the outage, where
    # a pool without the shared gate would send about 900.
    during = arrivals_between(arrivals, first_503 + 1.0, 5.0)
    assert during <= 5, f"{during} requests late in the outage; one probe per second expected"
    assert arrivals_between(arrivals, 5.0, 99.0) > 0  # and work resumed after it


async def test_under_a_strict_limit_the_pool_triggers_no_429(mock_api) -> None:
    # Default settings: the limiter counts a request in the server's window
    # until `per` after its answer, so the server's stamp jitter cannot matter.
    mock_api.scenario({"rate_limit": {"requests": 200, "per": 1.0}})
    pool = WorkerPool(mock_api.url + "/items/{item}", limiter=RateLimiter(200), workers=64)
    report = await asyncio.wait_for(pool.run(range(600)), timeout=60)
    assert report.succeeded == 600
    stats = mock_api.stats()
    assert stats["by_status"] == {"200": 600}


async def test_429_slows_down_and_retries_the_item_not_drops_it(mock_api) -> None:
    mock_api.scenario({"rate_limit": {"requests": 20, "per": 1.0}})
    limiter = RateLimiter(200)  # ten times too fast: the server will push back
    pool = WorkerPool(mock_api.url + "/items/{item}", limiter=limiter, workers=8)
    report = await asyncio.wait_for(pool.run(range(40)), timeout=60)
    assert report.succeeded == 40
    stats = mock_api.stats()
    assert stats["by_status"]["429"] > 0 and stats["items"]["max_per_item"] == 1
    assert limiter.current_rate < 200


async def test_paging_producer_lists_every_item_once(mock_api) -> None:
    async with WorkerPool(mock_api.url + "/items/{item}", workers=1) as pool:
        ids = [item async for item in list_items(pool, mock_api.url, per_page=700)]
    assert ids == list(range(10_000))
    assert mock_api.stats()["by_status"] == {"200": 15}  # ceil(10000 / 700) pages


async def test_producer_takes_a_plain_list_from_an_api_that_does_not_paginate() -> None:
    async def everything(request: web.Request) -> web.Response:
        return web.json_response(["x", "y", "z"])  # ignores ?page=

    app = web.Application()
    app.router.add_get("/items", everything)
    async with TestServer(app, host="127.0.0.1") as server, WorkerPool(
        str(server.make_url("/items/{item}")), workers=1
    ) as pool:
        ids = [item async for item in list_items(pool, str(server.make_url("")))]
    assert ids == ["x", "y", "z"]


async def test_a_listing_that_fails_stops_the_run_with_a_clear_error(mock_api) -> None:
    pool = WorkerPool(mock_api.url + "/nothing/{item}", workers=4)
    async with pool:
        with pytest.raises(ListingError, match="Could not list"):
            await pool.run(list_items(pool, mock_api.url + "/nothing"))


async def test_hooks_see_every_request_before_and_after(mock_api) -> None:
    seen: list[tuple[str, Any, int | None]] = []

    class Recorder:
        def before_request(self, event: RequestEvent) -> None:
            seen.append(("before", event.item, event.status))

        def after_request(self, event: RequestEvent) -> None:
            seen.append(("after", event.item, event.status))

    report = await WorkerPool(mock_api.url + "/items/{item}", workers=2, hooks=[Recorder()]).run(range(5))
    assert report.succeeded == 5
    assert Counter(kind for kind, _, _ in seen) == {"before": 5, "after": 5}
    assert all(status == 200 for kind, _, status in seen if kind == "after")


async def test_custom_handler_and_unpacker_plug_in(mock_api) -> None:
    def missing_is_fine(attempt: Any) -> Decision:
        return Decision.accept()

    pool = WorkerPool(
        mock_api.url + "/items/{item}",
        workers=2,
        policy=ErrorPolicy(handlers={404: missing_is_fine}),
        unpack=lambda item, response: response.status,
    )
    report = await pool.run([1, 99_999])
    assert sorted((r.item, r.data) for r in report.results) == [(1, 200), (99_999, 404)]


async def test_an_unpacker_error_becomes_a_failure_not_a_crash(mock_api) -> None:
    def broken(item: Any, response: Any) -> Any:
        raise ValueError("bad body")

    report = await WorkerPool(mock_api.url + "/items/{item}", workers=2, unpack=broken).run(range(3))
    assert report.failed == 3 and all("unpacking failed: ValueError" in f.error for f in report.failures)


async def test_an_error_in_the_callers_sink_stops_the_run_and_propagates(mock_api) -> None:
    def sink(outcome: Any) -> None:
        raise RuntimeError("disk full")

    pool = WorkerPool(mock_api.url + "/items/{item}", workers=4)
    with pytest.raises(RuntimeError, match="disk full"):
        await asyncio.wait_for(pool.run(range(100), on_outcome=sink), timeout=30)
    assert pool.session is None  # its own session was closed


async def test_cancelling_a_run_stops_workers_and_closes_the_session(mock_api) -> None:
    mock_api.scenario({"latency": {"mean": 0.2, "jitter": 0.0}})
    pool = WorkerPool(mock_api.url + "/items/{item}", workers=4)
    first = asyncio.Event()
    run = asyncio.create_task(pool.run(range(1000), on_outcome=lambda o: first.set()))
    await asyncio.wait_for(first.wait(), timeout=30)
    session = pool.session
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert session is not None and session.closed and pool.session is None
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not others, f"tasks left running: {others}"


async def test_the_producer_is_held_back_by_the_bounded_queue(mock_api) -> None:
    produced = 0
    finished = 0
    lead: list[int] = []

    async def items():
        nonlocal produced
        for i in range(300):
            produced += 1
            lead.append(produced - finished)
            yield i

    def done(outcome: Any) -> None:
        nonlocal finished
        finished += 1

    pool = WorkerPool(mock_api.url + "/items/{item}", workers=4, queue_size=8)
    await asyncio.wait_for(pool.run(items(), on_outcome=done), timeout=60)
    assert finished == 300
    # in the queue (8) + held by workers (4) + the one being put
    assert max(lead) <= 8 + 4 + 1


async def test_a_dropped_connection_is_retried_until_answered() -> None:
    calls = Counter()

    async def flaky(request: web.Request) -> web.StreamResponse:
        item = request.match_info["id"]
        calls[item] += 1
        if calls[item] <= 2:
            assert request.transport is not None
            request.transport.close()  # no answer at all
            return web.Response()
        return web.json_response({"id": item})

    app = web.Application()
    app.router.add_get("/items/{id}", flaky)
    async with TestServer(app, host="127.0.0.1") as server:
        base = str(server.make_url(""))
        pool = WorkerPool(base + "/items/{item}", workers=2, retry=RetryPolicy(retries=5, base=0.001))
        report = await asyncio.wait_for(pool.run(["a", "b"]), timeout=30)
    assert sorted(r.data["id"] for r in report.results) == ["a", "b"]
    assert report.stats["fetch"].errors  # the drops were seen and retried


async def test_the_gate_is_shared_by_every_pool_that_is_given_it(mock_api) -> None:
    gate = Gate()
    gate.pause(0.3)
    pool = WorkerPool(mock_api.url + "/items/{item}", workers=4, gate=gate)
    report = await asyncio.wait_for(pool.run(range(10)), timeout=30)
    assert report.succeeded == 10 and gate.is_open


async def test_a_probe_cancelled_while_waiting_for_its_slot_lets_the_next_probe_go() -> None:
    waiting = asyncio.Event()

    class NeverASlot(RateLimiter):
        async def acquire(self, *, hold: bool = False) -> None:
            waiting.set()
            await asyncio.Event().wait()  # until cancelled

    gate = Gate()
    gate.pause(0.01)
    pool = WorkerPool("http://127.0.0.1:9/{item}", workers=1, gate=gate, limiter=NeverASlot(10))
    async with pool:
        fetch = asyncio.create_task(pool.fetch(1))
        await asyncio.wait_for(waiting.wait(), timeout=10)  # it went through the gate as the probe
        fetch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fetch
    # The cancelled probe finished its turn: the pause is over, so the gate is
    # open again and the next caller goes through (a stuck probe would keep it
    # closed, and every caller would wait forever).
    await asyncio.wait_for(gate.enter(), timeout=10)
    assert gate.is_open

def test_url_for_escapes_the_item_as_one_path_segment() -> None:
    build = url_for("http://h/items/{item}")
    assert build(7).url == build("7").url == "http://h/items/7"
    assert build("a/b").url == "http://h/items/a%2Fb"
    assert build("../../_reset").url == "http://h/items/..%2F..%2F_reset"
    assert build("a b?c=1#d").url == "http://h/items/a%20b%3Fc%3D1%23d"
    assert build("100%").url == "http://h/items/100%25"
    for item in ("", ".", ".."):  # a URL resolves these to another path, however escaped
        with pytest.raises(ValueError, match="cannot be a path segment"):
            build(item)


async def test_an_item_cannot_reach_another_route_of_the_server(mock_api) -> None:
    pool = WorkerPool(mock_api.url + "/items/{item}", workers=2)
    assert (await pool.run([1])).succeeded == 1  # something for a reset to wipe out
    hostile = ["../../_reset", "../_stats", "..", "a/b"]
    report = await asyncio.wait_for(pool.run(hostile), timeout=30)
    assert report.succeeded == 0 and sorted(f.item for f in report.failures) == sorted(hostile)
    by_item = {f.item: f for f in report.failures}
    assert "request builder failed: ValueError" in by_item[".."].error  # never sent
    for item in ("../../_reset", "../_stats", "a/b"):  # asked for as an item, which does not exist
        assert by_item[item].status == 404 and f"No item {item!r}" in by_item[item].error
    stats = mock_api.stats()
    assert stats["items"]["served"] == 1  # no reset happened
    assert stats["requests"] == 4 and stats["by_status"] == {"200": 1, "404": 3}

async def test_a_body_over_max_body_fails_the_item_at_once_without_reading_it() -> None:
    calls = Counter()
    finished: list[bool] = []
    over = asyncio.Event()

    async def item(request: web.Request) -> web.StreamResponse:
        item_id = request.match_info["id"]
        calls[item_id] += 1
        if item_id != "big":
            return web.json_response({"id": item_id})
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for _ in range(DEFAULT_MAX_BODY // 2**16 * 4):  # four times the default limit
                await response.write(b"z" * 2**16)
            await response.write_eof()
            finished.append(True)
        finally:
            over.set()
        return response

    app = web.Application()
    app.router.add_get("/items/{id}", item)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("")) + "/items/{item}"
        report = await asyncio.wait_for(WorkerPool(url, workers=2).run(["big", "small"]), timeout=60)
        [failure] = report.failures  # with the default limit, 10 MiB
        assert failure.item == "big" and failure.attempts == 1  # not retried
        assert f"larger than max_body={DEFAULT_MAX_BODY} bytes" in failure.error
        assert [r.data for r in report.results] == [{"id": "small"}]
        assert calls == {"big": 1, "small": 1}
        assert report.stats["fetch"].errors == {"ResponseTooLarge": 1}
        # The client stopped reading and dropped the connection: the server
        # could not write its 40 MiB (a client that read them all would let it).
        await asyncio.wait_for(over.wait(), timeout=30)
        assert not finished
        report = await asyncio.wait_for(WorkerPool(url, workers=1, max_body=100).run(["tiny"]), timeout=30)
        assert report.succeeded == 1  # a small answer stays under a small limit


def test_max_body_must_be_a_size_or_none() -> None:
    with pytest.raises(ValueError, match="max_body"):
        WorkerPool("http://h/{item}", max_body=-1)

