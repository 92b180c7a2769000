"""Fixtures for the client framework's tests: a real mock-API process, reset per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from course.mockapi_control import MockAPIControl
from course.servers import ServerHandle, start_mock_api

ITEMS = 10_000


class MockAPI:
    """A running mock API process: set its scenario, read what it saw."""

    def __init__(self, handle: ServerHandle) -> None:
        self.handle = handle
        self.url = handle.url
        self.control = MockAPIControl(handle.url)

    def scenario(self, scenario: dict[str, Any] | None = None) -> None:
        """Replace the scenario (its clock restarts) and clear the counters."""
        self.control.use(scenario or {})

    def stats(self, detail: bool = False) -> dict[str, Any]:
        return self.control.stats(detail=detail)


@pytest.fixture(scope="session")
def mock_api_process() -> Iterator[ServerHandle]:
    handle = start_mock_api(port=None, items=ITEMS)
    yield handle
    handle.stop()


@pytest.fixture
def mock_api(mock_api_process: ServerHandle) -> Iterator[MockAPI]:
    """The shared mock API with no faults and fresh counters."""
    api = MockAPI(mock_api_process)
    api.scenario({})
    yield api


@pytest.fixture(scope="module")
def small_api() -> Iterator[MockAPI]:
    """A mock API of its own with 500 items (for runs of a whole API, e.g. the CLI)."""
    handle = start_mock_api(port=None, items=500)
    yield MockAPI(handle)
    handle.stop()


@pytest.fixture
def arrivals_between() -> Callable[[list[float], float, float], int]:
    def count(arrivals: list[float], start: float, end: float) -> int:
        return sum(1 for t in arrivals if start <= t < end)

    return count


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Application], Awaitable[str]]]:
    """Start scripted aiohttp apps on free ports (closed after the test); returns each one's base URL."""
    servers: list[TestServer] = []

    async def start(app: web.Application) -> str:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()
