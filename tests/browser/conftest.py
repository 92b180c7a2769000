"""Headless Chromium (Debian's, driven by Playwright) against a live messaging app.

The PostgreSQL tests reuse the messaging tests' throwaway server and helpers
(tests/server/messaging), put on ``sys.path`` here.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from browser_helpers import POLL_INTERVAL_MS

from course.browser import CHROMIUM, CHROMIUM_ARGS
from course.servers import ServerHandle

MESSAGING_TESTS = Path(__file__).resolve().parents[1] / "server" / "messaging"
if str(MESSAGING_TESTS) not in sys.path:
    sys.path.append(str(MESSAGING_TESTS))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: `make chromium` installs Debian's package")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def server(start_messaging) -> Iterator[ServerHandle]:  # type: ignore[no-untyped-def]
    handle = start_messaging(  # no SECRET_KEY: the app generates one, as when run by hand
        "browser-messaging",
        NOTIFY_POLL_INTERVAL_MS=str(POLL_INTERVAL_MS),
        LONG_POLL_TIMEOUT="10",
        SSE_HEARTBEAT_SECONDS="5",
    )
    yield handle
    handle.stop()


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture(scope="session")
def postgresql() -> Iterator[object]:
    """A throwaway PostgreSQL server (``course.postgres_server``)."""
    from course.postgres_server import start_postgresql

    server = start_postgresql()
    yield server
    server.stop()
