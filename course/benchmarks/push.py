"""Push to ten thousand: ``python -m course.benchmarks.push`` (needs ``DATABASE_URL``, PostgreSQL).

Starts the messaging app on that database (it creates the tables), adds
``--users`` users, and starts the push gateway (``server.push``) with
``--workers`` processes on one port. Client processes then hold
``--connections`` streams, half Server-Sent Events and half WebSockets,
spread evenly over the users. A writer stores ``--rate`` notifications a
second for ``--seconds`` seconds, one user after the other, each in one
transaction with its ``NOTIFY`` (what the app's writer does on commit); each
carries the time it was written, so every stream that receives it records
the delay. It prints how many deliveries arrived, the delay's median and
99th percentile (nearest rank), and the gateway's memory per held stream
(resident memory of its workers before and after the streams opened).

Then the threaded Flask app, for comparison: with ``--flask-threads``
threads, it holds ``--flask-streams`` of its own ``/notifications/stream``
connections (past its seats it answers 503), each costing a thread; its
memory per stream is measured the same way.

The users' session cookies are signed here with the app's ``SECRET_KEY``
(this program sets it), as the app would sign them at login, to spare ten
thousand logins. The clients raise their soft open-file limit as far as the
hard limit allows (each stream is a descriptor on both sides).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import secrets
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from queue import Empty
from typing import Any

import aiohttp
import psutil
import psycopg
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from course.servers import FAST_HASH, ServerHandle, start_messaging_app, start_server
from server.push.serving import raise_open_file_limit
from server.push.settings import ConfigError, database_url_from_env
from server.push.store import conninfo

__all__ = ["PushFigures", "main"]

NAME = "bench_push"
#: How many streams one client process opens at once while connecting.
OPEN_AT_ONCE = 200


@dataclass(frozen=True)
class PushFigures:
    """The report's figures."""

    connections: int
    sse: int
    websockets: int
    workers: int
    sent: int
    expected_deliveries: int
    delivered: int
    dropped_streams: int
    median_delay_s: float
    p99_delay_s: float
    gateway_bytes_per_stream: float
    flask_streams: int
    flask_refused: int
    flask_bytes_per_stream: float

    def report(self) -> str:
        return "\n".join(
            [
                f"push gateway: {self.connections} streams ({self.sse} SSE, {self.websockets} WebSocket) "
                f"on {self.workers} processes",
                f"  {self.sent} notifications written, {self.delivered} of {self.expected_deliveries} "
                f"deliveries arrived; delay median={self.median_delay_s * 1000:.1f} ms "
                f"p99={self.p99_delay_s * 1000:.1f} ms; {self.dropped_streams} streams ended early",
                f"  memory: {self.gateway_bytes_per_stream / 1024:.1f} KiB per stream",
                f"threaded Flask app: held {self.flask_streams} SSE streams, refused {self.flask_refused} (503)",
                f"  memory: {self.flask_bytes_per_stream / 1024:.1f} KiB per stream (and a thread each)",
            ]
        )


def nearest_rank(values: Sequence[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# -- set-up ----------------------------------------------------------------------------------


def _identity(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1.0) as response:
            info = json.load(response)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("server") == "push" else None


def create_users(database_url: str, count: int) -> list[tuple[int, str]]:
    """``count`` new users (no password: they never log in); their ids and session tokens."""
    prefix = secrets.token_hex(3)
    rows = [(f"push{prefix}{i}", f"push{prefix}{i}@example.com", secrets.token_urlsafe(32)) for i in range(count)]
    with psycopg.connect(conninfo(database_url)) as connection, connection.cursor() as cursor:
        cursor.executemany(
            'INSERT INTO "user" (username, email, session_token, notification_counter) VALUES (%s, %s, %s, 0)',
            rows,
        )
        cursor.execute('SELECT id, session_token FROM "user" WHERE username LIKE %s', (f"push{prefix}%",))
        return [(int(user_id), str(token)) for user_id, token in cursor.fetchall()]


def session_cookie(secret_key: str, token: str) -> str:
    """The session cookie the app signs at login (Flask-Login keeps the token in ``_user_id``)."""
    app = Flask("push-benchmark")
    app.config["SECRET_KEY"] = secret_key
    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    assert serializer is not None
    return str(serializer.dumps({"_user_id": token, "_fresh": True}))


def resident_bytes(process: psutil.Process) -> int:
    """Resident memory of a process and its children (the gateway's workers)."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += member.memory_info().rss
    return total


# -- the client processes --------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    user_id: int
    cookie: str
    transport: str  # "sse" or "ws"


Connection = aiohttp.ClientWebSocketResponse | aiohttp.ClientResponse


async def _open(
    session: aiohttp.ClientSession, url: str, stream: Stream, limit: asyncio.Semaphore
) -> Connection | None:
    headers = {"Cookie": f"session={stream.cookie}"}
    async with limit:
        try:
            if stream.transport == "ws":
                return await session.ws_connect(f"{url}/ws", headers=headers, heartbeat=None)
            response = await session.get(f"{url}/stream", headers=headers)
        except (aiohttp.ClientError, OSError):
            return None
        if response.status != 200:
            response.release()
            return None
        return response


async def _follow(connection: Connection, delays: list[float], progress: Any) -> None:
    def record(text: str) -> None:
        now = time.time()
        for item in json.loads(text) if text.startswith("[") else [json.loads(text)]:
            if item.get("name") == NAME:
                delays.append(now - item["data"]["sent"])
                with progress.get_lock():
                    progress.value += 1

    if isinstance(connection, aiohttp.ClientWebSocketResponse):
        async for message in connection:
            if message.type == aiohttp.WSMsgType.TEXT:
                record(message.data)
        return
    async for raw in connection.content:
        if raw.startswith(b"data: "):
            record(raw[6:].decode())


async def _client(url: str, streams: Sequence[Stream], ready: Any, stop: Any, results: Any, progress: Any) -> None:
    delays: list[float] = []
    limit = asyncio.Semaphore(OPEN_AT_ONCE)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        opened = await asyncio.gather(*(_open(session, url, stream, limit) for stream in streams))
        tasks = [asyncio.create_task(_follow(c, delays, progress)) for c in opened if c is not None]
        ready.put(len(tasks))
        await asyncio.to_thread(stop.wait)
        dropped = sum(1 for task in tasks if task.done())  # ended before the end of the run
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    results.put((delays, dropped))


def _client_main(url: str, streams: Sequence[Stream], ready: Any, stop: Any, results: Any, progress: Any) -> None:
    raise_open_file_limit(len(streams) + 64)
    asyncio.run(_client(url, streams, ready, stop, results, progress))


# -- the writer ------------------------------------------------------------------------------


async def write_notifications(database_url: str, user_ids: Sequence[int], rate: float, seconds: float) -> int:
    """``rate`` notifications a second to the users in turn, each committed with its NOTIFY."""
    count = int(rate * seconds)
    start = time.monotonic()
    async with await psycopg.AsyncConnection.connect(conninfo(database_url)) as connection:
        for n in range(count):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            user_id = user_ids[n % len(user_ids)]
            async with connection.transaction():
                row = await (
                    await connection.execute(
                        'UPDATE "user" SET notification_counter = notification_counter + 1 WHERE id = %s '
                        "RETURNING notification_counter",
                        (user_id,),
                    )
                ).fetchone()
                assert row is not None
                seq = int(row[0])
                await connection.execute(
                    "INSERT INTO notification (name, user_id, seq, timestamp, payload_json) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (user_id, name) DO UPDATE SET seq = excluded.seq, "
                    "timestamp = excluded.timestamp, payload_json = excluded.payload_json",
                    (NAME, user_id, seq, time.time(), json.dumps({"sent": time.time(), "n": n})),
                )
                await connection.execute(
                    "SELECT pg_notify('notifications', %s)", (json.dumps({"user": user_id, "seq": seq}),)
                )
    return count


# -- the threaded app, for comparison --------------------------------------------------------


def measure_flask(app: ServerHandle, cookies: Sequence[str]) -> tuple[int, int, float]:
    """Hold ``cookies`` SSE streams on the app; (held, refused, bytes per held stream)."""
    assert app.process is not None
    process = psutil.Process(app.process.pid)
    before = resident_bytes(process)

    async def run() -> tuple[int, int, float]:
        held: list[aiohttp.ClientResponse] = []
        refused = 0
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for cookie in cookies:
                response = await session.get(f"{app.url}/notifications/stream", headers={"Cookie": f"session={cookie}"})
                if response.status == 200:
                    await response.content.readline()  # its retry: line: a thread holds it now
                    held.append(response)
                else:
                    refused += 1
                    response.release()
            await asyncio.sleep(1.0)
            after = resident_bytes(process)
            for response in held:
                response.close()
        return len(held), refused, (after - before) / max(1, len(held))

    return asyncio.run(run())


# -- the whole run ---------------------------------------------------------------------------


def run_benchmark(args: argparse.Namespace, database_url: str) -> PushFigures:
    secret_key = secrets.token_hex(32)
    raise_open_file_limit(args.connections + 256)
    with tempfile.TemporaryDirectory(prefix="push-bench-") as folder:
        app = start_messaging_app(
            port=None,
            database_url=database_url,
            folder=folder,
            config={
                "SECRET_KEY": secret_key,
                "PASSWORD_HASH_METHOD": FAST_HASH,
                "MESSAGING_THREADS": str(args.flask_threads),
                "MAX_WAITING_PER_USER": "0",
            },
            reuse=False,
            timeout=120,
        )
        try:
            users = create_users(database_url, args.users)
            cookies = {user_id: session_cookie(secret_key, token) for user_id, token in users}
            per_worker = math.ceil(args.connections / args.workers) * 2 + 100
            gateway = start_server(
                "push gateway",
                "server.push",
                ["--workers", str(args.workers), "--max-connections", str(per_worker), "--max-per-user", "0"],
                port=None,
                identify=_identity,
                env={"DATABASE_URL": database_url, "SECRET_KEY": secret_key},
                reuse=False,
                timeout=120,
            )
            try:
                figures = _measure_gateway(args, database_url, gateway, users, cookies)
            finally:
                gateway.stop(30.0)
            flask_cookies = [cookies[user_id] for user_id, _ in users][: args.flask_streams]
            held, refused, flask_per_stream = measure_flask(app, flask_cookies)
        finally:
            app.stop()
    return PushFigures(**figures, flask_streams=held, flask_refused=refused, flask_bytes_per_stream=flask_per_stream)


def _measure_gateway(
    args: argparse.Namespace,
    database_url: str,
    gateway: ServerHandle,
    users: Sequence[tuple[int, str]],
    cookies: dict[int, str],
) -> dict[str, Any]:
    assert gateway.process is not None
    supervisor = psutil.Process(gateway.process.pid)
    time.sleep(1.0)
    before = resident_bytes(supervisor)
    streams = [
        Stream(users[i % len(users)][0], cookies[users[i % len(users)][0]], "ws" if i % 2 else "sse")
        for i in range(args.connections)
    ]
    context = multiprocessing.get_context("spawn")
    ready, results, stop, progress = context.Queue(), context.Queue(), context.Event(), context.Value("q", 0)
    clients = [
        context.Process(
            target=_client_main, args=(gateway.url, streams[k :: args.clients], ready, stop, results, progress)
        )
        for k in range(args.clients)
    ]
    for client in clients:
        client.start()
    held = sum(_collect(ready, clients, 600.0))
    time.sleep(2.0)
    after = resident_bytes(supervisor)
    sent = asyncio.run(write_notifications(database_url, [user_id for user_id, _ in users], args.rate, args.seconds))
    per_user = {user_id: 0 for user_id, _ in users}
    for stream in streams:
        per_user[stream.user_id] += 1
    expected = sum(per_user[users[n % len(users)][0]] for n in range(sent))
    _wait_for_deliveries(progress, expected, args.drain)
    stop.set()
    reports = _collect(results, clients, 300.0)
    delays = [delay for found, _ in reports for delay in found]
    for client in clients:
        client.join(60)
    return {
        "connections": held,
        "sse": sum(1 for s in streams if s.transport == "sse"),
        "websockets": sum(1 for s in streams if s.transport == "ws"),
        "workers": args.workers,
        "sent": sent,
        "expected_deliveries": expected,
        "dropped_streams": sum(dropped for _, dropped in reports),
        "delivered": len(delays),
        "median_delay_s": nearest_rank(delays, 0.5),
        "p99_delay_s": nearest_rank(delays, 0.99),
        "gateway_bytes_per_stream": (after - before) / max(1, held),
    }


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


def _collect(queue: Any, clients: Sequence[Any], timeout: float) -> list[Any]:
    """One report from each client process (ClientFailed if one died first)."""
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(found) < len(clients):
        try:
            found.append(queue.get(timeout=0.5))
        except Empty:
            dead = [c for c in clients if c.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                codes = [c.exitcode for c in clients]
                raise ClientFailed(f"client processes failed or hung (exit codes {codes})") from None
    return found


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
    parser.add_argument("--clients", type=_positive(int, 1), default=4, help="client processes (default 4)")
    parser.add_argument("--rate", type=_positive(float, 0.1), default=100.0, help="notifications/s (default 100)")
    parser.add_argument("--seconds", type=_positive(float, 1), default=20.0, help="writing time (default 20)")
    parser.add_argument(
        "--drain", type=_positive(float, 0), default=10.0, help="stop after s without a delivery (default 10)"
    )
    parser.add_argument("--flask-threads", type=_positive(int, 2), default=64, help="the app's threads (default 64)")
    parser.add_argument("--flask-streams", type=_positive(int, 0), default=60, help="streams tried on it (default 60)")
    args = parser.parse_args(argv)
    if args.connections > 1_000_000:
        parser.error("--connections: at most 1000000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        database_url = database_url_from_env()
    except ConfigError as exc:
        sys.stderr.write(f"python -m course.benchmarks.push: error: {exc}\n")
        return 2
    figures = run_benchmark(args, database_url)
    sys.stdout.write(figures.report() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
