"""Follow the messaging app's notifications from Python: poll, long poll, SSE or WebSocket.

The four transports hand the same :class:`Notification` objects to one
callback, as the page's script does in the browser::

    async with client_session() as session:
        await login(session, app.url, "user1", "password")
        await follow(session, app.url, print, transport="sse")   # runs until cancelled

``sse`` reads the app's own ``/notifications/stream``, or the push gateway's
``/stream`` when given ``push_url=`` (``python -m server.push``, which knows
the app's session cookie); ``websocket`` needs the gateway: ``follow(session,
app.url, print, transport="websocket", push_url=gateway.url)``.

Every client remembers the cursor (the notification ``id``) of the last
notification it delivered and asks only for newer ones, so nothing is
skipped or repeated. Network errors and 5xx answers are retried after a
growing pause (:class:`Backoff`); a 401 (no valid session) raises
:class:`NotLoggedIn`; an exception raised by the callback ends the client
too. Cancel the task to stop a client: its request is closed and nothing is
left running.

``login``, ``register`` and ``send_message`` fill the app's forms the way a
browser does (GET the form, POST it back with its CSRF token); the capstone's
simulated users are built from them.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from course.policies import parse_retry_after

__all__ = [
    "TRANSPORTS",
    "Backoff",
    "Counters",
    "LoginFailed",
    "LoginThrottled",
    "MessageRejected",
    "NotLoggedIn",
    "Notification",
    "NotifyError",
    "client_session",
    "follow",
    "login",
    "logout",
    "long_poll",
    "poll",
    "register",
    "send_message",
    "sign_in_all",
    "stream",
    "websocket",
]

log = logging.getLogger(__name__)

Callback = Callable[["Notification"], Awaitable[Any] | Any]
Transport = Literal["poll", "longpoll", "sse", "websocket"]

_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
_FIELD_ERRORS = re.compile(r'class="invalid-feedback[^"]*"[^>]*>\s*([^<]+?)\s*<', re.S)


# -- records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """One notification, as every transport delivers it."""

    id: int
    name: str
    data: Any
    timestamp: float

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Notification:
        return cls(int(item["id"]), str(item["name"]), item["data"], float(item["timestamp"]))


@dataclass
class Counters:
    """What a client did: pass one to a client to watch it (or compare transports)."""

    requests: int = 0
    delivered: int = 0
    errors: int = 0
    cursor: int = 0


@dataclass(frozen=True)
class Backoff:
    """Pause after consecutive failures: ``first * factor**(n-1)``, at most ``limit`` s."""

    first: float = 1.0
    factor: float = 2.0
    limit: float = 60.0

    def delay(self, failures: int) -> float:
        return min(self.first * self.factor ** max(failures - 1, 0), self.limit)


class NotifyError(Exception):
    """The messaging app answered something this client cannot go on with."""


class NotLoggedIn(NotifyError):
    """401: the session is missing or expired; call ``login`` again."""


class LoginFailed(NotifyError):
    """The login (or registration) form was refused; the message says why."""


class LoginThrottled(LoginFailed):
    """429 or 503 on the login form: too many attempts, or the server is busy hashing; wait, then retry."""


class MessageRejected(NotifyError):
    """``send_message`` was refused: unknown recipient or an invalid body."""


class _SignedIn(Exception):
    """A form page redirected home: the login or register page because this
    session is signed in already, the sign-out page because it is signed out."""


class _Transient(Exception):
    """A failure worth retrying (connection trouble, 5xx), maybe after a given pause."""

    def __init__(self, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# -- sessions and forms ----------------------------------------------------------------------


def client_session(**kwargs: Any) -> aiohttp.ClientSession:
    """An ``aiohttp.ClientSession`` that keeps the app's session cookie.

    aiohttp's default cookie jar ignores cookies from servers addressed by
    IP (such as ``127.0.0.1``); this one accepts them.
    """
    kwargs.setdefault("cookie_jar", aiohttp.CookieJar(unsafe=True))
    return aiohttp.ClientSession(**kwargs)


async def _form_token(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url, allow_redirects=False) as response:
        if response.status == 404:
            raise MessageRejected(f"{url} does not exist (404): check the user name")
        if response.status == 302:
            if "/auth/login" in response.headers.get("Location", ""):
                raise NotLoggedIn(f"{url} needs a login: call login() first")
            raise _SignedIn(url)
        if response.status != 200:
            raise NotifyError(f"GET {url} answered {response.status}")
        html = await response.text()
    match = _CSRF.search(html)
    if match is None:
        raise NotifyError(f"{url} has no form with a CSRF token; is this the messaging app?")
    if not any(cookie.key == "session" for cookie in session.cookie_jar):
        raise LoginFailed(
            "the session cookie was refused, so the CSRF token cannot work: create the "
            "session with course.notify.client_session() (cookie_jar=aiohttp.CookieJar(unsafe=True))"
        )
    return match.group(1)


async def _submit(
    session: aiohttp.ClientSession, url: str, fields: dict[str, str]
) -> tuple[int, str, str]:
    """POST a form with its CSRF token; returns (status, redirect location, page)."""
    token = await _form_token(session, url)
    async with session.post(url, data={**fields, "csrf_token": token}, allow_redirects=False) as response:
        return response.status, response.headers.get("Location", ""), await response.text()


def _form_errors(html: str) -> str:
    return "; ".join(_FIELD_ERRORS.findall(html)) or "the form was not accepted"


async def _submit_signed_out(
    session: aiohttp.ClientSession, base_url: str, path: str, fields: dict[str, str]
) -> tuple[int, str, str]:
    """Submit a form of a signed-out visitor, signing out first if needed."""
    try:
        return await _submit(session, base_url + path, fields)
    except _SignedIn:
        await logout(session, base_url)
        return await _submit(session, base_url + path, fields)


async def logout(session: aiohttp.ClientSession, base_url: str) -> None:
    """Sign out (the session cookie then carries no user); signed out already is fine.

    The app signs out on a POST with the CSRF token of its sign-out page.
    """
    try:
        status, _, _ = await _submit(session, f"{base_url}/auth/logout", {})
    except _SignedIn:
        return  # the sign-out page sends a signed-out visitor home: nothing to do
    if status != 302:
        raise NotifyError(f"{base_url}/auth/logout answered {status}")


async def register(
    session: aiohttp.ClientSession, base_url: str, username: str, password: str, email: str | None = None
) -> None:
    """Create an account (raises :class:`LoginFailed` if the name is taken).

    The session is left signed out; call :func:`login` next.
    """
    status, _, html = await _submit_signed_out(
        session,
        base_url,
        "/auth/register",
        {
            "username": username,
            "email": email or f"{username}@example.com",
            "password": password,
            "password2": password,
        },
    )
    if status != 302:
        raise LoginFailed(f"could not register {username!r}: {_form_errors(html)}")


async def login(session: aiohttp.ClientSession, base_url: str, username: str, password: str) -> None:
    """Sign in through the login form (signing out first if the session was
    signed in); the session then carries the cookie."""
    status, location, _ = await _submit_signed_out(
        session, base_url, "/auth/login", {"username": username, "password": password}
    )
    if status in (429, 503):
        raise LoginThrottled(
            f"{base_url} answered {status} to the login of {username!r}: "
            "too many attempts or a busy server; wait a little and log in again"
        )
    if status != 302 or "/auth/login" in location:
        raise LoginFailed(f"wrong username or password for {username!r} at {base_url}")


async def sign_in_all(
    base_url: str, names: Sequence[str], password: str
) -> list[aiohttp.ClientSession]:
    """One signed-in session per name, in order, logged in concurrently.

    Simulated users need this: each one is a browser of its own. If any login
    fails, every session is closed before the error propagates.
    """
    sessions = [client_session() for _ in names]
    try:
        await asyncio.gather(*(login(s, base_url, n, password) for s, n in zip(sessions, names, strict=True)))
    except BaseException:
        await asyncio.gather(*(s.close() for s in sessions))
        raise
    return sessions


async def send_message(
    session: aiohttp.ClientSession, base_url: str, recipient: str, body: str
) -> None:
    """Send a private message through the form (needs a logged-in session)."""
    url = f"{base_url}/send_message/{recipient}"
    status, location, html = await _submit(session, url, {"message": body})
    if "/auth/login" in location:
        raise NotLoggedIn(f"sending to {recipient!r} needs a login: call login() first")
    if status != 302:
        raise MessageRejected(f"message to {recipient!r} refused: {_form_errors(html)}")


# -- the three transports -------------------------------------------------------------------


async def _deliver(callback: Callback, items: list[dict[str, Any]], counters: Counters) -> None:
    for item in items:
        note = Notification.from_json(item)
        if note.id <= counters.cursor:
            continue  # already delivered
        counters.cursor = note.id
        counters.delivered += 1
        result = callback(note)
        if inspect.isawaitable(result):
            await result


async def _get_json(
    session: aiohttp.ClientSession, url: str, counters: Counters, client_timeout: aiohttp.ClientTimeout
) -> list[dict[str, Any]]:
    counters.requests += 1
    try:
        async with session.get(url, timeout=client_timeout, allow_redirects=False) as response:
            _check(response, url)
            return await response.json()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from exc


def _check(response: aiohttp.ClientResponse, url: str) -> None:
    if response.status == 401:
        raise NotLoggedIn(f"{url} answered 401: the session is not logged in; call login()")
    if response.status == 429 or response.status >= 500:  # 429: this user holds every waiting seat it may
        pause = parse_retry_after(response.headers.get("Retry-After"), default=0.0)
        raise _Transient(f"{url} answered {response.status}", retry_after=pause)
    if response.status != 200:
        raise NotifyError(f"{url} answered {response.status}")


async def _retrying(
    attempt: Callable[[], Awaitable[float]], counters: Counters, backoff: Backoff
) -> None:
    """Run ``attempt`` forever; it returns the pause before the next one."""
    failures = 0
    while True:
        try:
            pause = await attempt()
            failures = 0
        except _Transient as exc:
            failures += 1
            counters.errors += 1
            pause = max(backoff.delay(failures), exc.retry_after)
            log.warning("%s; retrying in %.1f s", exc, pause)
        if pause > 0:
            await asyncio.sleep(pause)


async def poll(
    session: aiohttp.ClientSession,
    base_url: str,
    callback: Callback,
    *,
    interval: float = 10.0,
    after: int = 0,
    counters: Counters | None = None,
    backoff: Backoff | None = None,
) -> None:
    """Ask ``/notifications?after=`` every ``interval`` seconds, one request at a time."""
    counters = counters or Counters()
    counters.cursor = max(counters.cursor, after)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30)

    async def attempt() -> float:
        url = f"{base_url}/notifications?after={counters.cursor}"
        await _deliver(callback, await _get_json(session, url, counters, timeout), counters)
        return interval

    await _retrying(attempt, counters, backoff or Backoff(first=interval))


async def long_poll(
    session: aiohttp.ClientSession,
    base_url: str,
    callback: Callback,
    *,
    after: int = 0,
    wait: float | None = None,
    counters: Counters | None = None,
    backoff: Backoff | None = None,
) -> None:
    """Ask ``/notifications/wait?after=``; ask again as soon as it answers.

    ``wait`` asks the server to hold each request at most that many seconds
    (default: the server's ``LONG_POLL_TIMEOUT``).
    """
    counters = counters or Counters()
    counters.cursor = max(counters.cursor, after)
    held = f"&timeout={wait}" if wait is not None else ""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=(wait or 60) + 30)

    async def attempt() -> float:
        url = f"{base_url}/notifications/wait?after={counters.cursor}{held}"
        await _deliver(callback, await _get_json(session, url, counters, timeout), counters)
        return 0.0

    await _retrying(attempt, counters, backoff or Backoff())


async def stream(
    session: aiohttp.ClientSession,
    base_url: str,
    callback: Callback,
    *,
    after: int = 0,
    read_timeout: float = 60.0,
    push_url: str | None = None,
    counters: Counters | None = None,
    backoff: Backoff | None = None,
) -> None:
    """Read ``/notifications/stream`` (Server-Sent Events); reconnect with ``Last-Event-ID``.

    With ``push_url`` (the push gateway's base URL) read ``<push_url>/stream``
    instead: the same events. ``read_timeout`` must exceed the server's
    keep-alive period (``SSE_HEARTBEAT_SECONDS``): silence longer than that
    means a dead connection.
    """
    counters = counters or Counters()
    counters.cursor = max(counters.cursor, after)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout)
    url = f"{push_url.rstrip('/')}/stream" if push_url else f"{base_url}/notifications/stream"
    reconnect_after = 2.0  # seconds; the server may change it with "retry:"

    async def attempt() -> float:
        nonlocal reconnect_after
        counters.requests += 1
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(counters.cursor)}
        try:
            async with session.get(url, headers=headers, timeout=timeout, allow_redirects=False) as response:
                _check(response, url)
                async for event in _server_sent_events(response):
                    if event.retry is not None:
                        reconnect_after = event.retry / 1000
                    if event.data is not None:
                        await _deliver(callback, [json.loads(event.data)], counters)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _Transient(f"event stream broke: {type(exc).__name__}: {exc}") from exc
        return reconnect_after  # the server ended the stream: reconnect as EventSource would

    await _retrying(attempt, counters, backoff or Backoff())


#: Close codes after which a socket is simply opened again (with the cursor):
#: normal closure, going away, and "service restart" (a gateway being redeployed).
_RECONNECT_CODES = {1000, 1001, 1012}


async def websocket(
    session: aiohttp.ClientSession,
    base_url: str,
    callback: Callback,
    *,
    push_url: str,
    after: int = 0,
    heartbeat: float = 30.0,
    reconnect_after: float = 0.5,
    counters: Counters | None = None,
    backoff: Backoff | None = None,
) -> None:
    """Follow the push gateway's ``<push_url>/ws?after=<cursor>``: each message a JSON list.

    ``base_url`` (the app) is not used: the session's cookie, from ``login``
    at the app, is what the gateway reads. After a close the socket is opened
    again with the cursor reached: at once (``reconnect_after`` seconds) after
    1000/1001/1012, after a growing pause (``backoff``) after an error or
    any other close. A refused handshake is treated as the other transports
    treat the answer: 401 raises :class:`NotLoggedIn`, 429 and 5xx are
    retried (after ``Retry-After``), anything else raises :class:`NotifyError`.
    ``heartbeat``: seconds between pings (an unanswered ping is a dead connection).
    """
    del base_url  # the same signature as the other transports: follow() passes it
    counters = counters or Counters()
    counters.cursor = max(counters.cursor, after)
    gateway = push_url.rstrip("/")
    if not gateway.startswith(("http://", "https://", "ws://", "wss://")):
        raise ValueError(f"push_url must be the gateway's http(s) base URL, not {push_url!r}")

    close_timeout = aiohttp.ClientWSTimeout(ws_close=10)

    async def attempt() -> float:
        url = f"{gateway}/ws?after={counters.cursor}"
        counters.requests += 1
        try:
            async with session.ws_connect(url, heartbeat=heartbeat, timeout=close_timeout) as socket:
                async for message in socket:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        continue  # binary frames: not part of the protocol
                    await _deliver(callback, _notification_list(message.data, url), counters)
                code = socket.close_code
        except aiohttp.WSServerHandshakeError as exc:
            raise _handshake_error(exc, url) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _Transient(f"websocket broke: {type(exc).__name__}: {exc}") from exc
        if code in _RECONNECT_CODES:
            log.info("%s closed (%s); reconnecting after cursor %d", url, code, counters.cursor)
            return reconnect_after
        raise _Transient(f"{url} closed with code {code}")

    await _retrying(attempt, counters, backoff or Backoff())


def _notification_list(text: str, url: str) -> list[dict[str, Any]]:
    """A WebSocket message's notifications; ``NotifyError`` for anything but a JSON list of objects."""
    try:
        items = json.loads(text)
    except ValueError:
        items = None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise NotifyError(f"{url} sent {text[:80]!r}, not a JSON list of notifications")
    return items


def _handshake_error(exc: aiohttp.WSServerHandshakeError, url: str) -> Exception:
    """What a refused WebSocket handshake means, as ``_check`` says for HTTP answers."""
    if exc.status == 401:
        return NotLoggedIn(f"{url} answered 401: the session is not logged in; call login()")
    if exc.status == 429 or exc.status >= 500:
        retry_after = exc.headers.get("Retry-After") if exc.headers else None
        return _Transient(f"{url} answered {exc.status}", retry_after=parse_retry_after(retry_after, default=0.0))
    return NotifyError(f"{url} refused the WebSocket: {exc.status} {exc.message}")


TRANSPORTS: dict[str, Callable[..., Awaitable[None]]] = {
    "poll": poll,
    "longpoll": long_poll,
    "sse": stream,
    "websocket": websocket,
}


async def follow(
    session: aiohttp.ClientSession,
    base_url: str,
    callback: Callback,
    transport: Transport = "poll",
    **options: Any,
) -> None:
    """Follow with the named transport; ``options`` go to :func:`poll`,
    :func:`long_poll`, :func:`stream` or :func:`websocket` (which needs
    ``push_url=``, the gateway's base URL; ``stream`` uses it too, the two
    polling transports ignore it)."""
    try:
        client = TRANSPORTS[transport]
    except KeyError:
        raise ValueError(f"transport must be one of {sorted(TRANSPORTS)}, not {transport!r}") from None
    if transport == "websocket" and not options.get("push_url"):
        raise ValueError("the websocket transport needs push_url=, the push gateway's base URL")
    if transport in ("poll", "longpoll"):
        options.pop("push_url", None)  # they ask the app itself: one call fits every transport
    await client(session, base_url, callback, **options)


# -- Server-Sent Events parsing ----------------------------------------------------------------


@dataclass
class _Event:
    id: str | None = None
    data: str | None = None
    retry: int | None = None
    lines: list[str] = field(default_factory=list)


async def _server_sent_events(response: aiohttp.ClientResponse) -> AsyncIterator[_Event]:
    """Events of a text/event-stream body (the fields this app uses: id, data, retry)."""
    event = _Event()
    async for raw in response.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:  # a blank line ends an event
            if event.lines:
                event.data = "\n".join(event.lines)
            if event.data is not None or event.retry is not None:
                yield event
            event = _Event()
            continue
        if line.startswith(":"):
            continue  # a comment: keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            event.lines.append(value)
        elif name == "id":
            event.id = value
        elif name == "retry" and value.isdigit():
            event.retry = int(value)
