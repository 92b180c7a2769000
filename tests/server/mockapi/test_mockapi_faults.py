"""Faults: order of checks, deterministic 500s and drops, latency, outage answers (in-process)."""

from __future__ import annotations

import asyncio
import math
import random
import time

import aiohttp
import pytest


async def _statuses(client, paths: list[str]) -> dict[str, str]:
    """One GET per path, one after another; a dropped connection reads as "dropped"."""
    result = {}
    for path in paths:
        try:
            async with client.get(path) as response:
                await response.read()
                result[path] = str(response.status)
        except aiohttp.ClientConnectionError:
            result[path] = "dropped"
    return result


PATHS = [f"/items/{i}" for i in range(200)]
FAULTY = {"error_rate": 0.3, "drop_rate": 0.1, "seed": 7}


async def test_same_seed_gives_the_same_fault_pattern(make_client):
    first = await _statuses(await make_client(scenario=FAULTY), PATHS)
    second = await _statuses(await make_client(scenario=FAULTY), PATHS)
    assert first == second
    counts = {s: list(first.values()).count(s) for s in set(first.values())}
    assert set(counts) == {"200", "500", "dropped"}
    assert 5 <= counts["dropped"] <= 40 and 30 <= counts["500"] <= 90  # ~10% and ~27% of 200


async def test_different_seed_gives_a_different_fault_pattern(make_client):
    seven = await _statuses(await make_client(scenario=FAULTY), PATHS)
    eight = await _statuses(await make_client(scenario={**FAULTY, "seed": 8}), PATHS)
    assert seven != eight


async def test_fault_pattern_does_not_depend_on_request_order(make_client):
    sequential = await _statuses(await make_client(scenario=FAULTY), PATHS)
    client = await make_client(scenario=FAULTY)
    shuffled = PATHS[:]
    random.Random(1).shuffle(shuffled)

    async def one(path: str) -> tuple[str, str]:
        return path, (await _statuses(client, [path]))[path]

    concurrent = dict(await asyncio.gather(*(one(p) for p in shuffled)))
    assert concurrent == sequential


async def test_retries_of_one_path_meet_the_same_sequence_after_reset(client):
    await client.put("/_scenario", json={"error_rate": 0.5, "seed": 3})
    run = [str((await client.get("/items/5")).status) for _ in range(30)]
    await client.post("/_reset")
    again = [str((await client.get("/items/5")).status) for _ in range(30)]
    assert run == again and {"200", "500"} <= set(run)


async def test_put_scenario_restarts_the_fault_sequence(client):
    scenario = {"error_rate": 0.5, "seed": 11}
    await client.put("/_scenario", json=scenario)
    run = [(await client.get("/items/9")).status for _ in range(20)]
    await client.put("/_scenario", json=scenario)
    assert [(await client.get("/items/9")).status for _ in range(20)] == run


async def test_error_rate_one_fails_every_public_route_with_json(make_client):
    client = await make_client(scenario={"error_rate": 1.0})
    for path in ["/", "/items", "/items/0", "/items?page=2"]:
        response = await client.get(path)
        assert response.status == 500
        assert "retry" in (await response.json())["error"]
    assert (await client.get("/_info")).status == 200  # control routes never fail


async def test_dropped_request_closes_the_connection_without_an_answer(make_client):
    client = await make_client(scenario={"drop_rate": 1.0})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.get("/items/1")
    assert (await client.get("/_info")).status == 200  # and the server keeps serving
    stats = await (await client.get("/_stats")).json()
    assert stats["by_status"] == {"dropped": 1} and stats["items"]["responses"] == 0


async def test_latency_delays_the_answer(make_client):
    client = await make_client(scenario={"latency": {"mean": 0.3, "jitter": 0.1}})
    started = time.monotonic()
    assert (await client.get("/items/1")).status == 200
    assert time.monotonic() - started >= 0.2  # mean - jitter; no upper bound under load


async def test_outage_answers_503_with_seconds_left_as_retry_after(make_client):
    client = await make_client(scenario={"outages": [{"start": 0, "duration": 60}]})
    response = await client.get("/items/1")
    assert response.status == 503
    assert 30 <= int(response.headers["Retry-After"]) <= 60
    assert "retry after" in (await response.json())["error"]
    assert (await client.get("/_stats")).status == 200


async def test_outage_with_configured_retry_after_uses_it(make_client):
    client = await make_client(scenario={"outages": [{"start": 0, "duration": 60, "retry_after": 2}]})
    response = await client.get("/")
    assert response.status == 503 and response.headers["Retry-After"] == "2"


async def test_outage_window_ends(client):
    await client.put("/_scenario", json={"outages": [{"start": 0, "duration": 0.4}]})
    first = await client.get("/items/2")
    assert first.status == 503 and first.headers["Retry-After"] == "1"
    await asyncio.sleep(0.5)
    assert (await client.get("/items/2")).status == 200


async def test_outage_window_begins_later(client):
    await client.put("/_scenario", json={"outages": [{"start": 0.5, "duration": 60}]})
    before = await client.get("/items/2")
    await asyncio.sleep(0.6)
    after = await client.get("/items/2")
    assert (before.status, after.status) == (200, 503)


async def test_repeating_outage_answers_503_in_its_windows(client):
    await client.put("/_scenario", json={"outage_every": {"period": 120, "duration": 60, "start": 0, "retry_after": 3}})
    response = await client.get("/items")
    assert response.status == 503 and response.headers["Retry-After"] == "3"
    await client.put("/_scenario", json={"outage_every": {"period": 120, "duration": 60}})  # first window at 120 s
    assert (await client.get("/items")).status == 200


async def test_outage_is_checked_before_the_rate_limit(client):
    await client.put(
        "/_scenario", json={"rate_limit": {"requests": 2, "per": 60}, "outages": [{"start": 0, "duration": 0.3}]}
    )
    during = [(await client.get("/")).status for _ in range(5)]
    await asyncio.sleep(0.4)
    after = [(await client.get("/")).status for _ in range(3)]
    assert during == [503] * 5  # answered 503, not 429, and no slot used
    assert after == [200, 200, 429]


async def test_rate_limit_is_checked_before_drops_and_errors(client):
    await client.put("/_scenario", json={"rate_limit": {"requests": 1, "per": 60}, "error_rate": 1.0})
    assert [(await client.get("/")).status for _ in range(3)] == [500, 429, 429]


async def test_429_carries_retry_after_and_rate_limit_headers(client):
    await client.put("/_scenario", json={"rate_limit": {"requests": 3, "per": 1.5}})
    admitted = [await client.get("/items/1") for _ in range(3)]
    assert [r.status for r in admitted] == [200, 200, 200]
    assert [r.headers["X-RateLimit-Remaining"] for r in admitted] == ["2", "1", "0"]
    refused = await client.get("/items/1")
    assert refused.status == 429
    reset = float(refused.headers["X-RateLimit-Reset"])
    assert 0 < reset <= 1.5
    assert int(refused.headers["Retry-After"]) == max(1, math.ceil(reset))
    assert refused.headers["X-RateLimit-Limit"] == "3" and refused.headers["X-RateLimit-Remaining"] == "0"
    assert "retry after" in (await refused.json())["error"].lower()
    await asyncio.sleep(reset + 0.05)
    assert (await client.get("/items/1")).status == 200  # a slot did free when the header said


async def test_rejected_requests_do_not_use_slots(client):
    await client.put("/_scenario", json={"rate_limit": {"requests": 2, "per": 2.0}})
    assert [(await client.get("/")).status for _ in range(2)] == [200, 200]
    await asyncio.sleep(1.0)
    assert [(await client.get("/")).status for _ in range(5)] == [429] * 5
    await asyncio.sleep(1.2)  # the two admitted have left the window; the refused never entered it
    assert [(await client.get("/")).status for _ in range(2)] == [200, 200]


async def test_rate_limit_applies_to_every_public_route(client):
    await client.put("/_scenario", json={"rate_limit": {"requests": 1, "per": 60}})
    assert (await client.get("/")).status == 200
    for path in ["/", "/items", "/items/3", "/items?page=1", "/no/such/route"]:
        assert (await client.get(path)).status == 429, path
    assert (await client.get("/_stats")).status == 200
