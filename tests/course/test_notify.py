"""course.notify against a live messaging app (and scripted SSE and WebSocket servers)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from course import notify
from course.notify import Backoff, Counters, Notification
from course.servers import ServerHandle, free_port

PASSWORD = "pw"
WAIT = 30.0  # generous: the machine is shared
_numbers = itertools.count()


@pytest.fixture(scope="module")
def app(start_messaging) -> Iterator[ServerHandle]:  # type: ignore[no-untyped-def]
    handle = start_messaging(
        "notify-app", SECRET_KEY="notify-tests", LONG_POLL_TIMEOUT="5", SSE_HEARTBEAT_SECONDS="2"
    )
    yield handle
    handle.stop()


async def new_user(app: ServerHandle, prefix: str) -> tuple[str, aiohttp.ClientSession]:
    name = f"{prefix}{next(_numbers)}"
    session = notify.client_session()
    await notify.register(session, app.url, name, PASSWORD)
    await notify.login(session, app.url, name, PASSWORD)
    return name, session


@pytest.fixture
async def pair(app: ServerHandle) -> AsyncIterator[tuple[aiohttp.ClientSession, str, aiohttp.ClientSession]]:
    """(sender session, reader's name, reader session), both logged in."""
    _, sender = await new_user(app, "sender")
    reader_name, reader = await new_user(app, "reader")
    yield sender, reader_name, reader
    await sender.close()
    await reader.close()


def _first_into(future: asyncio.Future[Notification]) -> Callable[[Notification], object]:
    """A callback that resolves ``future`` with the first notification it is given."""
    return lambda note: future.done() or future.set_result(note)


async def _stop(task: asyncio.Task) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- forms ------------------------------------------------------------------------------------


async def test_login_with_a_wrong_password_raises_login_failed(app, pair):
    _, name, _ = pair
    async with notify.client_session() as session:
        with pytest.raises(notify.LoginFailed, match="wrong username or password"):
            await notify.login(session, app.url, name, "not-the-password")


async def test_sign_in_all_gives_each_name_its_own_session_in_order(app, pair):
    sender, _, _ = pair
    names = []
    for prefix in ("quiet", "busy"):
        name, session = await new_user(app, prefix)
        await session.close()
        names.append(name)
    await notify.send_message(sender, app.url, names[1], "hello")

    sessions = await notify.sign_in_all(app.url, names, PASSWORD)
    try:
        seen = []
        for session in sessions:
            async with session.get(f"{app.url}/notifications?after=0") as response:
                assert response.status == 200
                seen.append([(n["name"], n["data"]) for n in await response.json()])
    finally:
        for session in sessions:
            await session.close()
    assert seen == [[], [("unread_message_count", 1)]]


async def test_sign_in_all_fails_whole_on_one_wrong_login(app, pair):
    _, name, _ = pair
    with pytest.raises(notify.LoginFailed):
        await notify.sign_in_all(app.url, [name, "nobody-by-this-name"], PASSWORD)


async def test_a_cookie_jar_that_refuses_ip_cookies_is_explained(app, pair):
    _, name, _ = pair
    async with aiohttp.ClientSession() as session:  # the default jar ignores 127.0.0.1
        with pytest.raises(notify.LoginFailed, match="client_session"):
            await notify.login(session, app.url, name, PASSWORD)


async def test_registering_a_taken_name_raises(app, pair):
    _, name, _ = pair
    async with notify.client_session() as session:
        with pytest.raises(notify.LoginFailed, match="taken"):
            await notify.register(session, app.url, name, PASSWORD)


async def test_send_message_reports_unknown_recipients_and_long_bodies(app, pair):
    sender, name, _ = pair
    with pytest.raises(notify.MessageRejected, match="404"):
        await notify.send_message(sender, app.url, "nobody-at-all", "hi")
    with pytest.raises(notify.MessageRejected, match="140"):
        await notify.send_message(sender, app.url, name, "x" * 141)


async def test_send_message_without_login_raises_not_logged_in(app, pair):
    _, name, _ = pair
    async with notify.client_session() as anonymous:
        with pytest.raises(notify.NotLoggedIn):
            await notify.send_message(anonymous, app.url, name, "hi")


# -- the three transports -----------------------------------------------------------------------

OPTIONS = {"poll": {"interval": 0.2}, "longpoll": {"wait": 5}, "sse": {"read_timeout": 10}}


@pytest.mark.parametrize("transport", ["poll", "longpoll", "sse"])
async def test_each_transport_delivers_new_notifications_in_cursor_order(app, pair, transport):
    sender, name, reader = pair
    received: list[Notification] = []
    reached_three = asyncio.Event()

    async def on_notification(note: Notification) -> None:  # an async callback works too
        received.append(note)
        if note.data == 3:
            reached_three.set()

    counters = Counters()
    task = asyncio.create_task(
        notify.follow(reader, app.url, on_notification, transport, counters=counters, **OPTIONS[transport])
    )
    try:
        for i in range(3):
            await notify.send_message(sender, app.url, name, f"message {i}")
        await asyncio.wait_for(reached_three.wait(), WAIT)
    finally:
        await _stop(task)
    assert all(isinstance(n, Notification) and n.name == "unread_message_count" for n in received)
    ids = [n.id for n in received]
    assert ids == sorted(set(ids)), "a notification was repeated or out of order"
    assert [n.data for n in received] == sorted(n.data for n in received)
    assert counters.delivered == len(received) and counters.cursor == ids[-1]
    assert counters.requests >= 1 and counters.errors == 0


async def test_the_transports_deliver_equal_notification_objects(app, pair):
    sender, name, reader = pair
    await notify.send_message(sender, app.url, name, "one")
    firsts: dict[str, Notification] = {}
    for transport in ("poll", "longpoll", "sse"):
        got: asyncio.Future[Notification] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(notify.follow(reader, app.url, _first_into(got), transport, **OPTIONS[transport]))
        try:
            firsts[transport] = await asyncio.wait_for(got, WAIT)
        finally:
            await _stop(task)
    assert firsts["poll"] == firsts["longpoll"] == firsts["sse"]
    assert firsts["poll"].data == 1


@pytest.mark.parametrize("transport", ["poll", "longpoll", "sse"])
async def test_without_a_login_every_transport_raises_not_logged_in(app, transport):
    async with notify.client_session() as anonymous:
        with pytest.raises(notify.NotLoggedIn):
            await asyncio.wait_for(notify.follow(anonymous, app.url, print, transport), WAIT)


async def test_unknown_transport_is_a_value_error(app):
    async with notify.client_session() as session:
        with pytest.raises(ValueError, match="transport must be one of"):
            await notify.follow(session, app.url, print, "carrier-pigeon")  # type: ignore[arg-type]


async def test_connection_errors_back_off_and_keep_trying():
    nowhere = f"http://127.0.0.1:{free_port()}"
    counters = Counters()
    async with notify.client_session() as session:
        task = asyncio.create_task(
            notify.poll(session, nowhere, print, counters=counters, backoff=Backoff(first=0.05, limit=0.2))
        )
        for _ in range(200):
            if counters.errors >= 3:
                break
            await asyncio.sleep(0.05)
        assert not task.done(), "the client gave up on a connection error"
        await _stop(task)
    assert counters.errors >= 3 and counters.delivered == 0


def test_backoff_grows_then_stays_at_its_limit():
    backoff = Backoff(first=1, factor=2, limit=5)
    assert [backoff.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


async def test_cancelling_clients_leaves_no_task_running(app, pair):
    _, _, reader = pair
    tasks = [
        asyncio.create_task(notify.follow(reader, app.url, print, t, **OPTIONS[t]))
        for t in ("poll", "longpoll", "sse")
    ]
    await asyncio.sleep(0.5)
    for task in tasks:
        await _stop(task)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}


# -- SSE reconnection, against a scripted server ------------------------------------------------


async def test_stream_reconnects_with_last_event_id_after_the_server_closes():
    seen_ids: list[str] = []

    async def events(request: web.Request) -> web.StreamResponse:
        seen_ids.append(request.headers.get("Last-Event-ID", ""))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        number = len(seen_ids)
        body = (
            f'retry: 50\n\n: a comment\n\nid: {number}\ndata: {{"id": {number}, "name": "n", '
            f'\ndata: "data": {number}, "timestamp": 1.5}}\n\n'
        )
        await response.write(body.encode())
        return response  # ends the stream: the client must come back

    server = web.Application()
    server.router.add_get("/notifications/stream", events)
    received: list[Notification] = []
    async with TestServer(server, host="127.0.0.1") as scripted, notify.client_session() as session:
        task = asyncio.create_task(notify.stream(session, str(scripted.make_url("")), received.append))
        for _ in range(400):
            if len(received) >= 3:
                break
            await asyncio.sleep(0.05)
        await _stop(task)
    assert [n.id for n in received[:3]] == [1, 2, 3]
    assert received[0] == Notification(1, "n", 1, 1.5)  # a multi-line data field
    assert seen_ids[:3] == ["0", "1", "2"]


async def test_a_busy_server_is_retried_after_its_retry_after():
    arrivals: list[float] = []

    async def wait(request: web.Request) -> web.Response:
        arrivals.append(asyncio.get_running_loop().time())
        if len(arrivals) == 1:
            return web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "1"})
        return web.json_response([{"id": 1, "name": "n", "data": 1, "timestamp": 2.0}])

    server = web.Application()
    server.router.add_get("/notifications/wait", wait)
    got = asyncio.get_running_loop().create_future()
    counters = Counters()
    async with TestServer(server, host="127.0.0.1") as scripted, notify.client_session() as session:
        task = asyncio.create_task(
            notify.long_poll(
                session,
                str(scripted.make_url("")),
                lambda n: got.done() or got.set_result(n),
                counters=counters,
                backoff=Backoff(first=0.01),
            )
        )
        note = await asyncio.wait_for(got, WAIT)
        await _stop(task)
    assert note == Notification(1, "n", 1, 2.0) and counters.errors == 1
    assert arrivals[1] - arrivals[0] >= 0.9  # waited as told, not the 0.01 s back-off


async def test_login_on_a_signed_in_session_switches_user(app, pair):
    sender, name, reader = pair
    await notify.login(sender, app.url, name, PASSWORD)  # sender's session becomes the reader
    await notify.send_message(reader, app.url, name, "to myself, in effect")
    async with sender.get(f"{app.url}/notifications") as response:
        assert [n["data"] for n in await response.json()] == [1]
    await notify.logout(sender, app.url)
    with pytest.raises(notify.NotLoggedIn):
        await notify.send_message(sender, app.url, name, "after logout")
    await notify.logout(sender, app.url)  # signed out already: nothing to do, no error
    async with sender.get(f"{app.url}/notifications") as response:
        assert response.status == 401


# -- a server that says "not now" (429) -------------------------------------------------------


@pytest.fixture(scope="module")
def strict_app(start_messaging) -> Iterator[ServerHandle]:  # type: ignore[no-untyped-def]
    handle = start_messaging(
        "notify-strict", LOGIN_FAILURES_PER_ACCOUNT="2", MAX_WAITING_PER_USER="1", LONG_POLL_TIMEOUT="5"
    )
    yield handle
    handle.stop()


async def test_a_throttled_login_says_so_instead_of_wrong_password(strict_app):
    name, session = await new_user(strict_app, "guessed")
    await session.close()
    async with notify.client_session() as guesser:
        for _ in range(2):
            with pytest.raises(notify.LoginFailed, match="wrong username or password"):
                await notify.login(guesser, strict_app.url, name, "not-the-password")
        with pytest.raises(notify.LoginThrottled, match="answered 429"):
            await notify.login(guesser, strict_app.url, name, PASSWORD)


@pytest.mark.parametrize("transport", ["longpoll", "sse"])
async def test_a_429_for_a_second_seat_is_retried_not_fatal(strict_app, transport):
    _, session = await new_user(strict_app, f"seated-{transport}-")
    try:
        counters = [Counters(), Counters()]
        followers = [
            asyncio.create_task(notify.follow(session, strict_app.url, lambda note: None, transport, counters=c))
            for c in counters
        ]
        for _ in range(200):  # one holds the user's only seat; the other is refused (429) and retries
            if sum(c.errors for c in counters) >= 1 or any(f.done() for f in followers):
                break
            await asyncio.sleep(0.05)
        stopped = [repr(f.exception()) for f in followers if f.done()]
        assert not stopped, f"a follower stopped on a 429: {stopped}"
        assert sum(c.errors for c in counters) >= 1
        for follower in followers:
            await _stop(follower)
    finally:
        await session.close()


# -- the WebSocket transport and the gateway's stream, against scripted servers ------------------


def note_json(number: int) -> dict:
    return {"id": number, "name": "unread_message_count", "data": number, "timestamp": 1.0 + number}


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(600):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never held")


async def test_websocket_resumes_from_its_cursor_after_a_service_restart_close(serve):
    afters: list[str] = []

    async def socket(request: web.Request) -> web.WebSocketResponse:
        afters.append(request.query["after"])
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if len(afters) == 1:
            await ws.send_json([note_json(1), note_json(2)])
            await ws.close(code=aiohttp.WSCloseCode.SERVICE_RESTART)  # 1012: a gateway redeploying
        else:
            await ws.send_json([note_json(2), note_json(3)])  # 2 again: must not be delivered twice
            await ws.send_json([])
            async for _ in ws:  # hold it open until the client goes
                pass
        return ws

    server = web.Application()
    server.router.add_get("/ws", socket)
    gateway = await serve(server)
    received: list[Notification] = []
    counters = Counters()
    async with notify.client_session() as session:
        task = asyncio.create_task(
            notify.follow(
                session, "http://app.invalid", received.append, "websocket", push_url=gateway + "/", counters=counters
            )
        )
        await until(lambda: len(received) >= 3)
        await _stop(task)
    assert [n.id for n in received] == [1, 2, 3]
    assert received[0] == Notification(1, "unread_message_count", 1, 2.0)
    assert afters == ["0", "2"]
    assert counters.requests == 2 and counters.errors == 0 and counters.cursor == 3


async def test_websocket_backs_off_after_an_abnormal_close_and_a_dead_gateway(serve):
    afters: list[str] = []

    async def socket(request: web.Request) -> web.WebSocketResponse:
        afters.append(request.query["after"])
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json([note_json(len(afters))])
        await ws.close(code=aiohttp.WSCloseCode.INTERNAL_ERROR)  # 1011: counted as an error
        return ws

    server = web.Application()
    server.router.add_get("/ws", socket)
    gateway = await serve(server)
    received: list[Notification] = []
    counters = Counters()
    async with notify.client_session() as session:
        task = asyncio.create_task(
            notify.websocket(
                session, "", received.append, push_url=gateway, counters=counters, backoff=Backoff(0.01, limit=0.05)
            )
        )
        await until(lambda: len(received) >= 3)
        assert not task.done()
        await _stop(task)
    assert afters[:3] == ["0", "1", "2"]
    assert counters.errors >= 2


@pytest.mark.parametrize(
    ("status", "expected"),
    [(401, notify.NotLoggedIn), (403, notify.NotifyError), (404, notify.NotifyError)],
)
async def test_a_refused_handshake_raises_like_the_http_transports(serve, status, expected):
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": "no"}, status=status)

    server = web.Application()
    server.router.add_get("/ws", refuse)
    gateway = await serve(server)
    async with notify.client_session() as session:
        with pytest.raises(expected):
            await asyncio.wait_for(notify.websocket(session, "", print, push_url=gateway), WAIT)


async def test_a_busy_gateway_is_retried_after_its_retry_after(serve):
    tries: list[int] = []

    async def socket(request: web.Request) -> web.StreamResponse:
        tries.append(1)
        if len(tries) == 1:
            return web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "1"})
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json([note_json(1)])
        async for _ in ws:
            pass
        return ws

    server = web.Application()
    server.router.add_get("/ws", socket)
    gateway = await serve(server)
    got: asyncio.Future[Notification] = asyncio.get_running_loop().create_future()
    counters = Counters()
    async with notify.client_session() as session:
        task = asyncio.create_task(
            notify.websocket(
                session, "", _first_into(got), push_url=gateway, counters=counters, backoff=Backoff(first=0.01)
            )
        )
        assert (await asyncio.wait_for(got, WAIT)).id == 1
        await _stop(task)
    assert counters.errors == 1 and len(tries) == 2


@pytest.mark.parametrize("junk", ["not json", '{"id": 1}', "[1, 2]"])
async def test_a_message_that_is_not_a_list_of_notifications_ends_the_client(serve, junk):
    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(junk)
        async for _ in ws:
            pass
        return ws

    server = web.Application()
    server.router.add_get("/ws", socket)
    gateway = await serve(server)
    async with notify.client_session() as session:
        with pytest.raises(notify.NotifyError, match="not a JSON list of notifications"):
            await asyncio.wait_for(notify.websocket(session, "", print, push_url=gateway), WAIT)


async def test_the_session_cookie_of_the_app_reaches_the_gateway_on_another_port(serve):
    cookies: list[str | None] = []

    async def sign_in(request: web.Request) -> web.Response:
        response = web.Response(text="signed in")
        response.set_cookie("session", "signed-value", httponly=True, samesite="Lax")
        return response

    async def socket(request: web.Request) -> web.StreamResponse:
        cookies.append(request.cookies.get("session"))
        if request.cookies.get("session") != "signed-value":
            return web.json_response({"error": "not logged in"}, status=401)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json([note_json(1)])
        async for _ in ws:
            pass
        return ws

    app_server, gateway_server = web.Application(), web.Application()
    app_server.router.add_get("/login", sign_in)
    gateway_server.router.add_get("/ws", socket)
    app_url, gateway = await serve(app_server), await serve(gateway_server)
    got: asyncio.Future[Notification] = asyncio.get_running_loop().create_future()
    async with notify.client_session() as session:
        async with session.get(app_url + "/login") as answer:
            assert answer.status == 200
        task = asyncio.create_task(notify.follow(session, app_url, _first_into(got), "websocket", push_url=gateway))
        assert (await asyncio.wait_for(got, WAIT)).id == 1
        await _stop(task)
    assert cookies == ["signed-value"]


async def test_stream_with_a_push_url_reads_the_gateways_stream(serve):
    paths: list[str] = []

    async def events(request: web.Request) -> web.StreamResponse:
        paths.append(request.path)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'retry: 50\n\nid: 1\ndata: {"id": 1, "name": "n", "data": 1, "timestamp": 1.5}\n\n')
        return response

    server = web.Application()
    server.router.add_get("/stream", events)
    server.router.add_get("/notifications/stream", events)
    gateway = await serve(server)
    got: asyncio.Future[Notification] = asyncio.get_running_loop().create_future()
    async with notify.client_session() as session:
        task = asyncio.create_task(
            notify.follow(session, "http://app.invalid", _first_into(got), "sse", push_url=gateway)
        )
        assert (await asyncio.wait_for(got, WAIT)) == Notification(1, "n", 1, 1.5)
        await _stop(task)
    assert paths[0] == "/stream"


@pytest.mark.parametrize("transport", ["poll", "longpoll"])
async def test_the_polling_transports_ignore_a_push_url_and_ask_the_app(app, pair, transport):
    sender, name, reader = pair
    await notify.send_message(sender, app.url, name, "one")
    got: asyncio.Future[Notification] = asyncio.get_running_loop().create_future()
    nowhere = f"http://127.0.0.1:{free_port()}"
    options = {**OPTIONS[transport], "push_url": nowhere}
    task = asyncio.create_task(notify.follow(reader, app.url, _first_into(got), transport, **options))
    try:
        assert (await asyncio.wait_for(got, WAIT)).data == 1
    finally:
        await _stop(task)


async def test_websocket_without_a_push_url_is_a_value_error():
    async with notify.client_session() as session:
        with pytest.raises(ValueError, match="push_url"):
            await notify.follow(session, "http://127.0.0.1:1", print, "websocket")
        with pytest.raises(ValueError, match="push_url"):
            await notify.websocket(session, "", print, push_url="127.0.0.1:8001")
