"""GET /_stats: what the server saw, per status, per second, per item; reset clears it."""

from __future__ import annotations

import asyncio


async def test_stats_count_requests_by_status(client):
    for path in ["/", "/items/1", "/items/1", "/items/2", "/items/nope", "/items?page=0"]:
        await client.get(path)
    stats = await (await client.get("/_stats")).json()
    assert stats["requests"] == 6
    assert stats["by_status"] == {"200": 4, "400": 1, "404": 1}
    assert stats["items"] == {"served": 2, "responses": 3, "max_per_item": 2}
    assert sum(s["requests"] for s in stats["per_second"]) == 6
    assert [s["second"] for s in stats["per_second"]] == list(range(len(stats["per_second"])))
    assert "arrivals" not in stats and "served" not in stats


async def test_detail_lists_arrivals_in_order_and_served_counts(client):
    for path in ["/items/3", "/items/3", "/items/4", "/"]:
        await client.get(path)
    stats = await (await client.get("/_stats?detail=1")).json()
    assert len(stats["arrivals"]) == 4 and stats["arrivals"] == sorted(stats["arrivals"])
    assert all(0 <= a <= stats["elapsed"] for a in stats["arrivals"])
    assert stats["statuses"] == ["200"] * 4
    assert stats["served"] == {"3": 2, "4": 1}


async def test_per_second_buckets_follow_arrival_time(client):
    await client.get("/")
    await asyncio.sleep(1.1)
    await client.get("/")
    await client.get("/")
    stats = await (await client.get("/_stats?detail=1")).json()
    by_second = {s["second"]: s["requests"] for s in stats["per_second"] if s["requests"]}
    expected: dict[int, int] = {}
    for arrival in stats["arrivals"]:
        expected[int(arrival)] = expected.get(int(arrival), 0) + 1
    assert by_second == expected and len(by_second) >= 2
    assert stats["per_second"][-1]["second"] == int(stats["elapsed"])


async def test_per_second_separates_statuses(client):
    await client.put("/_scenario", json={"rate_limit": {"requests": 2, "per": 60}})
    await client.post("/_reset")
    for _ in range(5):
        await client.get("/items/0")
    stats = await (await client.get("/_stats")).json()
    total: dict[str, int] = {}
    for second in stats["per_second"]:
        for status, n in second["by_status"].items():
            total[status] = total.get(status, 0) + n
    assert total == stats["by_status"] == {"200": 2, "429": 3}


async def test_peak_concurrency_counts_requests_in_flight(client):
    await client.put("/_scenario", json={"latency": {"mean": 1.0}})
    responses = await asyncio.gather(*(client.get(f"/items/{i}") for i in range(5)))
    assert [r.status for r in responses] == [200] * 5
    stats = await (await client.get("/_stats")).json()
    assert stats["peak_concurrency"] == 5 and stats["in_flight"] == 0


async def test_reset_clears_every_counter(client):
    for path in ["/", "/items/1", "/items/x"]:
        await client.get(path)
    await client.post("/_reset")
    stats = await (await client.get("/_stats?detail=1")).json()
    assert stats["requests"] == 0 and stats["by_status"] == {} and stats["peak_concurrency"] == 0
    assert stats["items"] == {"served": 0, "responses": 0, "max_per_item": 0}
    assert stats["arrivals"] == [] and stats["served"] == {}
    assert stats["elapsed"] < 5


async def test_put_scenario_keeps_the_stats(client):
    await client.get("/")
    await client.put("/_scenario", json={"error_rate": 0.0})
    assert (await (await client.get("/_stats")).json())["requests"] == 1


async def test_faulted_requests_are_counted_by_what_the_client_got(make_client):
    client = await make_client(scenario={"outages": [{"start": 0, "duration": 60}]})
    await client.get("/items/1")
    await client.put("/_scenario", json={"error_rate": 1.0})
    await client.get("/items/1")
    stats = await (await client.get("/_stats")).json()
    assert stats["by_status"] == {"500": 1, "503": 1}
    assert stats["items"]["responses"] == 0  # only 200s count as served
