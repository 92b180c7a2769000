"""Who may open a stream: the app's session cookie, the Origin, the caps.

Cookies are made with Flask's own session serializer, the way the app signs
them, so each refusal is set against the same cookie signed right.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface, session_json_serializer
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from push_helpers import SECRET_KEY, EventReader, Person, query, sign_up

from course import notify
from course.servers import ServerHandle

pytestmark = pytest.mark.timeout(180)


def flask_cookie(secret_key: str, session: dict[str, Any]) -> str:
    """A session cookie as a Flask app with ``secret_key`` would set it."""
    app = Flask("cookie-maker")
    app.config["SECRET_KEY"] = secret_key
    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    assert serializer is not None
    return str(serializer.dumps(session))


class _SignedLongAgo(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 40 * 24 * 3600  # Flask's session lifetime is 31 days


def expired_cookie(secret_key: str, session: dict[str, Any]) -> str:
    serializer = URLSafeTimedSerializer(
        secret_key,
        salt="cookie-session",
        serializer=session_json_serializer,
        signer=_SignedLongAgo,
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
    )
    return serializer.dumps(session)


def token_of(database_url: str, person: Person) -> str:
    return str(query(database_url, 'SELECT session_token FROM "user" WHERE id = %s', person.user_id)[0][0])


@pytest.fixture
async def bob(messaging_app: ServerHandle, database_url: str) -> AsyncIterator[Person]:
    person = await sign_up(messaging_app.url, database_url, "bob")
    yield person
    await person.session.close()


async def status_of(client: aiohttp.ClientSession, url: str, cookie: str | None, **headers: str) -> int:
    """The status /stream or /ws answers (a WebSocket upgrade: 101)."""
    if cookie is not None:
        headers["Cookie"] = f"session={cookie}"
    if url.endswith("/ws"):
        try:
            async with client.ws_connect(url, headers=headers):
                return 101
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status
    async with client.get(url, headers=headers) as response:
        if response.status != 200:
            body = await response.json()
            assert set(body) == {"error"}, body  # a JSON error, no stream
        return response.status


@pytest.mark.parametrize("path", ["/stream", "/ws"])
async def test_forged_expired_or_missing_cookies_get_401(gateway, database_url, bob, client, path):
    url = gateway.url + path
    token = token_of(database_url, bob)
    assert await status_of(client, url, flask_cookie(SECRET_KEY, {"_user_id": token})) in (200, 101)
    assert await status_of(client, url, flask_cookie("another key", {"_user_id": token})) == 401
    assert await status_of(client, url, expired_cookie(SECRET_KEY, {"_user_id": token})) == 401
    assert await status_of(client, url, flask_cookie(SECRET_KEY, {"_user_id": "not-a-token"})) == 401
    assert await status_of(client, url, flask_cookie(SECRET_KEY, {"_user_id": bob.user_id})) == 401  # an id is no token
    assert await status_of(client, url, flask_cookie(SECRET_KEY, {})) == 401
    assert await status_of(client, url, "garbage") == 401
    assert await status_of(client, url, None) == 401


async def test_a_cookie_signed_out_at_the_app_gets_401(gateway, messaging_app, bob, client):
    kept = bob.cookie
    assert await status_of(client, f"{gateway.url}/stream", kept) == 200
    await notify.logout(bob.session, messaging_app.url)  # the app rotates bob's session_token
    assert await status_of(client, f"{gateway.url}/stream", kept) == 401
    assert await status_of(client, f"{gateway.url}/ws", kept) == 401


@pytest.mark.parametrize("path", ["/ws", "/stream"])
async def test_pages_of_other_origins_are_refused_403(gateway, bob, client, path):
    url = gateway.url + path
    app_page = f"http://127.0.0.1:{gateway.port + 1}"  # another port of the same host: the app's pages
    assert await status_of(client, url, bob.cookie, Origin=app_page) in (200, 101)
    assert await status_of(client, url, bob.cookie, Origin="http://evil.example") == 403
    assert await status_of(client, url, bob.cookie, Origin="null") == 403
    assert await status_of(client, url, bob.cookie, Origin=f"http://127.0.0.1.evil.example:{gateway.port}") == 403


async def test_an_allow_list_replaces_the_same_host_rule(start_gateway, bob, client):
    gateway = start_gateway("--allow-origin", "http://app.example:5000", "--allow-origin", "https://other.example")
    for path in ("/ws", "/stream"):
        url = gateway.url + path
        assert await status_of(client, url, bob.cookie, Origin="http://app.example:5000") in (200, 101)
        assert await status_of(client, url, bob.cookie, Origin="https://other.example") in (200, 101)
        assert await status_of(client, url, bob.cookie, Origin=f"http://127.0.0.1:{gateway.port}") == 403
        assert await status_of(client, url, bob.cookie, Origin="http://app.example:5001") == 403


async def test_an_allowed_page_may_read_the_stream_with_its_cookie(gateway, bob, client):
    origin = f"http://127.0.0.1:{gateway.port + 1}"
    async with client.get(f"{gateway.url}/stream", headers={**bob.headers, "Origin": origin}) as response:
        assert response.headers["Access-Control-Allow-Origin"] == origin
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
    evil = {**bob.headers, "Origin": "http://evil.example"}
    async with client.get(f"{gateway.url}/stream", headers=evil) as response:
        assert "Access-Control-Allow-Origin" not in response.headers


async def open_stream(stack: AsyncExitStack, client: aiohttp.ClientSession, url: str, person: Person) -> int:
    """Open a stream (kept open until ``stack`` closes); its status."""
    if url.endswith("/ws"):
        try:
            await stack.enter_async_context(client.ws_connect(url, headers=person.headers))
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status
        return 101
    response = await stack.enter_async_context(client.get(url, headers=person.headers))
    if response.status == 200:
        await EventReader(response).next()  # its retry: line: the gateway holds it now
    return response.status


async def test_per_user_cap_is_429_and_capacity_is_503_with_retry_after(
    start_gateway, messaging_app, database_url, bob, client
):
    gateway = start_gateway("--max-per-user", "2", "--max-connections", "3")
    carol = await sign_up(messaging_app.url, database_url, "carol")
    try:
        async with AsyncExitStack() as stack:
            assert await open_stream(stack, client, f"{gateway.url}/stream", bob) == 200
            assert await open_stream(stack, client, f"{gateway.url}/ws", bob) == 101
            async with client.get(f"{gateway.url}/stream", headers=bob.headers) as third:
                assert third.status == 429
                assert int(third.headers["Retry-After"]) > 0
                assert "streams" in (await third.json())["error"]
            assert await status_of(client, f"{gateway.url}/ws", bob.cookie) == 429
            assert await open_stream(stack, client, f"{gateway.url}/ws", carol) == 101  # others still get in
            async with client.get(f"{gateway.url}/stream", headers=carol.headers) as full:
                assert full.status == 503
                assert int(full.headers["Retry-After"]) > 0
                assert "retry" in (await full.json())["error"]
        # Closed streams give their seats back (noticed as the clients hang up).
        async with AsyncExitStack() as stack:
            while (status := await open_stream(stack, client, f"{gateway.url}/ws", bob)) != 101:
                assert status in (429, 503)
                await asyncio.sleep(0.1)
    finally:
        await carol.session.close()


async def test_open_streams_end_when_their_session_is_signed_out_at_the_app(start_gateway, messaging_app, bob, client):
    gateway = start_gateway("--recheck", "0.2")
    async with (
        client.ws_connect(f"{gateway.url}/ws", headers=bob.headers) as socket_,
        client.get(f"{gateway.url}/stream", headers=bob.headers) as response,
    ):
        events = EventReader(response)
        await events.next()  # held
        await notify.logout(bob.session, messaging_app.url)  # rotates bob's session_token
        closed = await socket_.receive(timeout=60)
        rest = await events.rest()
    assert closed.type == aiohttp.WSMsgType.CLOSE
    assert closed.data == 1008 and closed.extra == "signed out"
    assert rest[-1].comments == ["signed out"]  # and the response ended
