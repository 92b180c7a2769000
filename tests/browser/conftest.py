"""Headless Chromium (Debian's, driven by Playwright) against a live messaging app."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import requests

from course.servers import ServerHandle, start_messaging_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
POLL_INTERVAL_MS = 1000
PASSWORD = "browser-pw"

_numbers = itertools.count()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: `make chromium` installs Debian's package")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    folder = tmp_path_factory.mktemp("browser-messaging")
    handle = start_messaging_app(
        port=None,
        database_url=f"sqlite:///{folder / 'messaging.db'}",
        config={
            "MESSAGING_INSTANCE_PATH": str(folder),
            "SECRET_KEY": "browser-tests",
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
            "NOTIFY_POLL_INTERVAL_MS": str(POLL_INTERVAL_MS),
            "LONG_POLL_TIMEOUT": "10",
            "SSE_HEARTBEAT_SECONDS": "5",
        },
        reuse=False,
    )
    yield handle
    handle.stop()


def register(server: ServerHandle, prefix: str) -> str:
    """Register a fresh user over plain HTTP; returns the username."""
    name = f"{prefix}{next(_numbers)}"
    session = requests.Session()
    page = session.get(server.url + "/auth/register", timeout=10)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    answer = session.post(
        server.url + "/auth/register",
        data={
            "username": name,
            "email": f"{name}@example.com",
            "password": PASSWORD,
            "password2": PASSWORD,
            "csrf_token": token,
        },
        timeout=10,
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text
    return name


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


async def login_page(browser, server: ServerHandle, username: str, path: str = "/"):  # type: ignore[no-untyped-def]
    """A new browser context (its own cookies) signed in as ``username``, showing ``path``."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(server.url + "/auth/login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#submit")
    await page.wait_for_url(re.compile(r"/index$"))
    await page.goto(server.url + path)
    return page
