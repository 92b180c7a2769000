"""Lesson 10 — push to thousands: exercises.

- ``user_fanout`` (async): ``UserFanout``, the heart of a push gateway: per-user
  sets of connection queues, and a ``publish`` that hands a notification to
  every connection of its user at once, where a connection too slow to keep
  up is told to reconnect instead of holding the others back. The checker
  runs connections as tasks (one of them never reads) and judges what each
  queue received and how long each publish took.
- ``resume_ws`` (async): a WebSocket client that collects notifications from
  the push gateway's ``/ws?after=<cursor>`` and, when the gateway restarts
  (close 1012), connects again from the last id it holds. The checker runs
  a real gateway (``server.push``) on a PostgreSQL server of its own, writes
  notifications before, during and after a restart, and compares what the
  client returned with what the database holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import tempfile
import threading
import time
from typing import Any

import aiohttp

from course.checks import Exercise, Incorrect, Mistake, source_as
from course.exercises.lesson06 import run_on_own_loop

__all__ = ["resume_ws", "user_fanout"]


# -- Exercise: per-user fan-out ------------------------------------------------------------------


class _UserFanout:
    """Each user's open connections, as queues; a notification goes to all of them at once."""

    def __init__(self, backlog: int = 8) -> None:
        self.backlog = backlog  # items a connection may have waiting before it counts as too slow
        self.queues: dict[int, set[asyncio.Queue[Any]]] = {}

    def connect(self, user_id: int) -> asyncio.Queue[Any]:
        """A new connection of ``user_id``: the queue its handler will read."""
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.backlog)
        self.queues.setdefault(user_id, set()).add(queue)
        return queue

    def disconnect(self, user_id: int, queue: asyncio.Queue[Any]) -> None:
        """The connection went away: forget its queue (and the user, when it was the last)."""
        mine = self.queues.get(user_id)
        if mine is not None:
            mine.discard(queue)
            if len(mine) == 0:
                del self.queues[user_id]

    async def publish(self, user_id: int, item: Any) -> int:
        """Hand ``item`` to every connection of ``user_id`` without waiting for any of them;
        one whose queue is full is emptied, sent ``None`` ("reconnect") and forgotten.
        Returns how many connections got the item."""
        handed = 0
        for queue in list(self.queues.get(user_id, ())):
            if queue.full():
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)  # the handler closes; its client resumes from its cursor
                self.disconnect(user_id, queue)
                continue
            queue.put_nowait(item)
            handed += 1
        return handed


FANOUT_BACKLOG, FANOUT_ITEMS = 4, 10
#: How long one publish may take: a publish that waits for a slow connection takes far longer.
PUBLISH_BOUND = 1.0


async def _drive_fanout(answer: Any) -> None:
    try:
        fanout = answer(backlog=FANOUT_BACKLOG)
    except TypeError as exc:
        raise Incorrect(f"UserFanout(backlog={FANOUT_BACKLOG}) failed: {exc}; keep the backlog parameter.") from None
    queues: dict[str, Any] = {}
    for name, user in (("a", 1), ("b", 1), ("slow", 1), ("c", 2)):
        queue = fanout.connect(user)
        if asyncio.iscoroutine(queue):
            queue = await queue
        Incorrect.unless(
            isinstance(queue, asyncio.Queue),
            f"connect({user}) returned {queue!r}, not an asyncio.Queue: give each connection a queue of its own.",
        )
        queues[name] = queue
    Incorrect.unless(
        len({id(q) for q in queues.values()}) == 4,
        "connect() returned the same queue for two connections: each connection needs a queue of its own.",
    )
    received: dict[str, list[Any]] = {"a": [], "b": [], "c": []}

    async def handler(name: str) -> None:  # a connection that keeps up: reads its queue as items come
        while True:
            item = await queues[name].get()
            received[name].append(item)
            if item is None:
                return

    readers = [asyncio.create_task(handler(name)) for name in received]
    returns: list[Any] = []
    try:
        for n in range(FANOUT_ITEMS):
            item = {"user": 1, "n": n}
            started = time.monotonic()
            try:
                returned = await asyncio.wait_for(fanout.publish(1, item), PUBLISH_BOUND * 2)
            except TimeoutError:
                raise Incorrect(
                    f"publish(1, item {n}) did not return within {PUBLISH_BOUND * 2:g} s: user 1 has a connection "
                    f"that reads nothing (its queue is full after {FANOUT_BACKLOG} items), and your publish waited "
                    "for room in it, so user 1's other connections got nothing meanwhile. Never await a slow "
                    "connection: put_nowait, and tell one whose queue is full to reconnect."
                ) from None
            took = time.monotonic() - started
            Incorrect.unless(
                took <= PUBLISH_BOUND,
                f"publish(1, item {n}) took {took:.2f} s: a publish waited for the connection that reads nothing. "
                "Hand the item to each queue without waiting (put_nowait).",
            )
            returns.append(returned)
            await asyncio.sleep(0.01)  # the connections that keep up read it
        await fanout.publish(2, {"user": 2, "n": 0})
        await asyncio.sleep(0.05)
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

    ones = [{"user": 1, "n": n} for n in range(FANOUT_ITEMS)]
    for name in ("a", "b"):
        got = [item for item in received[name] if item is not None]
        leaked = [item for item in got if item.get("user") != 1]
        Incorrect.unless(
            not leaked,
            f"user 1's connection {name} received {leaked[0] if leaked else ''}, a notification of user 2: "
            "publish(user_id, ...) must reach that user's connections and nobody else's.",
        )
        Incorrect.unless(
            got == ones,
            f"user 1's connection {name} received items {[i['n'] for i in got]}, not 0 to {FANOUT_ITEMS - 1} in order: "
            "every connection of the user must get every item (a slow neighbour must not cost it any).",
        )
    user2 = [item for item in received["c"] if item is not None]
    Incorrect.unless(
        user2 == [{"user": 2, "n": 0}],
        f"user 2's connection received {[(i['user'], i['n']) for i in user2]}, not only user 2's one item "
        "(user, n) = (2, 0): publish(user_id, ...) must reach that user's connections and nobody else's.",
    )
    slow: list[Any] = []
    while not queues["slow"].empty():
        slow.append(queues["slow"].get_nowait())
    Incorrect.unless(
        bool(slow) and slow[-1] is None,
        f"the connection that reads nothing holds {[None if i is None else i['n'] for i in slow]} and was never "
        "told to reconnect: when its queue is full, empty it and put None there (its handler then closes and "
        "its client resumes from its cursor), or it waits forever for items it will never get.",
    )
    Incorrect.unless(
        all(isinstance(r, int) and not isinstance(r, bool) for r in returns),
        f"publish() returned {returns[0]!r}: return how many connections got the item (a whole number).",
    )
    Incorrect.unless(
        returns[FANOUT_BACKLOG - 1] == 3 and returns[-1] == 2,
        f"publish() returned {returns}: item {FANOUT_BACKLOG - 1} reached 3 connections and the last item 2 "
        "(the slow one was dropped by then); count the connections that got each item.",
    )
    again = await fanout.publish(1, {"user": 1, "n": FANOUT_ITEMS})
    Incorrect.unless(
        queues["slow"].empty(),
        "the connection told to reconnect still received an item afterwards: forget its queue when you drop it.",
    )
    for name in ("a", "b", "c"):
        fanout.disconnect(1 if name != "c" else 2, queues[name])
    after = await fanout.publish(1, {"user": 1, "n": FANOUT_ITEMS + 1})
    Incorrect.unless(
        again == 2 and after == 0 and queues["a"].qsize() == 1,
        f"after user 1's connections a and b were disconnected, publish(1, ...) returned {after}, not 0: "
        "disconnect() must forget the connection's queue.",
    )


def _check_user_fanout(answer: Any) -> None:
    run_on_own_loop(lambda: _drive_fanout(answer))


class _WaitsForSlow(_UserFanout):
    """The mistake: ``await queue.put``: a full queue holds up every connection after it."""

    async def publish(self, user_id: int, item: Any) -> int:
        for queue in list(self.queues.get(user_id, ())):
            await queue.put(item)
        return len(self.queues.get(user_id, ()))


class _DropsSilently(_UserFanout):
    """The mistake: a full queue is forgotten, but its connection is never told."""

    async def publish(self, user_id: int, item: Any) -> int:
        handed = 0
        for queue in list(self.queues.get(user_id, ())):
            try:
                queue.put_nowait(item)
                handed += 1
            except asyncio.QueueFull:
                self.disconnect(user_id, queue)
        return handed


class _EveryUser(_UserFanout):
    """The mistake: the item goes to every connection of every user."""

    async def publish(self, user_id: int, item: Any) -> int:
        handed = 0
        for user, queues in list(self.queues.items()):
            for queue in list(queues):
                if queue.full():
                    while not queue.empty():
                        queue.get_nowait()
                    queue.put_nowait(None)
                    self.disconnect(user, queue)
                else:
                    queue.put_nowait(item)
                    handed += 1
        return handed


user_fanout = Exercise(
    "user_fanout",
    checker=_check_user_fanout,
    hint_text=(
        "Keep a dict from user id to a set of queues; connect() makes an asyncio.Queue(maxsize=backlog) and "
        "adds it, disconnect() removes it (and the user's entry when the set is empty). In publish(), loop "
        "over a copy of the user's set: if a queue is full, empty it with get_nowait(), put_nowait(None) "
        "and disconnect it; otherwise put_nowait(item) and count it. Never `await queue.put(...)` there."
    ),
    answer=_UserFanout,
    solution_code=source_as(_UserFanout, "UserFanout"),
    wrong_answers=(
        Mistake(_WaitsForSlow, "waited"),
        Mistake(_DropsSilently, "never told to reconnect"),
        Mistake(_EveryUser, "nobody else's"),
    ),
    success="every connection that keeps up got every item at once, and the slow one was told to reconnect.",
    timeout=20.0,
)


# -- Exercise: a WebSocket client that resumes ---------------------------------------------------


async def _resume_ws(session: aiohttp.ClientSession, push_url: str, after: int, want: int) -> list[dict[str, Any]]:
    """Collect ``want`` notifications past ``after`` from ``push_url``'s WebSocket, in order."""
    held: list[dict[str, Any]] = []
    cursor = after
    while len(held) < want:
        try:
            async with session.ws_connect(f"{push_url}/ws?after={cursor}") as socket:
                async for message in socket:
                    if message.type is not aiohttp.WSMsgType.TEXT:
                        continue
                    for note in json.loads(message.data):
                        if note["id"] > cursor:  # never keep one twice
                            held.append(note)
                            cursor = note["id"]
                    if len(held) >= want:
                        break
        except (aiohttp.ClientConnectionError, aiohttp.WSServerHandshakeError):
            pass  # the gateway is restarting: try again shortly
        if len(held) < want:
            await asyncio.sleep(0.2)
    return held


_CHECKER_DB: list[Any] = []  # [PostgreSQLServer, database URL] of this process's checks
_CHECKER_DB_LOCK = threading.Lock()
SECRET_KEY = secrets.token_hex(32)  # the checkers' gateways read cookies signed with it


def _checker_database() -> str:
    """A PostgreSQL database with the app's tables (one per process, made on first use)."""
    from course.postgres_server import start_postgresql
    from course.servers import FAST_HASH, start_messaging_app

    with _CHECKER_DB_LOCK:
        if not _CHECKER_DB:
            server = start_postgresql()
            url = server.create_database("lesson10_checks")
            with tempfile.TemporaryDirectory(prefix="lesson10-check-") as folder:
                app = start_messaging_app(  # it creates the tables; then it is not needed
                    port=None,
                    database_url=url,
                    folder=folder,
                    config={"SECRET_KEY": SECRET_KEY, "PASSWORD_HASH_METHOD": FAST_HASH},
                    reuse=False,
                    timeout=120,
                )
                app.stop()
            _CHECKER_DB[:] = [server, url]
        return str(_CHECKER_DB[1])


class _Gateway:
    """A push gateway served on this event loop, on a fixed port; ``opened`` counts /ws handshakes."""

    def __init__(self, database_url: str, port: int) -> None:
        from server.push.settings import Settings

        self.settings = Settings(database_url=database_url, secret_key=SECRET_KEY, port=port, recheck=1.0)
        self.opened = 0
        self.runner: Any = None
        self.gateway: Any = None

    async def start(self) -> None:
        from aiohttp import web

        from server.push.app import Gateway

        self.gateway = Gateway(self.settings)
        app = self.gateway.make_app()

        @web.middleware
        async def count(request: web.Request, handler: Any) -> Any:
            if request.path == "/ws":
                self.opened += 1
            return await handler(request)

        app.middlewares.append(count)
        self.runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.settings.port, reuse_address=True).start()

    def held(self) -> int:
        return int(self.gateway.seats.held()) if self.gateway is not None else 0

    async def restart_begins(self) -> None:
        """What SIGTERM does: every WebSocket is closed with 1012, then the server goes."""
        await self.gateway.close_streams(1.0)
        await self.runner.cleanup()
        self.gateway = None


RESUME_AFTER = 2  # the cursor the client is given: notes 1 and 2 are not its business
BEFORE, DURING_RUN, WHILE_DOWN, AFTER_RESTART = 5, 3, 2, 3
RESUME_WANT = BEFORE - RESUME_AFTER + DURING_RUN + WHILE_DOWN + AFTER_RESTART


async def _drive_resume(answer: Any) -> None:
    from course.benchmarks.push import create_users
    from course.lesson10_push import stored_notes, write_notes
    from course.servers import free_port

    database_url = await asyncio.to_thread(_checker_database)
    (user,) = await asyncio.to_thread(create_users, database_url, 1, SECRET_KEY)
    user_id = user.user_id
    await write_notes(database_url, user_id, BEFORE)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first, second = _Gateway(database_url, port), _Gateway(database_url, port)
    await first.start()
    headers = {"Cookie": f"session={user.cookie}"}
    session = aiohttp.ClientSession(headers=headers)
    client = asyncio.ensure_future(answer(session, url, RESUME_AFTER, RESUME_WANT))
    try:
        for _ in range(60):  # wait for the client's socket (3 s at most)
            if first.held() or client.done():
                break
            await asyncio.sleep(0.05)
        _raise_if_failed(client, "before the gateway restarted")
        Incorrect.unless(
            first.held() > 0,
            f"your client opened no WebSocket at {url}/ws within 3 s (the gateway saw {first.opened} handshakes): "
            "connect with session.ws_connect(f'{push_url}/ws?after={after}').",
        )
        await write_notes(database_url, user_id, DURING_RUN)
        await asyncio.sleep(0.4)  # the client reads them
        await first.restart_begins()  # close 1012 to every socket
        await asyncio.sleep(0.1)
        _raise_if_failed(client, "while the gateway was restarting (it refused connections for about a second)")
        await write_notes(database_url, user_id, WHILE_DOWN)
        await asyncio.sleep(0.6)
        _raise_if_failed(client, "while the gateway was restarting (it refused connections for about a second)")
        await second.start()
        await asyncio.sleep(0.2)
        await write_notes(database_url, user_id, AFTER_RESTART)
        done, _ = await asyncio.wait({client}, timeout=6.0)
        if client not in done:
            raise Incorrect(
                f"your client had not returned 6 s after the last notification was written (it was asked for "
                f"{RESUME_WANT}); the restarted gateway saw {second.opened} WebSocket handshakes. After the "
                "close (code 1012, service restart), connect again with ?after= the id of the last "
                "notification you hold, retrying while the gateway refuses connections."
            )
        _raise_if_failed(client, "")
        got = client.result()
    finally:
        client.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait({client}, timeout=1.0)
        await session.close()
        if second.runner is not None:
            await second.runner.cleanup()
        if first.runner is not None and first.gateway is not None:
            await first.runner.cleanup()
    expected = await stored_notes(database_url, user_id, RESUME_AFTER)
    _judge_collected(got, expected, second.opened)


def _raise_if_failed(client: asyncio.Future[Any], when: str) -> None:
    if not client.done() or client.cancelled():
        return
    error = client.exception()
    if error is not None:
        raise Incorrect(
            f"your client raised {type(error).__name__}: {error}{' ' + when if when else ''}. "
            "A gateway that restarts refuses connections for a moment: catch aiohttp.ClientConnectionError, "
            "pause a little, and connect again."
        )


def _judge_collected(got: Any, expected: list[dict[str, Any]], reopened: int) -> None:
    Incorrect.unless(isinstance(got, list), f"your client returned {got!r}, not a list of notifications.")
    Incorrect.unless(
        all(isinstance(note, dict) and isinstance(note.get("id"), int) for note in got),
        f"your client returned {got[:2]!r}...: return the notification objects as the gateway sent them "
        "(dicts with an 'id').",
    )
    ids = [note["id"] for note in got]
    wanted = [note["id"] for note in expected]
    early = [i for i in ids if i <= RESUME_AFTER]
    if early:
        raise Incorrect(
            f"your client returned id {early[0]}, which is not after the cursor {RESUME_AFTER} it was given: "
            "open /ws?after=<cursor>."
        )
    twice = sorted({i for i in ids if ids.count(i) > 1})
    Incorrect.unless(
        not twice,
        f"id {twice[0] if twice else ''} arrived twice: when you connect again, ask for ?after= the id of the "
        "last notification you hold, not the cursor you started from.",
    )
    missing = [i for i in wanted if i not in ids]
    if missing and len(ids) < len(wanted) and reopened == 0:
        raise Incorrect(
            f"your client returned {len(ids)} notifications (ids {ids}) of the {len(wanted)} asked for: it stopped "
            "when the gateway closed the socket (1012, service restart) and never connected again. Loop until "
            "you hold `want` notifications, connecting again after every close."
        )
    Incorrect.unless(not missing, f"ids {missing} are in the database but not in what your client returned.")
    Incorrect.unless(ids == wanted, f"your client returned ids {ids}, not {wanted} in the order they were written.")
    for note, stored in zip(got, expected, strict=True):
        Incorrect.unless(
            note.get("name") == stored["name"] and note.get("data") == stored["data"],
            f"notification {note['id']} came back as {note!r}; the database holds name {stored['name']!r} and "
            f"data {stored['data']!r}. Return the objects as they came.",
        )


def _check_resume_ws(answer: Any) -> None:
    run_on_own_loop(lambda: _drive_resume(answer))


async def _gives_up_on_close(
    session: aiohttp.ClientSession, push_url: str, after: int, want: int
) -> list[dict[str, Any]]:
    """The mistake: one connection; when the gateway closes it, the client returns what it has."""
    held: list[dict[str, Any]] = []
    async with session.ws_connect(f"{push_url}/ws?after={after}") as socket:
        async for message in socket:
            held.extend(json.loads(message.data))
            if len(held) >= want:
                break
    return held


async def _resumes_from_the_start(
    session: aiohttp.ClientSession, push_url: str, after: int, want: int
) -> list[dict[str, Any]]:
    """The mistake: it reconnects, but with the cursor it was given, so it gets everything again."""
    held: list[dict[str, Any]] = []
    while len(held) < want:
        try:
            async with session.ws_connect(f"{push_url}/ws?after={after}") as socket:
                async for message in socket:
                    held.extend(json.loads(message.data))
                    if len(held) >= want:
                        break
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.2)
    return held


async def _never_retries(session: aiohttp.ClientSession, push_url: str, after: int, want: int) -> list[dict[str, Any]]:
    """The mistake: it reconnects from the right cursor at once, and a refused connection ends it."""
    held: list[dict[str, Any]] = []
    cursor = after
    while len(held) < want:
        async with session.ws_connect(f"{push_url}/ws?after={cursor}") as socket:
            async for message in socket:
                held.extend(json.loads(message.data))
                cursor = held[-1]["id"] if held else cursor
                if len(held) >= want:
                    break
    return held


resume_ws = Exercise(
    "resume_ws",
    checker=_check_resume_ws,
    hint_text=(
        "Keep a list and a cursor (start: after). Loop while you hold fewer than want: open "
        "session.ws_connect(f'{push_url}/ws?after={cursor}'), and for every TEXT message json.loads it (a list) "
        "and append each notification whose id is past the cursor, moving the cursor to it. When the socket "
        "ends (the gateway restarts: 1012) or the connection is refused (aiohttp.ClientConnectionError), "
        "sleep a moment and go round again."
    ),
    answer=_resume_ws,
    solution_code=source_as(_resume_ws, "resume_ws"),
    wrong_answers=(
        Mistake(_gives_up_on_close, "never connected again"),
        Mistake(_resumes_from_the_start, "arrived twice"),
        Mistake(_never_retries, "raised ClientConnectorError"),
    ),
    success="every notification once, in order, across the gateway's restart: the database agrees.",
    timeout=45.0,
)
