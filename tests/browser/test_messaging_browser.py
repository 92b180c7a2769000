"""Two people in two browser contexts: the badge updates without a reload."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import POLL_INTERVAL_MS, SLACK_MS, login_page, register, send
from playwright.async_api import Route, expect

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("transport", ["poll", "longpoll", "sse"])
async def test_badge_counts_new_messages_without_reload_then_hides_on_messages_page(
    browser, server, transport, tmp_path: Path
):
    alice, bob = register(server, "alice"), register(server, "bob")
    sender = await login_page(browser, server, alice)
    reader = await login_page(browser, server, bob, f"/?transport={transport}")
    badge = reader.locator("#message_count")
    await expect(badge).to_be_hidden(timeout=SLACK_MS)
    assert await reader.evaluate("window.notifyState.transport") == transport
    await reader.evaluate("window.stillTheSamePage = true")

    for i in range(3):
        await send(sender, bob, f"hello {i} via {transport}")

    await expect(badge).to_have_text("3", timeout=POLL_INTERVAL_MS + SLACK_MS)
    await expect(badge).to_be_visible(timeout=SLACK_MS)
    assert await reader.evaluate("window.stillTheSamePage === true"), "the page was reloaded"
    await reader.screenshot(path=str(tmp_path / f"badge-{transport}.png"))

    await reader.click("#messages_link")
    await expect(reader.locator("#messages")).to_contain_text(f"hello 2 via {transport}", timeout=SLACK_MS)
    await expect(reader.locator("#message_count")).to_be_hidden(timeout=SLACK_MS)


async def test_page_is_styled_by_the_locally_served_bootstrap(browser, server, tmp_path: Path):
    page = await login_page(browser, server, register(server, "styled"))
    display = await page.locator(".navbar").evaluate("el => getComputedStyle(el).display")
    assert display == "flex"  # Bootstrap's .navbar is a flex box; unstyled it is "block"
    await page.screenshot(path=str(tmp_path / "home.png"))


async def test_polls_never_overlap_even_when_answers_are_slower_than_the_interval(browser, server):
    page = await login_page(browser, server, register(server, "slow"))
    in_flight = peak = seen = 0

    async def slow(route: Route) -> None:
        nonlocal in_flight, peak, seen
        in_flight += 1
        seen += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(3 * POLL_INTERVAL_MS / 1000)
            await route.continue_()
        finally:
            in_flight -= 1

    await page.route(re.compile(r"/notifications\?"), slow)
    await page.reload()
    await asyncio.sleep(8 * POLL_INTERVAL_MS / 1000)
    assert seen >= 1
    assert peak == 1, f"{peak} polls were in flight at once"


async def test_polling_backs_off_while_the_server_fails(browser, server):
    page = await login_page(browser, server, register(server, "failing"))
    failures = 0

    async def fail(route: Route) -> None:
        nonlocal failures
        failures += 1
        await route.fulfill(status=503, body="down for a moment")

    await page.route(re.compile(r"/notifications\?"), fail)
    await page.reload()
    await asyncio.sleep(8 * POLL_INTERVAL_MS / 1000)
    # A fixed interval would have sent ~8 requests; doubling delays (1, 2, 4 s) send ~4.
    assert 1 <= failures <= 5, failures
    counted = await page.evaluate("window.notifyState.failures")
    assert counted in (failures - 1, failures)  # the last answer may still be on its way


async def test_polling_pauses_while_the_tab_is_hidden(browser, server):
    page = await login_page(browser, server, register(server, "hidden"))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/notifications" in r.url else None)
    await page.evaluate(
        """() => {
            Object.defineProperty(document, "hidden", {value: true, configurable: true});
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    await asyncio.sleep(POLL_INTERVAL_MS / 1000)  # one that was already scheduled may go out
    before = len(requests)
    await asyncio.sleep(4 * POLL_INTERVAL_MS / 1000)
    assert len(requests) == before, "polled while the tab was hidden"
    await page.evaluate(
        """() => {
            Object.defineProperty(document, "hidden", {value: false, configurable: true});
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    await page.wait_for_event("request", timeout=POLL_INTERVAL_MS + SLACK_MS)
    assert len(requests) > before


async def test_polling_stops_after_a_401(browser, server):
    page = await login_page(browser, server, register(server, "leaving"))
    other_tab = await page.context.new_page()
    await other_tab.goto(page.url)
    await other_tab.click("#logout")  # signs the whole context out
    await page.wait_for_function("() => window.notifyState.stopped", timeout=POLL_INTERVAL_MS + SLACK_MS)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/notifications" in r.url else None)
    await asyncio.sleep(3 * POLL_INTERVAL_MS / 1000)
    assert requests == []


@pytest.mark.parametrize("transport", ["poll", "longpoll", "sse"])
async def test_the_content_security_policy_blocks_nothing_the_pages_need(browser, server, transport):
    """The pages' policy allows scripts and styles from the site only: none of its own is blocked."""
    name = register(server, "policed")
    page = await login_page(browser, server, name)
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    await page.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " e => console.error('Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI))"
    )
    for path in (f"/?transport={transport}", f"/user/{name}", f"/send_message/{name}", "/messages", "/auth/logout"):
        await page.goto(server.url + path)
        await page.wait_for_load_state("networkidle" if transport == "poll" else "load")
    await expect(page.locator("#message_count")).to_be_hidden(timeout=SLACK_MS)
    assert await page.locator(".navbar").evaluate("el => getComputedStyle(el).display") == "flex"
    assert await page.evaluate("typeof bootstrap") == "object"  # Bootstrap's script ran
    assert await page.evaluate("window.notifyState.transport") == transport  # and ours
    assert violations == []


@contextlib.contextmanager
def another_site(html: str) -> Iterator[str]:
    """A second web server on this machine, serving ``html`` at its root; yields its URL."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{site.server_address[1]}/"  # another origin, and another site
    finally:
        site.shutdown()
        site.server_close()


async def test_another_site_cannot_show_the_apps_pages_in_a_frame(browser, server):
    """Finding 5: the pages could be framed (clickjacking). Chromium sends no cookie to a
    cross-site frame anyway (SameSite=Lax is its default), so the sign-in form, which needs
    none, is the one to try; the send form must not show either."""
    name = register(server, "framed")
    page = await login_page(browser, server, name)
    frames = f'<iframe src="{server.url}/auth/login"></iframe><iframe src="{server.url}/send_message/{name}"></iframe>'
    with another_site(frames) as url:
        await page.goto(url)
        await page.wait_for_timeout(2000)  # let the frames load, or be refused
        children = [f for f in page.frames if f is not page.main_frame]
        assert len(children) == 2, "the frames were not created at all"
        for frame in children:
            for field in ("#username", "#message"):
                assert await frame.locator(field).count() == 0, f"{field} showed inside another site's page"
