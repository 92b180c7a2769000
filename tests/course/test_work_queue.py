"""course.work_queue: items listed once, claimed by whoever is free, results kept once; on a real Redis."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis_fixture import fetch_process, redis_server, requires_redis

from course.mockapi_control import MockAPIControl
from course.servers import ServerHandle, start_mock_api
from course.work_queue import QueueError, WorkQueue

pytestmark = requires_redis
__all__ = ["redis_server"]  # the fixture, imported for the tests below

ITEMS = 60


@pytest.fixture(scope="module")
def api() -> Iterator[ServerHandle]:
    handle = start_mock_api(port=None, items=ITEMS)
    yield handle
    handle.stop()


async def test_only_the_first_process_lists_the_items(redis_server) -> None:
    listed: list[str] = []

    def listing(who: str) -> list[int]:
        listed.append(who)
        return list(range(25))

    first, second = WorkQueue(redis_server.url, "once"), WorkQueue(redis_server.url, "once")
    try:
        results = await asyncio.gather(first.fill(lambda: listing("first")), second.fill(lambda: listing("second")))
        assert sorted(results) == [False, True] and len(listed) == 1
        assert await first.fill(lambda: listing("again")) is False and len(listed) == 1
        progress = await second.progress()
        assert (progress.total, progress.done, progress.finished) == (25, 0, False)
    finally:
        await first.aclose()
        await second.aclose()


async def test_two_workers_share_the_items_each_once(redis_server) -> None:
    workers = [WorkQueue(redis_server.url, "share", batch=3) for _ in range(2)]
    await workers[0].fill(lambda: range(40))
    taken: list[Counter[int]] = [Counter(), Counter()]

    async def work(number: int) -> None:
        async for item in workers[number].claim():
            taken[number][item] += 1
            await asyncio.sleep(0.001)
            assert await workers[number].store(item, {"id": item, "by": number})

    try:
        await asyncio.wait_for(asyncio.gather(work(0), work(1)), 30)
        assert taken[0] and taken[1]  # both got work
        assert taken[0] + taken[1] == Counter(range(40))  # and no item twice
        results = [pair async for pair in workers[0].results()]
        assert [item for item, _ in results] == list(range(40))  # listing order
        assert all(result is not None and result["id"] == item for item, result in results)
        assert (await workers[1].progress()).finished
    finally:
        for queue in workers:
            await queue.aclose()


async def test_a_dead_workers_items_are_taken_over_and_the_first_result_wins(redis_server) -> None:
    dead = WorkQueue(redis_server.url, "takeover", batch=5, claim_idle=0.3)
    alive = WorkQueue(redis_server.url, "takeover", batch=5, claim_idle=0.3, poll=0.05)
    try:
        await dead.fill(lambda: range(12))
        claims = dead.claim()
        held = [await anext(claims) for _ in range(3)]  # then it "dies": never stores, never acks
        done: list[int] = []
        async for item in alive.claim():
            done.append(item)
            await alive.store(item, {"id": item, "by": "alive"})
        assert sorted(done) == list(range(12))  # the three held items too
        assert alive.reclaimed >= 3
        # The dead worker comes back and stores late: the result already kept stays.
        assert await dead.store(held[0], {"id": held[0], "by": "dead"}) is False
        kept = {item: result async for item, result in alive.results()}
        assert kept[held[0]] == {"id": held[0], "by": "alive"} and len(kept) == 12
        await claims.aclose()
    finally:
        await dead.aclose()
        await alive.aclose()


async def test_claiming_before_any_listing_is_a_clear_error(redis_server) -> None:
    queue = WorkQueue(redis_server.url, "never-listed")
    try:
        await queue._ensure_group()
        with pytest.raises(QueueError, match="no items listed"):
            async for _item in queue.claim():
                pass
    finally:
        await queue.aclose()


@pytest.mark.parametrize(
    "kwargs, message", [({"name": ""}, "non-empty name"), ({"claim_idle": 0}, "claim_idle"), ({"batch": 0}, "batch")]
)
def test_bad_arguments_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        WorkQueue(**{"redis_url": "redis://127.0.0.1:1/0", "name": "q", **kwargs})


def _consumer_pending(url: str, queue: str, pid: int) -> int:
    """Entries pending under the consumer of process ``pid`` (its name holds the pid)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        consumers = client.xinfo_consumers(f"course:queue:{queue}:items", "workers")
        return sum(c["pending"] for c in consumers if f"-{pid}-" in c["name"])
    finally:
        client.close()


@pytest.mark.slow
def test_three_cli_workers_one_killed_the_export_has_every_item_once(redis_server, api, tmp_path: Path) -> None:
    MockAPIControl(api.url).use({})
    common = [
        "--rate", "30", "--shared-limit", redis_server.url, "--limit-key", "killed",
        "--queue", redis_server.url, "--queue-name", "killed", "--claim-after", "1",
        "--workers", "4", "--quiet",
    ]  # fmt: skip
    fleet = [fetch_process(api.url, *common) for _ in range(3)]
    client = redis.Redis.from_url(redis_server.url)
    try:
        deadline = time.monotonic() + 30
        while client.hlen("course:queue:killed:results") < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        victim = fleet[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        held = _consumer_pending(redis_server.url, "killed", victim.pid)
    finally:
        client.close()
    survivors = [process.communicate(timeout=60) for process in fleet[1:]]
    for process, (_out, err) in zip(fleet[1:], survivors, strict=True):
        assert process.returncode == 0, err
        assert f"of {ITEMS} items have a result" in err
    assert held > 0  # it died holding items (its workers and its queue's worth) ...
    assert any("taken over" in err for _out, err in survivors), survivors  # ... and they were taken over
    out = tmp_path / "all.jsonl"
    export = fetch_process(api.url, *common, "--export", "--out", str(out))
    _out, err = export.communicate(timeout=60)
    assert export.returncode == 0, err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == list(range(ITEMS))  # each item once, none missing, in order
    assert all(line["status"] == 200 and "@" in line["data"]["email"] for line in lines)
    assert f"exported {ITEMS} results (0 failed)" in err
