"""Lesson 10 in the browser: the app in several processes on PostgreSQL, and the push gateway.

- The reader's page is served by one gunicorn app (``--workers 2``), the
  message is sent through another one on the same database: the badge of a
  long poll or an event stream only moves within the deadline because the
  write's NOTIFY reached the reader's process (re-checks are a minute apart).
- notify.js's gateway transports (``websocket`` and SSE at ``PUSH_URL``)
  against a scripted gateway: the real one (server/push) is tested at the end,
  once it exists.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import WSCloseCode, web
from aiohttp.test_utils import TestServer
from browser_helpers import POLL_INTERVAL_MS, SLACK_MS, login_page, register, send
from playwright.async_api import Page, expect

from course.servers import ServerHandle

pytestmark = pytest.mark.browser

SECRET = "browser-push-tests"
#: Waiters are woken by NOTIFY or not at all within the tests' deadlines.
SETTINGS = {
    "SECRET_KEY": SECRET,
    "NOTIFY_POLL_INTERVAL_MS": str(POLL_INTERVAL_MS),
    "LONG_POLL_TIMEOUT": "30",
    "NOTIFY_RECHECK_SECONDS": "60",
    "SSE_HEARTBEAT_SECONDS": "60",
}


@pytest.fixture(scope="module")
def shared_database(postgresql) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = f"browser_{uuid.uuid4().hex[:12]}"
    yield postgresql.create_database(name)
    postgresql.drop_database(name)


@pytest.fixture(scope="module")
def two_apps(shared_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, ...]]:
    """(the reader's app, the sender's app): each ``--workers 2``, one database."""
    from messaging_helpers import start_app_workers

    apps = []
    try:
        for side in ("reader", "sender"):
            apps.append(start_app_workers(shared_database, tmp_path_factory.mktemp(side), 2, **SETTINGS))
        yield tuple(apps)
    finally:
        for handle in apps:
            handle.stop(timeout=15)


async def watch_policy(page: Page) -> list[str]:
    """Content-Security-Policy violations of ``page`` from now on (reported on its console)."""
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    await page.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " e => console.error('Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI))"
    )
    return violations


@pytest.mark.parametrize("transport", ["poll", "longpoll", "sse"])
async def test_the_badge_moves_when_the_message_goes_through_another_app_process(browser, two_apps, transport):
    reader_app, sender_app = two_apps
    alice, bob = register(sender_app, "alice"), register(reader_app, "bob")
    sender = await login_page(browser, sender_app, alice)
    reader = await login_page(browser, reader_app, bob, f"/?transport={transport}")
    badge = reader.locator("#message_count")
    await expect(badge).to_be_hidden(timeout=SLACK_MS)
    assert await reader.evaluate("window.notifyState.transport") == transport

    for i in range(2):
        await send(sender, bob, f"hello {i} from the other app")
    await expect(badge).to_have_text("2", timeout=POLL_INTERVAL_MS + SLACK_MS)
    await expect(badge).to_be_visible(timeout=SLACK_MS)


# -- notify.js against a scripted gateway ----------------------------------------------------------


def note(number: int, count: int) -> dict[str, Any]:
    return {"id": number, "name": "unread_message_count", "data": count, "timestamp": 1.0 * number}


async def start(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def record(request: web.Request, seen: list[dict[str, Any]]) -> None:
    seen.append(
        {
            "path": request.path,
            "after": request.query.get("after"),
            "cookie": "session" in request.cookies,
            "origin": request.headers.get("Origin"),
        }
    )


async def test_websocket_transport_reads_the_gateway_and_resumes_after_a_restart(browser, start_messaging):
    seen: list[dict[str, Any]] = []

    async def socket(request: web.Request) -> web.WebSocketResponse:
        record(request, seen)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if len(seen) == 1:
            await ws.send_json([note(1, 7)])
            await ws.close(code=WSCloseCode.SERVICE_RESTART)  # 1012: the page must come back with ?after=1
        else:
            await ws.send_json([note(1, 7), note(2, 9)])  # 1 again: already seen
            async for _ in ws:
                pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", socket)
    gateway = await start(app)
    push_url = str(gateway.make_url("")).rstrip("/")
    try:
        site = start_messaging("browser-ws", PUSH_URL=push_url, **SETTINGS)
        name = register(site, "socket")
        page = await login_page(browser, site, name)
        violations = await watch_policy(page)
        await page.goto(site.url + "/?transport=websocket")
        assert await page.evaluate("window.notifyState.transport") == "websocket"
        await expect(page.locator("#message_count")).to_have_text("9", timeout=SLACK_MS)
        assert await page.evaluate("window.notifyState.received") == 2
    finally:
        await gateway.close()
    assert [s["after"] for s in seen[:2]] == ["0", "1"]
    assert all(s["cookie"] for s in seen), "the page's session cookie did not reach the gateway"
    assert seen[0]["origin"] == site.url
    assert violations == []


async def test_sse_transport_reads_the_gateways_stream_with_the_session_cookie(browser, start_messaging):
    seen: list[dict[str, Any]] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        record(request, seen)
        origin = request.headers.get("Origin", "")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Access-Control-Allow-Origin": origin,  # the page is another origin: CORS with credentials
                "Access-Control-Allow-Credentials": "true",
            }
        )
        await response.prepare(request)
        await response.write(f"retry: 500\n\nid: 1\ndata: {json.dumps(note(1, 4))}\n\n".encode())
        while True:  # held open, as the gateway does, until the page goes
            await response.write(b": keep-alive\n\n")
            await asyncio.sleep(1)

    app = web.Application()
    app.router.add_get("/stream", stream)
    gateway = await start(app)
    push_url = str(gateway.make_url("")).rstrip("/")
    try:
        site = start_messaging("browser-gateway-sse", PUSH_URL=push_url, **SETTINGS)
        name = register(site, "streamer")
        page = await login_page(browser, site, name)
        violations = await watch_policy(page)
        await page.goto(site.url + "/?transport=sse")
        await expect(page.locator("#message_count")).to_have_text("4", timeout=SLACK_MS)
        assert await page.evaluate("window.notifyState.transport") == "sse"
        await page.close()
    finally:
        await gateway.close()
    assert seen[0]["path"] == "/stream" and seen[0]["after"] == "0" and seen[0]["cookie"]
    assert violations == []


# -- the real gateway (server/push), once it exists -----------------------------------------------


@pytest.fixture(scope="module")
def gateway_apps(shared_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, ...]]:
    """(the reader's app with PUSH_URL, the sender's app): ``--workers 2`` each, and the gateway."""
    pytest.importorskip("server.push")
    from messaging_helpers import start_app_workers, start_push_gateway

    handles = []
    try:
        gateway = start_push_gateway(shared_database, SECRET)
        handles.append(gateway)
        reader_app = start_app_workers(
            shared_database, tmp_path_factory.mktemp("push-reader"), 2, PUSH_URL=gateway.url, **SETTINGS
        )
        handles.append(reader_app)
        handles.append(start_app_workers(shared_database, tmp_path_factory.mktemp("push-sender"), 2, **SETTINGS))
        yield reader_app, handles[2]
    finally:
        for handle in reversed(handles):
            handle.stop(timeout=15)


@pytest.mark.parametrize("transport", ["sse", "websocket"])
async def test_the_badge_moves_through_the_push_gateway(browser, gateway_apps, transport):
    reader_app, sender_app = gateway_apps
    alice, bob = register(sender_app, "alice"), register(reader_app, "bob")
    sender = await login_page(browser, sender_app, alice)
    reader = await login_page(browser, reader_app, bob)
    violations = await watch_policy(reader)
    await reader.goto(reader_app.url + f"/?transport={transport}")
    badge = reader.locator("#message_count")
    await expect(badge).to_be_hidden(timeout=SLACK_MS)
    assert await reader.evaluate("window.notifyState.transport") == transport
    await reader.wait_for_function("() => window.notifyState.opened > 0", timeout=SLACK_MS)

    for i in range(2):
        await send(sender, bob, f"hello {i} through the gateway")
    await expect(badge).to_have_text("2", timeout=SLACK_MS)
    assert violations == []
