"""Push to ten thousand: ``python -m course.benchmarks.push`` (``make bench`` runs it).

The database is ``DATABASE_URL`` (PostgreSQL) when it is set; otherwise a
throwaway PostgreSQL server started here (``course.postgres_server``) and
stopped at the end.

Starts the messaging app with ``--app-workers`` processes (gunicorn; it
creates the tables), adds ``--users`` users, and starts the push gateway
(``server.push``) with ``--workers`` processes on one port. Client processes
then hold ``--connections`` gateway streams, half Server-Sent Events and half
WebSockets, spread evenly over the users. A sender, signed in at the app,
posts ``--rate`` messages a second for ``--seconds`` seconds through the
app's own form (``POST /send_message/<user>``), to the users in turn: the
app process that takes the POST commits the message and its recipient's
notification with its ``NOTIFY``, and every stream of the recipient records
the delay from the start of that POST to its arrival (notifications are
matched by user and cursor), and from the app's write (the notification's
``timestamp``) to its arrival: the gateway's part. Then (``--sender both``,
the default) the same again written straight to the database as the app
writes each message (the same transaction, its NOTIFY included): the
figures without the app's CPU on the same cores (``--sender app`` or
``database`` for one of the two). The clients read each
stream from the moment it opens, and measure how late their own event loop
runs (a loop that lags inflates every delay it records).

Then the app's own threaded endpoints (``/notifications/stream``, a thread
each): ``--flask-streams`` streams are opened one after the other (past its
seats the app answers 503), and the same senders send to the users of the
streams it holds for ``--flask-seconds`` seconds.

It prints one table, a row per server and sender: streams held and refused, memory per
held stream (resident memory of the server's processes before and after
the streams opened), messages sent, deliveries arrived, the delay's median
and 99th percentile (nearest rank).

The users' session cookies are signed here with the app's ``SECRET_KEY``
(this program sets it), as the app signs them at login, to spare ten
thousand logins. Every process that holds many sockets (the clients, the
gateway's workers) raises its soft open-file limit as far as the hard limit
allows; the report says whether it had to.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import math
import multiprocessing
import os
import random
import secrets
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psutil
import psycopg
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from yarl import URL

from course import notify
from course.postgres_server import PostgreSQLNotFound, PostgreSQLServer, start_postgresql
from course.servers import FAST_HASH, ServerHandle, json_identity, start_server
from server.cli import raise_open_file_limit
from server.push.settings import ConfigError, database_url_from_env
from server.push.store import conninfo

__all__ = ["PushFigures", "ServerFigures", "main"]

log = logging.getLogger("course.benchmarks.push")

#: How many streams one client process opens at once while connecting.
OPEN_AT_ONCE = 200
#: How often a client tries to open a stream the gateway refused with Retry-After.
OPEN_ATTEMPTS = 5
#: Seconds between the client loops' lag probes.
LAG_PROBE = 0.01


# -- the figures -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """Deliveries of one phase: what was owed, what arrived, and how late."""

    sent: int
    failed_sends: int
    expected: int
    #: From the start of the POST that caused it to its arrival on a stream.
    delays: list[float]
    #: From the app's write (the notification's ``timestamp``, just before its commit) to its arrival.
    delays_after_write: list[float]
    #: Messages sent a second, as achieved.
    rate: float

    @property
    def delivered(self) -> int:
        return len(self.delays)


@dataclass(frozen=True)
class ServerFigures:
    """One row of the table: one server under the same load."""

    server: str
    processes: int
    tried: int
    held: int
    first_refusal: int | None  # the 1-based number of the first stream refused, if any
    bytes_per_stream: float
    delivery: Delivery
    dropped_streams: int
    held_detail: str = ""

    @property
    def refused(self) -> int:
        return self.tried - self.held


@dataclass(frozen=True)
class PushFigures:
    """The report's figures: a row per server, and how the run went."""

    rows: list[ServerFigures]
    rate: float
    send_seconds: float
    flask_seconds: float
    app_processes: int
    client_processes: int
    client_lag_p99_s: float
    client_lag_max_s: float
    notes: list[str] = field(default_factory=list)

    def report(self) -> str:
        header = (
            "server",
            "procs",
            "streams held",
            "refused",
            "1st refused",
            "memory/stream",
            "msgs sent",
            "deliveries",
            "delay p50",
            "delay p99",
            "p50 / p99 after the write",
            "ended early",
        )
        lines = [header]
        for row in self.rows:
            lines.append(
                (
                    row.server,
                    str(row.processes),
                    f"{row.held}{row.held_detail}",
                    str(row.refused),
                    "-" if row.first_refusal is None else f"#{row.first_refusal}",
                    f"{row.bytes_per_stream / 1024:.1f} KiB",
                    f"{row.delivery.sent} at {row.delivery.rate:.1f}/s"
                    + (f" ({row.delivery.failed_sends} failed)" if row.delivery.failed_sends else ""),
                    f"{row.delivery.delivered}/{row.delivery.expected}",
                    _ms(nearest_rank(row.delivery.delays, 0.5)),
                    _ms(nearest_rank(row.delivery.delays, 0.99)),
                    f"{_ms(nearest_rank(row.delivery.delays_after_write, 0.5))} / "
                    f"{_ms(nearest_rank(row.delivery.delays_after_write, 0.99))}",
                    str(row.dropped_streams),
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        table = [
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines
        ]
        return "\n".join(
            [
                f"push to many: {self.rate:g} messages/s asked, for {self.send_seconds:g} s to the gateway's "
                f"streams and {self.flask_seconds:g} s to the threaded app's; via app: POSTed to the app's form "
                f"on {self.app_processes} app processes (gunicorn), which commits each with its NOTIFY; via "
                "database: the same transaction straight to the database (no app on the CPU)",
                *table,
                f"client event-loop lag ({self.client_processes} client processes, while messages were sent): "
                f"p99 {_ms(self.client_lag_p99_s)}, max {_ms(self.client_lag_max_s)}",
                *self.notes,
            ]
        )


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def nearest_rank(values: Sequence[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# -- set-up ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    user_id: int
    username: str
    cookie: str


def create_users(database_url: str, count: int, secret_key: str) -> list[User]:
    """``count`` new users (no password: they never log in), with their session cookies."""
    prefix = secrets.token_hex(3)
    rows = [(f"push{prefix}{i}", f"push{prefix}{i}@example.com", secrets.token_urlsafe(32)) for i in range(count)]
    with psycopg.connect(conninfo(database_url)) as connection, connection.cursor() as cursor:
        cursor.executemany(
            'INSERT INTO "user" (username, email, session_token, notification_counter) VALUES (%s, %s, %s, 0)',
            rows,
        )
        cursor.execute(
            'SELECT id, username, session_token FROM "user" WHERE username LIKE %s ORDER BY id', (f"push{prefix}%",)
        )
        found = cursor.fetchall()
    return [User(int(user_id), str(name), session_cookie(secret_key, str(token))) for user_id, name, token in found]


def session_cookie(secret_key: str, token: str) -> str:
    """The session cookie the app signs at login (Flask-Login keeps the token in ``_user_id``)."""
    app = Flask("push-benchmark")
    app.config["SECRET_KEY"] = secret_key
    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    assert serializer is not None
    return str(serializer.dumps({"_user_id": token, "_fresh": True}))


def counters(database_url: str, user_ids: Sequence[int]) -> dict[int, int]:
    """Each user's newest cursor (its next notification takes the one after)."""
    with psycopg.connect(conninfo(database_url)) as connection:
        found = connection.execute(
            'SELECT id, notification_counter FROM "user" WHERE id = ANY(%s)', (list(user_ids),)
        ).fetchall()
    return {int(user_id): int(counter or 0) for user_id, counter in found}


def resident_bytes(process: psutil.Process) -> int:
    """Resident memory of a process and its children (a server's workers)."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += member.memory_info().rss
    return total


@dataclass(frozen=True)
class FileLimit:
    """What raising the soft open-file limit did in one process."""

    wanted: int
    before: int
    after: int

    def describe(self, where: str) -> str:
        if self.after > self.before:
            return f"{where}: soft open-file limit raised from {self.before} to {self.after} (wanted {self.wanted})"
        if self.after < self.wanted:
            return f"{where}: soft open-file limit {self.after} is below the {self.wanted} wanted (hard limit)"
        return f"{where}: soft open-file limit {self.before} already covers the {self.wanted} wanted"


def raise_file_limit(wanted: int) -> FileLimit:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return FileLimit(wanted, wanted, wanted)
    before = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return FileLimit(wanted, before, raise_open_file_limit(wanted) if before < wanted else before)


# -- receiving: the client processes ---------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    user_id: int
    cookie: str
    transport: str  # "sse" or "ws"


#: (user id, cursor, time it arrived, its ``timestamp``: when the app wrote it) of a notification on a stream.
Arrival = tuple[int, int, float, float]
Connection = aiohttp.ClientWebSocketResponse | aiohttp.ClientResponse


async def _open(
    session: aiohttp.ClientSession, url: str, stream: Stream, limit: asyncio.Semaphore
) -> Connection | None:
    """Open one stream; a refusal with ``Retry-After`` (a busy gateway) is retried as browsers do."""
    headers = {"Cookie": f"session={stream.cookie}"}
    for _ in range(OPEN_ATTEMPTS):
        async with limit:
            try:
                if stream.transport == "ws":
                    return await session.ws_connect(f"{url}/ws", headers=headers, heartbeat=None)
                response = await session.get(f"{url}/stream", headers=headers)
            except aiohttp.WSServerHandshakeError as refusal:
                retry_after = refusal.headers.get("Retry-After") if refusal.headers else None
            except (aiohttp.ClientError, OSError):
                return None
            else:
                if response.status == 200:
                    return response
                retry_after = response.headers.get("Retry-After")
                response.release()
        if retry_after is None or not retry_after.isdigit():
            return None
        await asyncio.sleep(int(retry_after) * (1 + random.random()))
    return None


async def follow(connection: Connection, user_id: int, arrivals: list[Arrival], progress: Any = None) -> str:
    """Record each notification that arrives on an SSE response or a WebSocket, until it ends;
    how it ended."""

    def record(text: str) -> None:
        now = time.time()
        items = json.loads(text)
        for item in items if isinstance(items, list) else [items]:
            arrivals.append((user_id, int(item["id"]), now, float(item["timestamp"])))
            if progress is not None:
                with progress.get_lock():
                    progress.value += 1

    if isinstance(connection, aiohttp.ClientWebSocketResponse):
        async for message in connection:
            if message.type == aiohttp.WSMsgType.TEXT:
                record(message.data)
        failure = connection.exception()
        return f"WebSocket closed (code {connection.close_code}{f', {failure!r}' if failure else ''})"
    async for raw in connection.content:
        if raw.startswith(b"data: "):
            record(raw[6:].decode())
    return "SSE response ended"


def _ending(task: asyncio.Task[str]) -> str:
    if task.cancelled():
        return "cancelled"
    failure = task.exception()
    return task.result() if failure is None else f"{type(failure).__name__}: {failure}"[:120]


class LoopLag:
    """How late an event loop wakes a task that sleeps ``LAG_PROBE`` seconds at a time."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.recording = False

    async def run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(LAG_PROBE)
            if self.recording:
                self.lags.append(max(0.0, time.monotonic() - start - LAG_PROBE))


@dataclass(frozen=True)
class ClientReport:
    arrivals: list[Arrival]
    dropped: int
    lags: list[float]
    #: Why streams ended before the end of the run: reason -> how many.
    ended: dict[str, int]
    file_limit: FileLimit


async def _client(url: str, streams: Sequence[Stream], pipe: Any, progress: Any, file_limit: FileLimit) -> None:
    arrivals: list[Arrival] = []
    limit = asyncio.Semaphore(OPEN_AT_ONCE)
    lag = LoopLag()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    loop = asyncio.get_running_loop()

    async def hold(stream: Stream, opened: asyncio.Future[bool]) -> str:
        # Read each stream from the moment it opens: a WebSocket left unread while the
        # others open answers no ping, and the gateway rightly drops it as a dead peer.
        try:
            connection = await _open(session, url, stream, limit)
        except BaseException:
            opened.set_result(False)  # an error _open does not expect: not opened
            raise
        opened.set_result(connection is not None)
        if connection is None:
            return "never opened"
        return await follow(connection, stream.user_id, arrivals, progress)

    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        outcomes = [loop.create_future() for _ in streams]
        held = [asyncio.create_task(hold(stream, opened)) for stream, opened in zip(streams, outcomes, strict=True)]
        opened = await asyncio.gather(*outcomes)
        tasks = [task for task, ok in zip(held, opened, strict=True) if ok]
        probe = asyncio.create_task(lag.run())
        # What lives as long as the streams is not looked at by the collector again
        # (a full collection over ten thousand connections' objects stalls the loop).
        gc.collect()
        gc.freeze()
        pipe.send(len(tasks))
        await asyncio.to_thread(pipe.recv)  # "measure": the sender starts now
        lag.recording = True
        await asyncio.to_thread(pipe.recv)  # "stop"
        lag.recording = False
        done = [task for task in tasks if task.done()]  # ended before the end of the run
        ended = Counter(_ending(task) for task in done)
        for task in [*held, probe]:
            task.cancel()
        await asyncio.gather(*held, probe, return_exceptions=True)
    pipe.send(ClientReport(arrivals, len(done), lag.lags, dict(ended), file_limit))


def _client_main(url: str, streams: Sequence[Stream], pipe: Any, progress: Any) -> None:
    file_limit = raise_file_limit(len(streams) + 64)
    asyncio.run(_client(url, streams, pipe, progress, file_limit))


# -- sending: through the app's form ---------------------------------------------------------


@dataclass
class SendLog:
    """When each notification was caused: (user id, cursor) -> time the POST started."""

    sent_at: dict[tuple[int, int], float] = field(default_factory=dict)
    failed: int = 0
    seconds: float = 0.0


class Sender:
    """A signed-in user who posts messages through the app's form (one CSRF token, many POSTs)."""

    def __init__(self, app_url: str, cookie: str, recipient: str) -> None:
        self.app_url = app_url
        self.cookie = cookie
        self.form = f"{app_url}/send_message/{recipient}"
        self.session: aiohttp.ClientSession | None = None
        self.token = ""

    async def __aenter__(self) -> Sender:
        self.session = notify.client_session(connector=aiohttp.TCPConnector(limit=64))
        self.session.cookie_jar.update_cookies({"session": self.cookie}, URL(self.app_url))
        # Flask-WTF's token belongs to the session (and lasts an hour), not to one form.
        self.token = await notify._form_token(self.session, self.form)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def post(self, recipient: str, body: str) -> bool:
        assert self.session is not None
        try:
            async with self.session.post(
                f"{self.app_url}/send_message/{recipient}",
                data={"message": body, "csrf_token": self.token},
                allow_redirects=False,
            ) as response:
                await response.read()
                return response.status == 302 and "/auth/login" not in response.headers.get("Location", "")
        except (aiohttp.ClientError, OSError):
            return False

    async def send(
        self, recipients: Sequence[User], next_cursor: dict[int, int], rate: float, seconds: float
    ) -> SendLog:
        """``rate`` messages a second to ``recipients`` in turn, each POST on its schedule
        (a slow answer delays no other); ``next_cursor`` (user -> newest cursor) advances."""
        sent = SendLog()
        count = max(1, int(rate * seconds))
        start = time.monotonic()

        async def one(n: int) -> None:
            user = recipients[n % len(recipients)]
            sent_at = time.time()
            if await self.post(user.username, f"message {n}"):
                next_cursor[user.user_id] += 1  # messages to one user are far apart: in order
                sent.sent_at[(user.user_id, next_cursor[user.user_id])] = sent_at
            else:
                sent.failed += 1

        posts = []
        for n in range(count):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            posts.append(asyncio.create_task(one(n)))
        await asyncio.gather(*posts)
        sent.seconds = time.monotonic() - start
        return sent


def match(sent: SendLog, arrivals: Sequence[Arrival], streams_of: Mapping[int, int]) -> Delivery:
    """The delays of the arrivals that belong to a message of ``sent``."""
    mine = [
        (sent.sent_at[(user, cursor)], came, written)
        for user, cursor, came, written in arrivals
        if (user, cursor) in sent.sent_at
    ]
    expected = sum(streams_of.get(user, 0) for user, _ in sent.sent_at)
    return Delivery(
        rate=len(sent.sent_at) / sent.seconds if sent.seconds else math.nan,
        sent=len(sent.sent_at),
        failed_sends=sent.failed,
        expected=expected,
        delays=[came - posted for posted, came, _ in mine],
        delays_after_write=[came - written for _, came, written in mine],
    )


# -- the gateway -----------------------------------------------------------------------------


def measure_gateway(
    args: argparse.Namespace,
    database_url: str,
    app: ServerHandle,
    sender_cookie: str,
    secret_key: str,
    users: Sequence[User],
    notes: list[str],
) -> tuple[list[ServerFigures], list[ClientReport]]:
    per_worker = math.ceil(args.connections / args.workers) * 2 + 100
    gateway = start_server(
        "push gateway",
        "server.push",
        ["--workers", str(args.workers), "--max-connections", str(per_worker), "--max-per-user", "0"],
        port=None,
        identify=json_identity("/healthz", "push"),
        env={"DATABASE_URL": database_url, "SECRET_KEY": secret_key},
        reuse=False,
        timeout=120,
    )
    try:
        assert gateway.process is not None
        supervisor = psutil.Process(gateway.process.pid)
        time.sleep(1.0)
        before = resident_bytes(supervisor)
        streams = [
            Stream(users[i % len(users)].user_id, users[i % len(users)].cookie, "ws" if i % 2 else "sse")
            for i in range(args.connections)
        ]
        context = multiprocessing.get_context("spawn")
        progress = context.Value("q", 0)
        pipes, clients = [], []
        for k in range(args.clients):
            ours, theirs = context.Pipe()
            clients.append(
                context.Process(target=_client_main, args=(gateway.url, streams[k :: args.clients], theirs, progress))
            )
            pipes.append(ours)
        log.info("gateway: opening %d streams from %d client processes", len(streams), len(clients))
        for client in clients:
            client.start()
        with _stopping(clients):
            held = sum(_collect(pipes, clients, 900.0))
            log.info("gateway: %d streams held; waiting for the gateway to settle", held)
            settle(supervisor)
            after = resident_bytes(supervisor)
            next_cursor = counters(database_url, [user.user_id for user in users])
            for pipe in pipes:
                pipe.send("measure")
            streams_of: dict[int, int] = {}
            for stream in streams:
                streams_of[stream.user_id] = streams_of.get(stream.user_id, 0) + 1
            trees = {"gateway": supervisor, "app": psutil.Process(app.process.pid) if app.process else None}
            phases: list[SendLog] = []
            expected = 0
            for how in senders(args):
                log.info("gateway: sending %g messages/s for %g s (%s)", args.rate, args.seconds, how)
                cpu_before = {name: tree_cpu_seconds(tree) for name, tree in trees.items()}
                client_cpu_before = sum(tree_cpu_seconds(psutil.Process(c.pid)) for c in clients if c.pid)
                sent = asyncio.run(
                    send_by(how, app.url, database_url, sender_cookie, users, next_cursor, args.rate, args.seconds)
                )
                cpu = {name: tree_cpu_seconds(tree) - cpu_before[name] for name, tree in trees.items()}
                cpu["clients"] = (
                    sum(tree_cpu_seconds(psutil.Process(c.pid)) for c in clients if c.pid) - client_cpu_before
                )
                notes.append(
                    f"CPU used in the {sent.seconds:.0f} s of sending {SENDERS[how]}: "
                    + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in cpu.items())
                )
                expected += sum(streams_of[user] for user, _ in sent.sent_at)
                _wait_for_deliveries(progress, expected, args.drain)
                phases.append(sent)
            for pipe in pipes:
                pipe.send("stop")
            reports: list[ClientReport] = _collect(pipes, clients, 300.0)
    finally:
        gateway.stop(30.0)
    arrivals = [arrival for report in reports for arrival in report.arrivals]
    sse = sum(1 for s in streams if s.transport == "sse")
    rows = [
        ServerFigures(
            server=f"push gateway (asyncio), {SENDERS[how]}",
            processes=args.workers,
            tried=len(streams),
            held=held,
            first_refusal=None,
            bytes_per_stream=(after - before) / max(1, held),
            delivery=match(sent, arrivals, streams_of),
            dropped_streams=sum(report.dropped for report in reports),
            held_detail=f" ({sse} SSE + {len(streams) - sse} WS)" if held == len(streams) else "",
        )
        for how, sent in zip(senders(args), phases, strict=True)
    ]
    return rows, reports


#: How the messages are sent (``--sender``), as the table's rows say it.
SENDERS = {"app": "via app", "database": "via database"}


def senders(args: argparse.Namespace) -> list[str]:
    return ["app", "database"] if args.sender == "both" else [args.sender]


async def send_by(
    how: str,
    app_url: str,
    database_url: str,
    cookie: str,
    recipients: Sequence[User],
    next_cursor: dict[int, int],
    rate: float,
    seconds: float,
) -> SendLog:
    """``rate`` messages a second to ``recipients`` in turn: POSTed to the app, or written as it would."""
    if how == "database":
        return await write_directly(database_url, recipients, next_cursor, rate, seconds)
    async with Sender(app_url, cookie, recipients[0].username) as sender:
        return await sender.send(recipients, next_cursor, rate, seconds)


#: What the app's writer does for a message's notification (``User.add_notification``), in one
#: transaction: the user's next cursor, the notification row replaced, the NOTIFY sent on commit.
_WRITE_NOTIFICATION = """
WITH next AS (
    UPDATE "user" SET notification_counter = notification_counter + 1 WHERE id = %(user)s
    RETURNING id, notification_counter AS seq
), stored AS (
    INSERT INTO notification (name, user_id, seq, timestamp, payload_json)
    SELECT 'unread_message_count', id, seq, %(now)s, seq::text FROM next
    ON CONFLICT (user_id, name) DO UPDATE
    SET seq = excluded.seq, timestamp = excluded.timestamp, payload_json = excluded.payload_json
)
SELECT seq, pg_notify('notifications', json_build_object('user', id, 'seq', seq)::text) FROM next
"""


async def write_directly(
    database_url: str, recipients: Sequence[User], next_cursor: dict[int, int], rate: float, seconds: float
) -> SendLog:
    """``--sender database``: the app's write for each message, straight to the database
    (no HTTP, no Flask): the gateway's figures without the app's CPU on the same cores."""
    sent = SendLog()
    count = max(1, int(rate * seconds))
    start = time.monotonic()
    async with await psycopg.AsyncConnection.connect(conninfo(database_url), autocommit=True) as connection:
        for n in range(count):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            user = recipients[n % len(recipients)]
            sent_at = time.time()
            row = await (
                await connection.execute(_WRITE_NOTIFICATION, {"user": user.user_id, "now": sent_at})
            ).fetchone()
            if row is None:
                sent.failed += 1
                continue
            next_cursor[user.user_id] = int(row[0])
            sent.sent_at[(user.user_id, int(row[0]))] = sent_at
    sent.seconds = time.monotonic() - start
    return sent


@contextlib.contextmanager
def _stopping(clients: Sequence[Any]) -> Iterator[None]:
    """End the client processes on the way out, however it is left."""
    try:
        yield
    finally:
        for client in clients:
            client.join(30)
            if client.is_alive():
                client.kill()
                client.join()


def settle(process: psutil.Process, busy: float = 0.15, most: float = 120.0) -> None:
    """Wait (up to ``most`` s) until ``process`` and its children use less than ``busy`` of a core:
    the streams that just opened are in place, and the measurement starts on a quiet server."""
    deadline = time.monotonic() + most
    while time.monotonic() < deadline:
        members = [process, *process.children(recursive=True)]
        start = sum(_cpu_seconds(member) for member in members)
        time.sleep(1.0)
        if sum(_cpu_seconds(member) for member in members) - start < busy:
            return


def tree_cpu_seconds(process: psutil.Process | None) -> float:
    """CPU time used so far by a process and its children."""
    if process is None:
        return 0.0
    with contextlib.suppress(psutil.Error):
        return sum(_cpu_seconds(member) for member in [process, *process.children(recursive=True)])
    return 0.0


def _cpu_seconds(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _wait_for_deliveries(progress: Any, expected: int, quiet_seconds: float) -> None:
    """Until every delivery arrived, or none arrived for ``quiet_seconds``."""
    last, last_change = -1, time.monotonic()
    while progress.value < expected:
        if progress.value != last:
            last, last_change = progress.value, time.monotonic()
        elif time.monotonic() - last_change > quiet_seconds:
            return
        time.sleep(0.2)


class ClientFailed(RuntimeError):
    """A client process ended without reporting."""


def _collect(pipes: Sequence[Any], clients: Sequence[Any], timeout: float) -> list[Any]:
    """One message from each client process (ClientFailed if one died first)."""
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    for pipe, client in zip(pipes, clients, strict=True):
        while not pipe.poll(0.5):
            if client.exitcode is not None or time.monotonic() > deadline:
                codes = [c.exitcode for c in clients]
                raise ClientFailed(f"client processes failed or hung (exit codes {codes})")
        found.append(pipe.recv())
    return found


# -- the threaded app ------------------------------------------------------------------------


def measure_flask(
    args: argparse.Namespace, database_url: str, app: ServerHandle, sender_cookie: str, users: Sequence[User]
) -> list[ServerFigures]:
    """Open ``--flask-streams`` of the app's own SSE streams one by one; send to the held ones."""
    assert app.process is not None
    process = psutil.Process(app.process.pid)
    chosen = list(users[: args.flask_streams])
    next_cursor = counters(database_url, [user.user_id for user in chosen])
    before = resident_bytes(process)
    log.info("threaded Flask: opening up to %d streams one by one, then sending", len(chosen))

    async def run() -> list[ServerFigures]:
        held: list[tuple[User, aiohttp.ClientResponse]] = []
        first_refusal: int | None = None
        arrivals: list[Arrival] = []
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
            for number, user in enumerate(chosen, 1):
                response = await session.get(
                    f"{app.url}/notifications/stream",
                    params={"after": str(next_cursor[user.user_id])},
                    headers={"Cookie": f"session={user.cookie}"},
                )
                if response.status == 200:
                    await response.content.readline()  # its retry: line: a thread holds it now
                    held.append((user, response))
                else:
                    first_refusal = first_refusal or number
                    response.release()
            await asyncio.sleep(1.0)
            after = resident_bytes(process)
            tasks = [asyncio.create_task(follow(response, user.user_id, arrivals)) for user, response in held]
            phases = {how: SendLog() for how in senders(args)}
            streams_of = {user.user_id: 1 for user, _ in held}
            expected = 0
            for how in phases if held else ():
                recipients = [user for user, _ in held]
                phases[how] = await send_by(
                    how, app.url, database_url, sender_cookie, recipients, next_cursor, args.rate, args.flask_seconds
                )
                expected += len(phases[how].sent_at)
                quiet = time.monotonic()
                while len(arrivals) < expected and time.monotonic() - quiet < args.drain:
                    seen = len(arrivals)
                    await asyncio.sleep(0.2)
                    if len(arrivals) != seen:
                        quiet = time.monotonic()
            dropped = sum(1 for task in tasks if task.done())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for _, response in held:
                response.close()
        return [
            ServerFigures(
                server=f"threaded Flask (a thread each), {SENDERS[how]}",
                processes=args.app_workers,
                tried=len(chosen),
                held=len(held),
                first_refusal=first_refusal,
                bytes_per_stream=(after - before) / max(1, len(held)),
                delivery=match(sent, arrivals, streams_of),
                dropped_streams=dropped,
            )
            for how, sent in phases.items()
        ]

    return asyncio.run(run())


# -- the whole run ---------------------------------------------------------------------------


def run_benchmark(args: argparse.Namespace, database_url: str, notes: list[str]) -> PushFigures:
    secret_key = secrets.token_hex(32)
    limit = raise_file_limit(args.flask_streams + 256)
    notes.append(limit.describe("this process"))
    with tempfile.TemporaryDirectory(prefix="push-bench-") as folder:
        app = start_server(
            "messaging app",
            "server.messaging",
            ["--workers", str(args.app_workers), "--threads", str(args.flask_threads)],
            port=None,
            identify=json_identity("/healthz", "messaging"),
            env={
                "DATABASE_URL": database_url,
                "MESSAGING_INSTANCE_PATH": folder,
                "SECRET_KEY": secret_key,
                "PASSWORD_HASH_METHOD": FAST_HASH,
                "MAX_WAITING_PER_USER": "0",
            },
            reuse=False,
            timeout=120,
        )
        try:
            sender, *users = create_users(database_url, args.users + 1, secret_key)
            gateway, reports = measure_gateway(args, database_url, app, sender.cookie, secret_key, users, notes)
            flask = measure_flask(args, database_url, app, sender.cookie, users)
        finally:
            app.stop()
    lags = [lag for report in reports for lag in report.lags]
    notes.append(reports[0].file_limit.describe(f"each of the {len(reports)} client processes"))
    ended: Counter[str] = Counter()
    for report in reports:
        ended.update(report.ended)
    for reason, count in ended.most_common(5):
        notes.append(f"gateway streams that ended early: {count} x {reason}")
    notes.append("the gateway's workers raise their own limit to --max-connections + 64 (their log warns if short)")
    return PushFigures(
        rows=[*gateway, *flask],
        rate=args.rate,
        send_seconds=args.seconds,
        flask_seconds=args.flask_seconds,
        app_processes=args.app_workers,
        client_processes=args.clients,
        client_lag_p99_s=nearest_rank(lags, 0.99),
        client_lag_max_s=max(lags, default=math.nan),
        notes=notes,
    )


def _positive(kind: type, low: float) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(f"{text} must be at least {low}")
        return value

    return parse


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m course.benchmarks.push", description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=_positive(int, 1), default=10_000, help="streams held (default 10000)")
    parser.add_argument("--users", type=_positive(int, 1), default=2_000, help="users they belong to (default 2000)")
    parser.add_argument("--workers", type=_positive(int, 1), default=2, help="gateway processes (default 2)")
    parser.add_argument("--app-workers", type=_positive(int, 1), default=2, help="app processes (default 2)")
    parser.add_argument("--clients", type=_positive(int, 1), default=4, help="client processes (default 4)")
    parser.add_argument("--rate", type=_positive(float, 0.1), default=100.0, help="messages/s (default 100)")
    parser.add_argument("--seconds", type=_positive(float, 1), default=20.0, help="sending time (default 20)")
    parser.add_argument(
        "--drain", type=_positive(float, 0), default=10.0, help="stop after s without a delivery (default 10)"
    )
    parser.add_argument(
        "--flask-threads", type=_positive(int, 8), default=64, help="threads per app process (default 64)"
    )
    parser.add_argument(
        "--flask-streams", type=_positive(int, 0), default=200, help="streams tried on it (default 200)"
    )
    parser.add_argument(
        "--flask-seconds", type=_positive(float, 1), default=5.0, help="sending time to its streams (default 5)"
    )
    parser.add_argument(
        "--sender",
        choices=("both", "app", "database"),
        default="both",
        help="app: POST each message to the app's form; database: write what the app writes for it "
        "straight to the database (the servers' figures without the app's CPU); both (default): one, then the other",
    )
    args = parser.parse_args(argv)
    if args.connections > 1_000_000:
        parser.error("--connections: at most 1000000")
    if args.flask_streams > args.users:
        parser.error("--flask-streams: at most --users (one stream per user)")
    return args


@contextlib.contextmanager
def database(notes: list[str]) -> Iterator[str]:
    """``DATABASE_URL`` if set (checked to be PostgreSQL), else a throwaway server's database."""
    if os.environ.get("DATABASE_URL", "").strip():
        url = database_url_from_env()
        notes.append("database: DATABASE_URL")
        yield url
        return
    server: PostgreSQLServer = start_postgresql()
    try:
        notes.append(f"database: a throwaway PostgreSQL started for this run on port {server.port}, stopped after")
        yield server.create_database(f"push_bench_{uuid.uuid4().hex[:8]}")
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    notes: list[str] = []
    try:
        with database(notes) as database_url:
            figures = run_benchmark(args, database_url, notes)
    except (ConfigError, PostgreSQLNotFound) as exc:
        sys.stderr.write(f"python -m course.benchmarks.push: error: {exc}\n")
        return 2
    sys.stdout.write(figures.report() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
