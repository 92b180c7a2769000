"""End to end against a real ``python -m server.mockapi`` process started by course.servers."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import signal
import time
import urllib.request

import aiohttp
import pytest

from course.servers import json_identity, start_server


async def _hammer(
    session: aiohttp.ClientSession, *, workers: int, seconds: float, limit: int
) -> list[aiohttp.ClientResponse]:
    """``workers`` concurrent loops of GET /items/{n} for at most ``seconds`` and ``limit`` requests."""
    counter = itertools.count()
    deadline = time.monotonic() + seconds
    answers: list[aiohttp.ClientResponse] = []

    async def worker() -> None:
        while time.monotonic() < deadline and (n := next(counter)) < limit:
            async with session.get(f"/items/{n % 1000}") as response:
                await response.read()
                answers.append(response)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return answers


async def test_rate_limit_never_admits_more_than_r_in_any_window(api):
    requests, per = 25, 0.5
    await api.set_scenario({"rate_limit": {"requests": requests, "per": per}})
    # Bounded by time first: on a fast machine 3000 refusals took under one
    # window, which left a single window of admissions to check.
    answers = await _hammer(api.session, workers=8, seconds=1.5, limit=20_000)
    stats = await api.stats()
    admitted = [a for a, s in zip(stats["arrivals"], stats["statuses"], strict=True) if s == "200"]
    assert stats["by_status"]["429"] > 0 and len(admitted) >= requests * 2
    # Any window of `per` seconds holds at most `requests` admissions: the
    # (i + R)-th admission comes at least `per` after the i-th (arrivals are rounded to 1 us).
    gaps = [later - earlier for earlier, later in zip(admitted, admitted[requests:], strict=False)]
    assert min(gaps) >= per - 2e-6
    for response in answers:
        if response.status == 429:
            reset = float(response.headers["X-RateLimit-Reset"])
            assert 0 < reset <= per
            assert response.headers["Retry-After"] == str(max(1, math.ceil(reset)))


async def test_outage_window_answers_503_then_recovers(api):
    await api.set_scenario({"outages": [{"start": 0.0, "duration": 0.6}]})
    async with api.session.get("/items/1") as during:
        assert during.status == 503 and during.headers["Retry-After"] == "1"
        assert "error" in await during.json()
    await asyncio.sleep(0.7)
    async with api.session.get("/items/1") as after:
        assert after.status == 200
    assert (await api.stats())["by_status"] == {"200": 1, "503": 1}


async def test_same_seed_same_faults_over_concurrent_runs(api):
    scenario = {"error_rate": 0.2, "drop_rate": 0.05, "seed": 5}

    async def run() -> dict[int, list[str]]:
        await api.set_scenario(scenario)
        outcome: dict[int, list[str]] = {i: [] for i in range(100)}

        async def fetch(i: int) -> None:
            for _ in range(3):  # each item three times, as a retrying client would
                try:
                    async with api.session.get(f"/items/{i}") as response:
                        outcome[i].append(str(response.status))
                except aiohttp.ClientConnectionError:
                    outcome[i].append("dropped")

        await asyncio.gather(*(fetch(i) for i in range(100)))
        return outcome

    first, second = await run(), await run()
    assert first == second
    statuses = {s for runs in first.values() for s in runs}
    assert statuses == {"200", "500", "dropped"}


async def test_server_keeps_serving_after_bad_requests(api):
    bad = ["/items/-1", "/items/1000", "/items/abc", "/items?page=-1", "/items?page=99999999999999", "/zzz"]
    for path in bad:
        async with api.session.get(path) as response:
            assert 400 <= response.status < 500
            assert "error" in await response.json()
    async with api.session.put("/_scenario", data=b"{broken") as response:
        assert response.status == 400
    async with api.session.get("/items/1") as response:
        assert response.status == 200


def _emails(url: str, ids: range) -> list[str]:
    return [json.load(urllib.request.urlopen(f"{url}/items/{i}", timeout=10))["email"] for i in ids]


@pytest.mark.slow
def test_emails_are_identical_across_processes_and_hash_seeds(live_api):
    identify = json_identity("/_info", "mockapi")
    ids = range(0, 1000, 37)
    other = start_server(
        "mock API", "server.mockapi", ["--seed", "0"], port=None, identify=identify, env={"PYTHONHASHSEED": "12345"}
    )
    reseeded = start_server("mock API", "server.mockapi", ["--seed", "1"], port=None, identify=identify)
    try:
        mine, theirs, different = _emails(live_api.url, ids), _emails(other.url, ids), _emails(reseeded.url, ids)
    finally:
        other.stop()
        reseeded.stop()
    assert mine == theirs
    assert sum(a != b for a, b in zip(mine, different, strict=True)) >= len(ids) - 2


def test_logs_where_it_serves_and_stops_cleanly_on_sigterm():
    handle = start_server(
        "mock API", "server.mockapi", ["--items", "10"], port=None, identify=json_identity("/_info", "mockapi")
    )
    handle.process.send_signal(signal.SIGTERM)
    code = handle.process.wait(60)  # generous: the machine may be busy
    output = handle.output()
    assert code == 0, output
    assert f"serving on http://127.0.0.1:{handle.port}" in output and "stopped" in output, output


def test_stops_cleanly_on_sigint():
    handle = start_server("mock API", "server.mockapi", [], port=None, identify=json_identity("/_info", "mockapi"))
    handle.process.send_signal(signal.SIGINT)
    code = handle.process.wait(60)
    assert code == 0 and "stopped" in handle.output(), handle.output()
