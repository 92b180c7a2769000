"""Command line: ``python -m server.push [--host 127.0.0.1] [--port 8090] [--workers 1] ...``.

Reads ``DATABASE_URL`` (the messaging app's PostgreSQL database) and
``SECRET_KEY`` (the app's) from the environment; ``ALLOWED_ORIGINS`` too
when no ``--allow-origin`` is given. With ``--workers M`` it runs M
processes that each listen on the same port (``SO_REUSEPORT``: the kernel
spreads new connections among them), each with its own ``LISTEN``
connection; the first process only starts and watches them (a worker that
dies is started again) and passes SIGTERM on.

SIGTERM (or Ctrl-C) stops accepting, tells every open stream to reconnect
(SSE ``retry:`` then the end of the response; WebSocket close 1012), waits up
to ``--shutdown-grace`` seconds for them to go, then exits.

A bad argument or setting ends the program with a one-line error and exit
status 2; a database it cannot use, with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import NoReturn

import psycopg
from aiohttp import web

from .app import Gateway
from .settings import (
    ConfigError,
    Settings,
    database_url_from_env,
    origins_from_text,
    postgresql_url,
    secret_key_from_env,
)
from .store import conninfo

log = logging.getLogger("server.push")

USAGE_ERROR = 2
DATABASE_ERROR = 1
MAX_WORKERS = 64
#: Descriptors kept free beyond the streams: listening socket, database connections, logs.
_FILE_RESERVE = 64


class UsageError(Exception):
    """A command-line argument or setting the program cannot use."""


class DatabaseUnusable(Exception):
    """The database does not answer, or lacks the app's tables."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def _whole_number(low: int, high: int, meaning: str = "") -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {low} to {high}{meaning}")
        return value

    return parse


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range: use {low:g} to {high:g} seconds")
        return value

    return parse


def _parser() -> _Parser:
    defaults = Settings(database_url="", secret_key="")
    parser = _Parser(prog="python -m server.push", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=_whole_number(0, 65535, " (0: any free port)"),
        default=defaults.port,
        help=f"port, 1-65535, or 0 for any free port (the log says which); default {defaults.port}",
    )
    parser.add_argument(
        "--workers",
        type=_whole_number(1, MAX_WORKERS),
        default=1,
        help=f"processes on the port, 1-{MAX_WORKERS} (default 1)",
    )
    parser.add_argument(
        "--max-connections",
        type=_whole_number(1, 1_000_000),
        default=defaults.max_connections,
        help=f"open streams per process; more get 503 + Retry-After (default {defaults.max_connections})",
    )
    parser.add_argument(
        "--max-per-user",
        type=_whole_number(0, 1_000_000),
        default=defaults.max_per_user,
        help=f"open streams of one user per process; more get 429 (default {defaults.max_per_user}; 0: no cap)",
    )
    parser.add_argument(
        "--heartbeat",
        type=_seconds(0.1, 3600),
        default=defaults.heartbeat,
        help=f"idle seconds before an SSE comment or a WebSocket ping (default {defaults.heartbeat:g})",
    )
    parser.add_argument(
        "--recheck",
        type=_seconds(0.1, 3600),
        default=defaults.recheck,
        help=f"seconds between re-reads that cover a missed NOTIFY (default {defaults.recheck:g})",
    )
    parser.add_argument(
        "--retry-ms",
        type=_whole_number(0, 3_600_000),
        default=defaults.retry_ms,
        help=f"reconnection delay told to EventSource, ms (default {defaults.retry_ms})",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=_seconds(0, 600),
        default=defaults.shutdown_grace,
        help=f"seconds streams get to be told to reconnect at shutdown (default {defaults.shutdown_grace:g})",
    )
    parser.add_argument(
        "--pool-size",
        type=_whole_number(1, 100),
        default=defaults.pool_size,
        help=f"database connections for reads per process (default {defaults.pool_size})",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="an origin (http(s)://host[:port]) whose pages may open streams; repeat for more "
        "(default: $ALLOWED_ORIGINS, comma-separated, else any port of the request's host name)",
    )
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """The ``Settings`` of parsed arguments and the environment (UsageError/ConfigError)."""
    if not args.host.strip():
        raise UsageError("--host is empty: give an address such as 127.0.0.1")
    origins = origins_from_text(args.allow_origin or [os.environ.get("ALLOWED_ORIGINS", "")])
    return Settings(
        database_url=database_url_from_env(),
        secret_key=secret_key_from_env(),
        host=args.host,
        port=args.port,
        workers=args.workers,
        max_connections=args.max_connections,
        max_per_user=args.max_per_user,
        heartbeat=args.heartbeat,
        recheck=args.recheck,
        retry_ms=args.retry_ms,
        shutdown_grace=args.shutdown_grace,
        allowed_origins=origins,
        pool_size=args.pool_size,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from(args)
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s[%(process)d]: %(message)s")
        check_database(settings.database_url)
        reservation = _bind(settings.host, settings.port, reuse_port=settings.workers > 1)
    except (UsageError, ConfigError) as exc:
        parser.exit(USAGE_ERROR, f"{parser.prog}: error: {exc}\n")
    except DatabaseUnusable as exc:
        parser.exit(DATABASE_ERROR, f"{parser.prog}: error: cannot use the database: {exc}\n")
    if settings.workers == 1:
        return run_worker(settings, reservation)
    with reservation:
        # Keep the port (bound, not listening) for the workers to share.
        settings = replace(settings, port=int(reservation.getsockname()[1]))
        return _supervise(settings)


def check_database(database_url: str) -> None:
    """Connect once and look for the app's tables: DatabaseUnusable with the reason."""
    try:
        url = postgresql_url(database_url)
        with psycopg.connect(conninfo(url.render_as_string(hide_password=False)), connect_timeout=10) as connection:
            connection.execute('SELECT id, session_token, notification_counter FROM "user" LIMIT 0')
            connection.execute("SELECT user_id, seq, name, payload_json, timestamp FROM notification LIMIT 0")
    except psycopg.errors.UndefinedTable:
        raise DatabaseUnusable(
            "it has no messaging tables: start the messaging app on it once (it creates them)"
        ) from None
    except psycopg.Error as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnusable(detail) from None


def _bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A socket bound to ``host:port`` (UsageError with the reason if it cannot be)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, protocol, _, address = infos[0]
        sock = socket.socket(family, kind, protocol)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
        except BaseException:
            sock.close()
            raise
    except OSError as exc:
        raise UsageError(_bind_error(host, port, exc)) from None
    return sock


def _bind_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use: stop the program using it, or pick another --port"
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on port {port} of {host}: pick a port above 1023"
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on --host {host}: not an address of this machine ({exc.strerror or exc})"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


# -- one process -----------------------------------------------------------------------------


def run_worker(settings: Settings, sock: socket.socket | None = None) -> int:
    """Serve until SIGTERM/SIGINT; ``sock``: a bound socket to listen on (else bind anew)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s[%(process)d]: %(message)s")
    raise_open_file_limit(settings.max_connections + _FILE_RESERVE)
    if sock is None:
        sock = _bind(settings.host, settings.port, reuse_port=settings.workers > 1)
    asyncio.run(serve(settings, sock))
    return 0


async def serve(settings: Settings, sock: socket.socket) -> None:
    gateway = Gateway(settings)
    runner = web.AppRunner(gateway.make_app(), handler_cancellation=True, access_log=None)
    await runner.setup()
    sock.listen(1024)
    site = web.SockSite(runner, sock)
    await site.start()
    host, port = sock.getsockname()[:2]
    log.info(
        "push gateway on http://%s:%s (pid %d): at most %d streams, %s per user",
        f"[{host}]" if ":" in str(host) else host,
        port,
        os.getpid(),
        settings.max_connections,
        settings.max_per_user or "unlimited",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("stopping: telling %d open streams to reconnect", gateway.fanout.connections())
        await site.stop()  # no new connections
        await gateway.close_streams(settings.shutdown_grace)
    finally:
        await runner.cleanup()


def raise_open_file_limit(wanted: int) -> int:
    """Raise the soft ``RLIMIT_NOFILE`` towards ``wanted`` (up to the hard limit); the new soft limit."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < wanted:
        log.warning("the open-file limit (%d) is below %d: raise it (ulimit -n) to hold more streams", soft, wanted)
    return int(soft)


# -- several processes -----------------------------------------------------------------------


def _worker_main(settings: Settings) -> None:  # pragma: no cover - runs in a child
    _die_with_parent()
    sys.exit(run_worker(settings))


def _die_with_parent() -> None:  # pragma: no cover - runs in a child
    """Linux: have the kernel SIGTERM this worker if the supervisor dies."""
    if sys.platform != "linux":
        return
    import ctypes

    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _supervise(settings: Settings) -> int:
    """Run ``settings.workers`` worker processes; restart one that dies; pass SIGTERM on."""
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker_main, args=(settings,), name="push-worker")
        process.start()
        return process

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    workers = [start() for _ in range(settings.workers)]
    log.info("push gateway: %d workers on port %d", settings.workers, settings.port)
    while not stopping:
        multiprocessing.connection.wait([w.sentinel for w in workers], timeout=0.5)
        for index, worker in enumerate(workers):
            if not worker.is_alive() and not stopping:
                log.warning("worker %s exited with %s; starting another", worker.pid, worker.exitcode)
                time.sleep(0.5)
                workers[index] = start()
    for worker in workers:
        if worker.is_alive() and worker.pid is not None:
            os.kill(worker.pid, signal.SIGTERM)
    for worker in workers:
        worker.join(settings.shutdown_grace + 10)
        if worker.is_alive():
            worker.kill()
            worker.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
