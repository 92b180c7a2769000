"""The aiohttp application: ``/stream`` (SSE), ``/ws`` (WebSocket), ``/healthz``.

Every stream request passes the same gate, in this order:

1. ``Origin``, when a browser sends one, must be allowed (``--allow-origin``,
   else ``ALLOWED_ORIGINS``, else any port of the request's own host name):
   otherwise 403, so another site's page cannot open a stream with the
   user's cookie (cookies are not bound to a port);
2. the cursor (``Last-Event-ID`` or ``?after=``) must be a whole number up to
   ``MAX_CURSOR``: otherwise 400;
3. past ``--max-connections`` open streams in this process: 503 + ``Retry-After``;
4. the app's session cookie must name a signed-in user: otherwise 401;
5. past ``--max-per-user`` streams of that user: 429 + ``Retry-After``.

Refusals are JSON ``{"error": ...}``. A stream then gets what it is owed
after its cursor at once, and every notification after that as it is
committed. On shutdown each stream is told to reconnect (SSE: a short
``retry:`` and the end of the response; WebSocket: close code 1012, "service
restart"); clients resume from their cursor, so nothing is lost. A stream
whose user signed out at the app since it opened (the session token changed)
is ended at the next periodic re-check (SSE: ``: signed out`` and the end of
the response, a reconnection gets 401; WebSocket: close code 1008).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.typedefs import Handler

from server.messaging.hub import NoSeat, Seats
from server.messaging.models import MAX_CURSOR

from .fanout import Fanout, Subscriber
from .sessions import SESSION_COOKIE, SessionReader
from .settings import ConfigError, Settings, parse_origin
from .store import Listener, SessionUser, Store

__all__ = ["RECONNECT_MS", "SERVICE_RESTART", "SIGNED_OUT", "Gateway"]

log = logging.getLogger("server.push")

#: The reconnection delay a stream is told at shutdown (SSE ``retry:``), in ms.
RECONNECT_MS = 500
#: WebSocket close code at shutdown: "service restart", reconnect.
SERVICE_RESTART = WSCloseCode.SERVICE_RESTART
#: WebSocket close code when the user signed out at the app: policy violation, do not reconnect.
SIGNED_OUT = WSCloseCode.POLICY_VIOLATION
#: Seconds a client is asked to wait when the gateway is full / the user holds too many.
FULL_RETRY_AFTER = 2
FULL_MESSAGE = "this gateway holds as many streams as it may; retry shortly"
#: The largest message a WebSocket client may send (it has nothing to say).
MAX_CLIENT_MESSAGE = 4096



class Refused(Exception):
    """A stream request refused before it starts: becomes a JSON error answer."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    def response(self) -> web.Response:
        headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return web.json_response({"error": str(self)}, status=self.status, headers=headers)


class Gateway:
    """One process's state: settings, database, fan-out, seats."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions = SessionReader(settings.secret_key)
        self.store = Store(settings.database_url, settings.pool_size)
        self.fanout = Fanout(self.store)
        self.seats = Seats(settings.max_connections, settings.max_per_user or None)
        self.listener = Listener(settings.database_url, self.fanout.heard, self.fanout.wake_all)
        self.closing = False
        self._handlers_done = asyncio.Event()
        self._handlers_done.set()
        self._tasks: list[asyncio.Task[None]] = []

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[_json_errors])
        app.router.add_get("/stream", self.stream)
        app.router.add_get("/ws", self.websocket)
        app.router.add_get("/healthz", self.healthz)
        app.cleanup_ctx.append(self._background)
        return app

    async def _background(self, _app: web.Application) -> AsyncIterator[None]:
        self._tasks = [
            asyncio.create_task(self.listener.run(), name="listen"),
            asyncio.create_task(self.fanout.recheck_every(self.settings.recheck), name="recheck"),
        ]
        yield
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.fanout.drain()
        await self.store.close()

    # -- shutdown ------------------------------------------------------------------------------

    async def close_streams(self, grace: float) -> None:
        """Tell every open stream to reconnect; wait up to ``grace`` s for them to end."""
        self.closing = True
        self.fanout.close_all()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._handlers_done.wait(), grace)

    # -- the gate ------------------------------------------------------------------------------

    def _check_origin(self, request: web.Request) -> str | None:
        """The request's allowed ``Origin`` (None if it sent none); Refused(403) otherwise."""
        origin = request.headers.get("Origin")
        if origin is None:
            return None  # not a browser page: it could say anything anyway
        try:
            normalized = parse_origin(origin)
        except ConfigError:
            raise Refused(403, f"origin {origin!r} may not open streams here") from None
        allowed = self.settings.allowed_origins
        same_host = _host_name(normalized.split("://", 1)[1]) == _host_name(request.host)
        if not (normalized in allowed if allowed else same_host):
            raise Refused(403, f"origin {origin!r} may not open streams here")
        return origin

    async def _user(self, request: web.Request) -> tuple[SessionUser, str]:
        token = self.sessions.session_token(request.cookies.get(SESSION_COOKIE))
        if token is None:
            raise Refused(401, "not logged in: sign in at the messaging app (no valid session cookie)")
        try:
            user = await self.store.session_user(token)
        except Exception as exc:  # any database failure is a 503 here
            log.warning("cannot look up a session: %s", exc)
            raise Refused(503, "the database does not answer; retry shortly", FULL_RETRY_AFTER) from None
        if user is None:
            raise Refused(401, "this session was signed out: sign in again at the messaging app")
        return user, token

    async def _admit(self, request: web.Request, cursor: int) -> tuple[Subscriber, int]:
        """A seat for the request's user (or Refused); its stream, and the user's newest cursor."""
        if self.closing:
            raise Refused(503, "the gateway is restarting; reconnect shortly", 1)
        if self.seats.held() >= self.settings.max_connections:
            raise Refused(503, FULL_MESSAGE, FULL_RETRY_AFTER)
        user, token = await self._user(request)
        user_id = user.user_id
        try:
            self.seats.take(user_id)
        except NoSeat as refusal:
            if refusal.per_user:
                raise Refused(
                    429,
                    f"you already hold {self.settings.max_per_user} streams here (the most one user may): "
                    "close one, or retry later",
                    refusal.retry_after,
                ) from None
            raise Refused(503, FULL_MESSAGE, FULL_RETRY_AFTER) from None
        self._handlers_done.clear()
        transport = "ws" if request.path == "/ws" else "sse"
        return Subscriber(user_id, cursor, transport, session_token=token), user.counter

    def _release(self, subscriber: Subscriber) -> None:
        self.fanout.unsubscribe(subscriber)
        self.seats.leave(subscriber.user_id)
        if self.seats.held() == 0:
            self._handlers_done.set()

    # -- handlers ------------------------------------------------------------------------------

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """``GET /stream``: Server-Sent Events, as the app's ``/notifications/stream``."""
        try:
            origin = self._check_origin(request)
            cursor = _cursor("Last-Event-ID", request.headers.get("Last-Event-ID"))
            if cursor is None:
                cursor = _cursor("after", request.query.get("after"))
            subscriber, newest = await self._admit(request, cursor or 0)
        except Refused as refusal:
            return _with_cors(refusal.response(), request.headers.get("Origin"), refusal.status != 403)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        _with_cors(response, origin, True)
        try:
            await response.prepare(request)
            await response.write(f"retry: {self.settings.retry_ms}\n\n".encode())
            self.fanout.subscribe(subscriber, newest)
            if self.closing:  # shutdown began while this stream was starting
                subscriber.close()
            while True:
                woken = await subscriber.wait(self.settings.heartbeat)
                items = subscriber.take()
                if items:
                    await response.write("".join(f"id: {i.seq}\ndata: {i.text}\n\n" for i in items).encode())
                elif not woken:
                    await response.write(b": keep-alive\n\n")  # also how a dead peer is noticed
                if subscriber.signed_out:
                    await response.write(b": signed out\n\n")  # a reconnection gets 401
                    await response.write_eof()
                    break
                if subscriber.closing:
                    await response.write(f"retry: {RECONNECT_MS}\n: the gateway restarts, reconnect\n\n".encode())
                    await response.write_eof()
                    break
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away
        finally:
            self._release(subscriber)
        return response

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """``GET /ws``: each text message a JSON list of notifications."""
        socket = web.WebSocketResponse(
            heartbeat=self.settings.heartbeat, compress=False, max_msg_size=MAX_CLIENT_MESSAGE
        )
        try:
            self._check_origin(request)
            cursor = _cursor("after", request.query.get("after"))
            if not socket.can_prepare(request).ok:
                raise Refused(400, "GET /ws needs a WebSocket upgrade (use /stream for Server-Sent Events)")
            subscriber, newest = await self._admit(request, cursor or 0)
        except Refused as refusal:
            return refusal.response()
        incoming: asyncio.Task[None] | None = None
        try:
            await socket.prepare(request)
            incoming = asyncio.create_task(_read_until_closed(socket, subscriber))
            self.fanout.subscribe(subscriber, newest)
            if self.closing:
                subscriber.close()
            while not socket.closed:
                await subscriber.wait(3600.0)
                items = subscriber.take()
                if items and not socket.closed:
                    await socket.send_str("[" + ",".join(i.text for i in items) + "]")
                if subscriber.signed_out:
                    await socket.close(code=SIGNED_OUT, message=b"signed out")
                    break
                if subscriber.closing:
                    await socket.close(code=SERVICE_RESTART, message=b"service restart")
                    break
                if incoming.done():
                    break
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            if incoming is not None:
                incoming.cancel()
            self._release(subscriber)
        return socket

    async def healthz(self, _request: web.Request) -> web.Response:
        """What this process holds (each worker answers for itself)."""
        return web.json_response(
            {
                "server": "push",
                "pid": os.getpid(),
                "connections": self.seats.held(),  # taken before a stream starts, left after it ends
                **self.fanout.by_transport(),
                "users": self.fanout.users(),
                "max_connections": self.settings.max_connections,
                "max_per_user": self.settings.max_per_user,
                "listening": self.listener.connected,
                "wakeups": self.listener.wakeups,
                "reads": self.fanout.reads,
                "closing": self.closing,
            }
        )


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals (404, 405, ...) as JSON ``{"error": ...}``, like the gateway's."""
    try:
        return await handler(request)
    except web.HTTPException as refusal:
        if refusal.status < 400:
            raise
        served = "the gateway serves GET /stream, /ws and /healthz"
        return web.json_response(
            {"error": f"{refusal.reason}: {request.method} {request.path} ({served})"},
            status=refusal.status,
            headers={k: v for k, v in refusal.headers.items() if k.lower() == "allow"},
        )


async def _read_until_closed(socket: web.WebSocketResponse, subscriber: Subscriber) -> None:
    """Read (and ignore) what the client sends, so pings, pongs and its close are seen."""
    try:
        async for message in socket:
            if message.type == WSMsgType.ERROR:
                break
    finally:
        subscriber.wakeup.set()  # the sender loop notices the socket closed


def _with_cors(response: web.StreamResponse, origin: str | None, allowed: bool) -> web.StreamResponse:
    """Let an allowed page on another port (the app's) read the answer, with its cookie."""
    if origin is not None and allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"
    return response


def _host_name(host_and_port: str) -> str:
    """``host`` out of ``host[:port]`` (``[v6]`` kept whole), lower case."""
    host = host_and_port.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _cursor(name: str, text: str | None) -> int | None:
    """A cursor parameter, as the app reads it; Refused(400) if it is not one."""
    if text is None or text == "":
        return None
    if not re.fullmatch(r"[0-9]{1,18}", text):
        raise Refused(400, f"{name} must be a whole number >= 0, got {text!r}")
    value = int(text)
    if value > MAX_CURSOR:
        raise Refused(400, f"{name} must be at most {MAX_CURSOR}, got {text!r}")
    return value
