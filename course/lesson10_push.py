"""Lesson 10: the messaging app and the push gateway on PostgreSQL, started from a notebook.

``start_push_stack()`` starts a throwaway PostgreSQL server, the Flask app on
it under gunicorn (``python -m server.messaging --workers 2``: two processes
that each LISTEN for the others' NOTIFY) and the push gateway
(``python -m server.push --workers 2``); ``stack.stop()`` stops them all (and
the kernel's exit does too). ``stack.threaded_app(...)`` adds one more app
process on the same database, served by waitress with few threads: lesson
03's app, to find its ceiling and to run without LISTEN.

``StreamFleet`` holds many streams to the gateway from the notebook's own
event loop, half Server-Sent Events and half WebSockets, and records how long
each marked notification took to arrive (``write_notifications`` writes them
as the app does, each with its time of writing; ``nearest_rank`` is the
benchmark's percentile, re-exported here).

    stack = start_push_stack()
    users = stack.add_users(500)
    fleet = StreamFleet(stack.gateway.url, users)
    await fleet.grow(1000)
    ...
    await fleet.close()
    stack.stop()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import secrets
import signal
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import psycopg

from course.benchmarks.push import create_users, nearest_rank, resident_bytes
from course.postgres_server import PostgreSQLServer, start_postgresql
from course.servers import FAST_HASH, ServerHandle, ServerStartError, free_port, json_identity, start_server
from server.cli import raise_open_file_limit
from server.messaging.hub import NOTIFY_CHANNEL, notify_payload
from server.push.store import conninfo

__all__ = [
    "MARKER",
    "HeldStreams",
    "PushStack",
    "SimUser",
    "StreamFleet",
    "nearest_rank",
    "open_flask_streams",
    "sse_ids",
    "start_push_stack",
    "stored_notes",
    "write_notes",
    "write_notifications",
]

#: How many streams the fleet opens at once while it grows.
OPEN_AT_ONCE = 100
#: The name of the notifications ``write_notifications`` writes (the fleet times only these).
MARKER = "lesson10_note"


async def write_notifications(database_url: str, user_ids: Sequence[int], rate: float, seconds: float) -> int:
    """``rate`` notifications a second to the users in turn, for ``seconds``; returns how many.

    Each is what the app's writer does, in one transaction: the user's next
    cursor, the notification row (named ``MARKER``, its data the time it was
    written), and the ``NOTIFY`` that PostgreSQL delivers on commit.
    """
    count = int(rate * seconds)
    start = time.monotonic()
    async with await psycopg.AsyncConnection.connect(conninfo(database_url)) as connection:
        for n in range(count):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await _write_notification(connection, user_ids[n % len(user_ids)], MARKER, {"sent": time.time(), "n": n})
    return count



@dataclass(frozen=True)
class SimUser:
    """A user made straight in the database, with the session cookie the app would sign at login."""

    user_id: int
    cookie: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Cookie": f"session={self.cookie}"}


@dataclass
class PushStack:
    """PostgreSQL, the app (gunicorn) and the gateway, all started here."""

    postgres: PostgreSQLServer
    database_url: str
    secret_key: str
    folder: Path
    app: ServerHandle
    gateway: ServerHandle
    gateway_workers: int
    gateway_args: tuple[str, ...] = ()
    extra: list[ServerHandle] = field(default_factory=list)

    def app_env(self, **config: str) -> dict[str, str]:
        """The environment an app process of this stack gets (``config`` wins)."""
        return {
            "DATABASE_URL": self.database_url,
            "SECRET_KEY": self.secret_key,
            "PASSWORD_HASH_METHOD": FAST_HASH,
            "MESSAGING_INSTANCE_PATH": str(self.folder),
            "PUSH_URL": self.gateway.url,
            **config,
        }

    def threaded_app(self, threads: int, **config: str) -> ServerHandle:
        """One more app process on the same database: waitress with ``threads`` threads
        (``MAX_WAITING_REQUESTS`` is then ``threads`` minus a reserve, as lesson 03 found)."""
        handle = _start_threaded(self.app_env(**config), threads)
        self.extra.append(handle)
        return handle

    def add_users(self, count: int) -> list[SimUser]:
        """``count`` new users, each with a signed session cookie (no logins: they are cheap)."""
        return [SimUser(user.user_id, user.cookie) for user in create_users(self.database_url, count, self.secret_key)]

    def user_id(self, username: str) -> int:
        """The id of the user called ``username`` (LookupError if there is none)."""
        with psycopg.connect(conninfo(self.database_url)) as connection:
            row = connection.execute('SELECT id FROM "user" WHERE username = %s', (username,)).fetchone()
        if row is None:
            raise LookupError(f"no user called {username!r}")
        return int(row[0])

    def gateway_memory(self) -> int:
        """Resident bytes of the gateway's processes (its supervisor and workers)."""
        assert self.gateway.process is not None
        return resident_bytes(psutil.Process(self.gateway.process.pid))

    def gateway_health(self) -> list[dict[str, Any]]:
        """``/healthz`` of each gateway worker (asked until every pid answered, at most 40 times)."""
        seen = _worker_health(self.gateway.url, self.gateway_workers, tries=40)
        return [seen[pid] for pid in sorted(seen)]

    def restart_gateway(self, workers: int | None = None) -> None:
        """SIGTERM the gateway (it closes every WebSocket with 1012 and ends every event
        stream with a short ``retry:``), wait for it to exit, and start it again on its
        port, with ``workers`` processes (default: as many as before)."""
        self.gateway.stop(30.0)
        self.gateway_workers = workers or self.gateway_workers
        self.gateway = _start_gateway(
            self.database_url, self.secret_key, self.gateway.port, self.gateway_workers, self.gateway_args
        )

    def stop(self) -> None:
        """Stop the gateway and every app process (at once), then PostgreSQL (its data is deleted)."""
        handles = [self.gateway, *self.extra, self.app]
        if self.app.process is not None and self.app.process.poll() is None:
            # gunicorn's quick shutdown (SIGTERM waits out its graceful timeout): the lesson is over.
            self.app.process.send_signal(signal.SIGINT)
        with concurrent.futures.ThreadPoolExecutor(len(handles)) as pool:
            list(pool.map(lambda handle: handle.stop(30.0), handles))
        self.postgres.stop()

    @property
    def threaded(self) -> ServerHandle:
        """The first threaded app process started with the stack or by ``threaded_app``."""
        if not self.extra:
            raise LookupError("no threaded app: pass threaded_threads= to start_push_stack, or call threaded_app()")
        return self.extra[0]

    @property
    def running(self) -> bool:
        return all(handle.running for handle in [self.gateway, *self.extra, self.app])


def start_push_stack(
    app_workers: int = 2,
    gateway_workers: int = 2,
    *,
    threaded_threads: int | None = None,
    threaded_config: Mapping[str, str] | None = None,
    gateway_args: Sequence[str] = (),
    **config: str,
) -> PushStack:
    """PostgreSQL, then the app with ``app_workers`` gunicorn processes (it creates the tables),
    then the gateway with ``gateway_workers`` processes; ``config``: the app's settings.

    ``threaded_threads``: also start a waitress app process with that many threads
    (``stack.threaded``), with ``threaded_config`` on top of the app's settings.
    ``gateway_args``: more options of ``python -m server.push`` (e.g. ``("--recheck", "60")``)."""
    postgres = start_postgresql()
    try:
        database_url = postgres.create_database("lesson10")
        secret_key = secrets.token_hex(32)
        folder = Path(tempfile.mkdtemp(prefix="lesson10-"))
        gateway_port = free_port()  # known now: the app's pages point there (PUSH_URL)
        env = {
            "DATABASE_URL": database_url,
            "SECRET_KEY": secret_key,
            "PASSWORD_HASH_METHOD": FAST_HASH,
            "MESSAGING_INSTANCE_PATH": str(folder),
            "PUSH_URL": f"http://127.0.0.1:{gateway_port}",
            "MAX_WAITING_PER_USER": "0",
            **config,
        }
        app = start_server(
            "messaging app",
            "server.messaging",
            ["--workers", str(app_workers)],
            port=None,
            identify=json_identity("/healthz", "messaging"),
            env=env,
            reuse=False,
            timeout=120,
        )
        # The gateway and the threaded app need only the tables: start them side by side.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            gateway_start = pool.submit(
                _start_gateway, database_url, secret_key, gateway_port, gateway_workers, tuple(gateway_args)
            )
            threaded_start = (
                pool.submit(_start_threaded, {**env, **(threaded_config or {})}, threaded_threads)
                if threaded_threads
                else None
            )
            gateway = gateway_start.result()
            threaded = threaded_start.result() if threaded_start is not None else None
    except BaseException:
        postgres.stop()
        raise
    stack = PushStack(postgres, database_url, secret_key, folder, app, gateway, gateway_workers, tuple(gateway_args))
    if threaded is not None:
        stack.extra.append(threaded)
    return stack


def _start_threaded(env: Mapping[str, str], threads: int) -> ServerHandle:
    return start_server(
        "messaging app",
        "server.messaging",
        ["--threads", str(threads)],
        port=None,
        identify=json_identity("/healthz", "messaging"),
        env=env,
        reuse=False,
        timeout=120,
    )


def _start_gateway(
    database_url: str, secret_key: str, port: int, workers: int, args: tuple[str, ...] = ()
) -> ServerHandle:
    """The gateway, once every one of its ``workers`` answers (the first alone makes ``start_server`` return)."""
    handle = _launch_gateway(database_url, secret_key, port, workers, args)
    deadline = time.monotonic() + 120
    while len(_worker_health(handle.url, workers, tries=20)) < workers:
        if time.monotonic() > deadline or not handle.running:
            handle.stop()
            raise ServerStartError(f"the gateway's {workers} workers did not all answer:\n{handle.output()}")
        time.sleep(0.1)
    return handle


def _worker_health(url: str, workers: int, tries: int) -> dict[int, dict[str, Any]]:
    """``/healthz`` by worker pid, asked ``tries`` times at most (each on a new connection,
    which the kernel hands to any worker) or until ``workers`` pids answered."""
    seen: dict[int, dict[str, Any]] = {}
    failures: list[str] = []
    for _ in range(tries):
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=30.0) as response:
                info = json.load(response)
        except (OSError, ValueError) as exc:  # a worker still starting, or a busy machine: ask again
            failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.1)
            continue
        seen[int(info["pid"])] = info
        if len(seen) >= workers:
            break
    if not seen:
        raise ConnectionError(f"no gateway worker answered {url}/healthz ({tries} tries; last: {failures[-1]})")
    return seen


def _launch_gateway(database_url: str, secret_key: str, port: int, workers: int, args: tuple[str, ...]) -> ServerHandle:
    return start_server(
        "push gateway",
        "server.push",
        ["--workers", str(workers), "--max-per-user", "0", *args],
        port=port,
        identify=json_identity("/healthz", "push"),
        env={"DATABASE_URL": database_url, "SECRET_KEY": secret_key},
        reuse=False,
        timeout=120,
    )


# -- many streams from one event loop ----------------------------------------------------------


Connection = aiohttp.ClientWebSocketResponse | aiohttp.ClientResponse


@dataclass
class StreamFleet:
    """Streams held open to the gateway: even ones SSE, odd ones WebSocket, users in turn.

    ``delays`` gets, for every marked notification a stream receives, the
    seconds from its writing to its arrival; ``streams_of(user_id)`` says how
    many deliveries one notification to that user makes.
    """

    gateway_url: str
    users: Sequence[SimUser]
    delays: list[float] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)  # status -> count
    _session: aiohttp.ClientSession | None = None
    _held: list[tuple[SimUser, str, asyncio.Task[None]]] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(1 for _, _, task in self._held if not task.done())

    def by_transport(self) -> dict[str, int]:
        counts = {"sse": 0, "ws": 0}
        for _, transport, task in self._held:
            if not task.done():
                counts[transport] += 1
        return counts

    def streams_of(self, user_id: int) -> int:
        return sum(1 for user, _, task in self._held if user.user_id == user_id and not task.done())

    async def grow(self, total: int) -> int:
        """Open streams until ``total`` are held (at most ``OPEN_AT_ONCE`` at a time); how many are held."""
        raise_open_file_limit(total + 256)  # each stream is a descriptor in this process too
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, force_close=True)
            self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))
        limit = asyncio.Semaphore(OPEN_AT_ONCE)
        start = len(self._held)
        opened = await asyncio.gather(*(self._open(n, limit) for n in range(start, total)))
        for entry in opened:
            if entry is not None:
                self._held.append(entry)
        return len(self)

    async def _open(self, n: int, limit: asyncio.Semaphore) -> tuple[SimUser, str, asyncio.Task[None]] | None:
        assert self._session is not None
        user = self.users[n % len(self.users)]
        transport = "ws" if n % 2 else "sse"
        # Start from the user's newest cursor, so only notifications written from now on arrive.
        async with limit:
            try:
                if transport == "ws":
                    connection: Connection = await self._session.ws_connect(
                        f"{self.gateway_url}/ws", headers=user.headers, heartbeat=None
                    )
                else:
                    connection = await self._session.get(f"{self.gateway_url}/stream", headers=user.headers)
                    if connection.status != 200:
                        self.refused[connection.status] = self.refused.get(connection.status, 0) + 1
                        connection.release()
                        return None
            except aiohttp.WSServerHandshakeError as exc:
                self.refused[exc.status] = self.refused.get(exc.status, 0) + 1
                return None
            except (aiohttp.ClientError, OSError):
                self.refused[0] = self.refused.get(0, 0) + 1
                return None
        return user, transport, asyncio.create_task(self._follow(connection))

    async def _follow(self, connection: Connection) -> None:
        def record(text: str) -> None:
            now = time.time()
            for item in json.loads(text) if text.startswith("[") else [json.loads(text)]:
                if item.get("name") == MARKER:
                    self.delays.append(now - item["data"]["sent"])

        if isinstance(connection, aiohttp.ClientWebSocketResponse):
            async for message in connection:
                if message.type == aiohttp.WSMsgType.TEXT:
                    record(message.data)
            return
        async for raw in connection.content:
            if raw.startswith(b"data: "):
                record(raw[6:].decode())

    async def wait_for(self, deliveries: int, quiet: float = 5.0) -> int:
        """Until ``delays`` holds ``deliveries`` entries, or none came for ``quiet`` seconds."""
        last, changed = -1, time.monotonic()
        while len(self.delays) < deliveries:
            if len(self.delays) != last:
                last, changed = len(self.delays), time.monotonic()
            elif time.monotonic() - changed > quiet:
                break
            await asyncio.sleep(0.05)
        return len(self.delays)

    async def settle(self, stack: PushStack, within: float = 30.0) -> None:
        """Until the gateway's workers report as many open streams as this fleet holds (``within`` s at most)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            health = await asyncio.to_thread(stack.gateway_health)
            if sum(int(worker["connections"]) for worker in health) >= len(self):
                return
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        """Close every stream at once (closing the session drops every socket; the gateway sees them go)."""
        for _, _, task in self._held:
            task.cancel()
        await asyncio.gather(*(task for _, _, task in self._held), return_exceptions=True)
        self._held.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass
class HeldStreams:
    """Streams held at a threaded app: the open ones, and the answers of those refused."""

    held: list[aiohttp.ClientResponse]
    refused: dict[int, int]  # status -> count
    retry_after: str | None  # the Retry-After of the last refusal
    session: aiohttp.ClientSession

    async def close(self) -> None:
        for response in self.held:
            response.close()
        self.held = []
        await self.session.close()


@contextlib.asynccontextmanager
async def sse_ids(
    session: aiohttp.ClientSession, url: str, tries: int = 20
) -> AsyncIterator[Callable[[], Awaitable[int]]]:
    """Open an event stream at ``url`` (waiting out a 503 as its ``Retry-After`` says, at most
    ``tries`` times); yields ``next_id()``, which returns the id of the stream's next event."""
    for _ in range(tries):
        response = await session.get(url)
        if response.status != 503:
            break
        response.release()
        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
    if response.status != 200:
        response.release()
        raise RuntimeError(f"{url} answered {response.status}")

    async def next_id() -> int:
        async for raw in response.content:
            if raw.startswith(b"id: "):
                return int(raw[4:])
        raise EOFError(f"{url} ended before another event came")

    try:
        yield next_id
    finally:
        response.close()


async def open_flask_streams(app_url: str, users: Sequence[SimUser]) -> HeldStreams:
    """One ``/notifications/stream`` per user at a threaded app, one after the other, each
    kept open (each holds a thread there). Close them with ``close()``."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True))
    streams = HeldStreams([], {}, None, session)
    for user in users:
        response = await session.get(f"{app_url}/notifications/stream", headers=user.headers)
        if response.status == 200:
            await response.content.readline()  # its retry: line: a thread holds it now
            streams.held.append(response)
        else:
            streams.refused[response.status] = streams.refused.get(response.status, 0) + 1
            streams.retry_after = response.headers.get("Retry-After")
            response.release()
    return streams


# -- numbered notifications, written as the app's writer does ----------------------------------


async def _write_notification(
    connection: psycopg.AsyncConnection[Any], user_id: int, name: str, data: dict[str, Any] | None
) -> int:
    """One notification for ``user_id`` as ``User.add_notification`` writes it, in a transaction of
    its own: the next cursor, the row (replacing one of the same name), the ``NOTIFY`` sent on commit.
    With ``data`` None the row is named ``<name>_<cursor>`` and holds ``{"n": cursor}``; returns the cursor."""
    async with connection.transaction():
        row = await (
            await connection.execute(
                'UPDATE "user" SET notification_counter = notification_counter + 1 WHERE id = %s '
                "RETURNING notification_counter",
                (user_id,),
            )
        ).fetchone()
        if row is None:
            raise LookupError(f"no user with id {user_id}")
        seq = int(row[0])
        if data is None:
            name, data = f"{name}_{seq}", {"n": seq}
        await connection.execute(
            "INSERT INTO notification (name, user_id, seq, timestamp, payload_json) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (user_id, name) DO UPDATE SET seq = excluded.seq, "
            "timestamp = excluded.timestamp, payload_json = excluded.payload_json",
            (name, user_id, seq, time.time(), json.dumps(data)),
        )
        await connection.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, notify_payload(user_id, seq)))
    return seq


async def write_notes(database_url: str, user_id: int, count: int, prefix: str = "note") -> list[int]:
    """Write ``count`` notifications named ``<prefix>_<cursor>`` for ``user_id``, each in a
    transaction of its own with its ``NOTIFY`` (what ``User.add_notification`` does); their cursors.

    Distinct names keep every one of them in the table (the app replaces a
    notification of the same name), so a client can be checked for each.
    """
    cursors: list[int] = []
    async with await psycopg.AsyncConnection.connect(conninfo(database_url)) as connection:
        for _ in range(count):
            seq = await _write_notification(connection, user_id, prefix, None)
            cursors.append(seq)
    return cursors


async def stored_notes(database_url: str, user_id: int, after: int = 0) -> list[dict[str, Any]]:
    """``user_id``'s notifications past ``after`` as the database holds them: ``{"id", "name", "data"}``."""
    async with await psycopg.AsyncConnection.connect(conninfo(database_url)) as connection:
        rows = await (
            await connection.execute(
                "SELECT seq, name, payload_json FROM notification WHERE user_id = %s AND seq > %s ORDER BY seq",
                (user_id, after),
            )
        ).fetchall()
    return [{"id": int(seq), "name": str(name), "data": json.loads(payload)} for seq, name, payload in rows]
