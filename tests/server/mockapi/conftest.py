"""Fixtures: the mock API in-process (aiohttp TestServer) and as a real process (course.servers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from course.mockapi_control import AsyncMockAPIControl
from course.servers import ServerHandle, start_mock_api
from server.mockapi import MockConfig, Scenario, make_app

MakeClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """``await make_client(items=..., seed=..., scenario={...})`` -> a client of an in-process server."""
    clients: list[TestClient] = []

    async def factory(*, items: int = 1000, seed: int = 0, scenario: dict[str, Any] | None = None) -> TestClient:
        # warm_items=0: emails are made on first request (quicker tests, same addresses)
        config = MockConfig(items=items, seed=seed, scenario=Scenario.from_json(scenario or {}), warm_items=0)
        client = TestClient(TestServer(make_app(config), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient:
    """An in-process mock API with 1000 items, seed 0 and no faults."""
    return await make_client()


@pytest.fixture(scope="session")
def live_api() -> Iterator[ServerHandle]:
    """One real ``python -m server.mockapi`` process on a free port for the whole session."""
    handle = start_mock_api(port=None, items=1000, seed=0)
    yield handle
    handle.stop()


@pytest.fixture
async def api(live_api: ServerHandle) -> AsyncIterator[LiveAPI]:
    """The live server, scenario cleared and counters reset, with a client session."""
    async with aiohttp.ClientSession(live_api.url, timeout=aiohttp.ClientTimeout(total=30)) as session:
        live = LiveAPI(live_api, session)
        await live.set_scenario({})
        yield live


class LiveAPI:
    """The real server for one test: its ``session`` (relative URLs), and its control routes."""

    def __init__(self, handle: ServerHandle, session: aiohttp.ClientSession) -> None:
        self.handle = handle
        self.session = session
        self.control = AsyncMockAPIControl(handle.url, session)

    async def set_scenario(self, scenario: dict[str, Any]) -> dict[str, Any]:
        """Install ``scenario`` and reset the counters; returns it normalized."""
        return await self.control.use(scenario)

    async def stats(self, detail: bool = True) -> dict[str, Any]:
        return await self.control.stats(detail=detail)
