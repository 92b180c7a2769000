"""Helpers for the browser tests (fixtures are in conftest.py)."""

from __future__ import annotations

import itertools
import re

import requests
from playwright.async_api import Page, expect

from course.servers import ServerHandle

POLL_INTERVAL_MS = 1000
# The badge must change within one poll interval; the margin covers a busy
# 2-core machine (browser start, page scripts, three form posts).
SLACK_MS = 10_000
PASSWORD = "browser-pw"

_numbers = itertools.count()


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


async def send(page: Page, recipient: str, body: str) -> None:
    """Send ``body`` to ``recipient`` with the form of the site ``page`` shows."""
    await page.goto(re.sub(r"(https?://[^/]+).*", r"\1", page.url) + f"/send_message/{recipient}")
    await page.fill("#message", body)
    await page.click("#submit")
    await expect(page.locator(".alert")).to_contain_text("Your message has been sent.", timeout=SLACK_MS)
