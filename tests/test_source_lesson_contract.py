"""The bundled mock API keeps the source lesson's contract.

The async lesson's client code is written against ``http://localhost:8080``
with ``/items`` and ``/items/{id}``, in five shapes: a plain ``requests`` loop,
``Throttler`` + ``gather``, a ``tenacity`` retry, a queue of workers with a
sentinel, and a two-stage "list, then fetch each" requester. Each test below
is client code of that shape (written for this course, no framework of ours
involved) run against the default scenario, reached through ``localhost`` as
the lesson does (on a free port, so tests never fight over 8080).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest
import requests
from tenacity import retry, stop_after_attempt, wait_fixed
from throttler import Throttler

from course.mockapi_control import MockAPIControl
from course.servers import ServerHandle, start_mock_api

ITEMS = 1000


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    handle = start_mock_api(port=None, items=ITEMS, seed=0)
    yield handle
    handle.stop()


@pytest.fixture
def base(server: ServerHandle) -> str:
    MockAPIControl(server.url).reset()
    return f"http://localhost:{server.port}"


def served_counts(base: str) -> dict[str, int]:
    served: dict[str, int] = MockAPIControl(base).stats(detail=True)["served"]
    return served


def expected_emails(base: str, ids: list[int]) -> dict[int, str]:
    with requests.Session() as session:
        return {i: session.get(f"{base}/items/{i}").json()["email"] for i in ids}


def test_plain_requests_loop(base):
    assert requests.get(base + "/").text == "Hello, world"
    ids = requests.get(base + "/items").json()
    assert ids == list(range(ITEMS))
    emails = [requests.get(f"{base}/items/{i}").json()["email"] for i in ids[:100]]
    assert len(set(emails)) > 95 and all("@" in e for e in emails)


async def test_throttler_and_gather(base):
    throttler = Throttler(rate_limit=2000, period=1.0)

    async def fetch(session: aiohttp.ClientSession, item_id: int) -> dict:
        async with throttler, session.get(f"{base}/items/{item_id}") as response:
            return await response.json()

    async with aiohttp.ClientSession() as session:
        ids = await (await session.get(base + "/items")).json()
        results = await asyncio.gather(*(fetch(session, i) for i in ids))

    assert len(results) == ITEMS
    assert [r["email"] for r in results[:20]] == list(expected_emails(base, list(range(20))).values())
    assert sorted(map(int, served_counts(base))) == list(range(ITEMS))


async def test_tenacity_retry_decorator(base):
    @retry(stop=stop_after_attempt(3), wait=wait_fixed(0.01))
    async def fetch(session: aiohttp.ClientSession, item_id: int) -> str:
        async with session.get(f"{base}/items/{item_id}") as response:
            response.raise_for_status()
            return (await response.json())["email"]

    async with aiohttp.ClientSession() as session:
        emails = await asyncio.gather(*(fetch(session, i) for i in range(50)))
    assert emails == list(expected_emails(base, list(range(50))).values())


async def test_queue_of_workers_with_a_sentinel(base):
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    results: dict[int, str] = {}
    workers = 8

    async def worker(session: aiohttp.ClientSession) -> None:
        while (item_id := await queue.get()) is not None:
            async with session.get(f"{base}/items/{item_id}") as response:
                results[item_id] = (await response.json())["email"]

    async with aiohttp.ClientSession() as session:
        for item_id in await (await session.get(base + "/items")).json():
            queue.put_nowait(item_id)
        for _ in range(workers):
            queue.put_nowait(None)
        await asyncio.gather(*(worker(session) for _ in range(workers)))

    assert sorted(results) == list(range(ITEMS))
    assert set(served_counts(base).values()) == {1}, "each item fetched exactly once"


async def test_two_stage_list_then_fetch(base):
    ids_queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=100)
    emails: list[str] = []
    fetchers = 4

    async def lister(session: aiohttp.ClientSession) -> None:
        async with session.get(base + "/items") as response:
            for item_id in await response.json():
                await ids_queue.put(item_id)
        for _ in range(fetchers):
            await ids_queue.put(None)

    async def fetcher(session: aiohttp.ClientSession) -> None:
        while (item_id := await ids_queue.get()) is not None:
            async with session.get(f"{base}/items/{item_id}") as response:
                emails.append((await response.json())["email"])

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(lister(session), *(fetcher(session) for _ in range(fetchers)))

    assert len(emails) == ITEMS and len(set(emails)) > 0.95 * ITEMS
