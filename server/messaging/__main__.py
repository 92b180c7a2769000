"""Command line: serve the app, or create demo data.

    python -m server.messaging [--host 127.0.0.1] [--port 5000] [--threads 64] [--workers N]
    python -m server.messaging seed-demo [--users 5] [--messages 20]

The server is waitress, a production WSGI server with a pool of threads:
each long poll or event stream holds one thread while it waits, so
``--threads`` must exceed the number of clients that hold one at a time.
Past ``--threads`` minus a reserve (``MAX_WAITING_REQUESTS``), waiting
requests are refused with 503 so pages and sends still get a thread.
Waitress sends streamed output as soon as it is written (``send_bytes=1``),
so Server-Sent Events reach the browser at once.

``--workers N`` serves with gunicorn instead: N processes sharing the port,
each with ``--threads`` threads (its ``gthread`` worker) and an app of its
own. Only on PostgreSQL: a message written by one process wakes the waiters
of the others through LISTEN/NOTIFY (see ``hub``); with SQLite it would wait
for their next re-check, so more than one worker is refused there.

Connections that are open but have no request running cost no thread:
waitress's one I/O thread holds up to ``--connection-limit`` of them and
closes those idle for ``--idle-timeout`` seconds (see README.md for what
that absorbs and what it does not).

A bad argument, a port in use, or a setting the app cannot use ends the
program with a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

from flask import Flask
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from server.cli import USAGE_ERROR, OneLineParser, bind_error, raise_open_file_limit, whole_number

from . import ConfigError, create_app
from .extensions import db
from .seed import seed_demo

log = logging.getLogger("server.messaging")

MAX_THREADS = 4096
MAX_WORKERS = 64
#: Seconds gunicorn's workers get to finish their requests on shutdown (long polls
#: and streams are cut after that; their clients reconnect).
GRACEFUL_TIMEOUT = 3
DEFAULT_THREADS = 64
DEFAULT_CONNECTION_LIMIT = 10_000
CONNECTION_LIMITS = (1, 1_000_000)
DEFAULT_IDLE_TIMEOUT = 30
IDLE_TIMEOUTS = (1, 3600)
#: Descriptors kept free beyond the connections: the listening socket, the
#: database files of each thread's connection, logs.
_FILE_RESERVE = 64


class UsageError(Exception):
    """A command-line argument or setting the program cannot use."""


def _parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m server.messaging", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=whole_number(0, 65535, " (0: any free port)"),
        default=5000,
        help="port, 1-65535, or 0 for any free port (the log says which); default 5000",
    )
    parser.add_argument(
        "--threads",
        type=whole_number(1, MAX_THREADS),
        default=None,
        help=f"worker threads, 1-{MAX_THREADS}; each open long poll or stream holds one "
        f"(default {DEFAULT_THREADS}, or $MESSAGING_THREADS)",
    )
    parser.add_argument(
        "--connection-limit",
        type=whole_number(*CONNECTION_LIMITS),
        default=None,
        help=f"open connections accepted at once (default {DEFAULT_CONNECTION_LIMIT}, or "
        "$MESSAGING_CONNECTION_LIMIT; lowered to what the open-file limit allows)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=whole_number(*IDLE_TIMEOUTS),
        default=None,
        help=f"seconds before a connection with no request running is closed (default {DEFAULT_IDLE_TIMEOUT}, "
        "or $MESSAGING_IDLE_TIMEOUT)",
    )
    parser.add_argument(
        "--workers",
        type=whole_number(1, MAX_WORKERS),
        default=None,
        help=f"serve with gunicorn in this many processes, 1-{MAX_WORKERS}, each with --threads threads "
        "(more than 1 needs DATABASE_URL on PostgreSQL); default: one waitress process",
    )
    commands = parser.add_subparsers(dest="command", parser_class=OneLineParser)
    seed = commands.add_parser("seed-demo", help="create users user1..userN (password 'password') and messages")
    seed.add_argument("--users", type=whole_number(1, 100_000), default=5, help="how many users (default 5)")
    seed.add_argument("--messages", type=whole_number(0, 1_000_000), default=20, help="how many messages (default 20)")
    seed.add_argument("--seed", type=whole_number(0, 2**63 - 1), default=0, help="random seed (default 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except UsageError as exc:
        parser.error(str(exc))
    except ConfigError as exc:
        parser.exit(USAGE_ERROR, f"{parser.prog}: error: {exc}\n")
    except SQLAlchemyError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        status = USAGE_ERROR if isinstance(exc, ArgumentError) else 1
        parser.exit(status, f"{parser.prog}: error: cannot use the database: {detail}\n")


def _run(args: argparse.Namespace) -> int:
    threads = _from_env(args.threads, "MESSAGING_THREADS", DEFAULT_THREADS, 1, MAX_THREADS)
    wanted_connections = _from_env(
        args.connection_limit, "MESSAGING_CONNECTION_LIMIT", DEFAULT_CONNECTION_LIMIT, *CONNECTION_LIMITS
    )
    idle_timeout = _from_env(args.idle_timeout, "MESSAGING_IDLE_TIMEOUT", DEFAULT_IDLE_TIMEOUT, *IDLE_TIMEOUTS)
    if args.command == "seed-demo" and args.users < 2 and args.messages:
        raise UsageError("messages need at least 2 users: pass --users 2 or more, or --messages 0")
    if args.command is None:
        if not os.environ.get("SECRET_KEY") and not is_loopback(args.host):
            raise UsageError(
                f"--host {args.host} lets other machines connect: set SECRET_KEY to a long random value first "
                "(without it the app signs sessions with a key generated in its instance folder, fine on loopback)"
            )
        if args.workers is not None and args.workers > 1 and _database_url().startswith("sqlite"):
            raise UsageError(
                f"--workers {args.workers} needs PostgreSQL (DATABASE_URL=postgresql+psycopg://...): "
                "on SQLite a message sent through one process would not wake the others' waiters"
            )
        _check_can_listen(args.host, args.port)  # before the database is created or migrated

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = {}
    if "MAX_WAITING_REQUESTS" not in os.environ:
        # Keep threads free for pages and sends however many clients wait.
        overrides["MAX_WAITING_REQUESTS"] = max(1, threads - max(4, threads // 8))
    if args.command is None and args.workers is not None:
        _migrate_then_let_go(create_app({**overrides, "NOTIFY_LISTEN": False}))  # once, before the fork
        return _serve_with_gunicorn(args, overrides, threads, wanted_connections, idle_timeout)
    app = create_app(overrides)

    if args.command == "seed-demo":
        report = seed_demo(app, users=args.users, messages=args.messages, seed=args.seed)
        sys.stdout.write(
            f"users: {', '.join(report.usernames)} (password: {report.password!r}); "
            f"{report.users_created} created, {report.messages_sent} messages sent\n"
        )
        return 0

    from waitress.server import MultiSocketServer, create_server

    connection_limit = _connection_limit(wanted_connections, threads)
    try:
        server = create_server(
            app,
            host=args.host,
            port=args.port,
            threads=threads,
            connection_limit=connection_limit,
            asyncore_use_poll=True,  # select() stops at 1024 descriptors
            # A connection with no request running is closed after this long idle;
            # checked every few seconds (waitress's default is every 30 s).
            channel_timeout=idle_timeout,
            cleanup_interval=min(5, idle_timeout),
            # Keep reading while a request runs, so a waiting long poll or stream
            # notices its client hung up (environ["waitress.client_disconnected"]).
            channel_request_lookahead=4,
            # Refuse a larger body before reading it all (Flask checks it again).
            max_request_body_size=app.config["MAX_CONTENT_LENGTH"],
            ident="messaging",
        )
    except OSError as exc:
        raise UsageError(bind_error(args.host, args.port, exc)) from None
    if isinstance(server, MultiSocketServer):
        listening = list(server.effective_listen)
    else:
        address, number = server.getsockname()
        listening = [(address, int(number))]
    for host, port in listening:
        log.info(
            "messaging app on http://%s:%s with %d threads, at most %s waiting requests, %d connections",
            f"[{host}]" if ":" in str(host) else host,
            port,
            threads,
            app.config["MAX_WAITING_REQUESTS"] or "unlimited",
            connection_limit,
        )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def _migrate_then_let_go(app: Flask) -> None:
    """Close the connections of an app made only to migrate: workers must not inherit them."""
    with app.app_context():
        db.engine.dispose()


def _database_url() -> str:
    from . import config_from_env

    return str(config_from_env()["SQLALCHEMY_DATABASE_URI"])


def _serve_with_gunicorn(
    args: argparse.Namespace, overrides: dict[str, Any], threads: int, wanted_connections: int, idle_timeout: int
) -> int:
    """Run gunicorn's master here: ``args.workers`` processes, each building its own app.

    The database was brought up to date before (once, here); each worker
    creates its app after the fork, so its database connections and its
    LISTEN thread are its own.
    """
    from gunicorn.app.base import BaseApplication  # untyped: see the mypy overrides

    settings: dict[str, Any] = {
        "bind": [f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"],
        "workers": args.workers,
        "worker_class": "gthread",
        "threads": threads,
        "worker_connections": _connection_limit(wanted_connections, threads * args.workers),
        "keepalive": idle_timeout,
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "control_socket_disable": True,  # several servers on one machine would share its path
        "proc_name": "messaging",
    }

    class MessagingApplication(BaseApplication):
        def load_config(self) -> None:
            for key, value in settings.items():
                if key in self.cfg.settings:  # older gunicorn: no control socket
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app(overrides, upgrade=False)

    log.info(
        "messaging app on http://%s:%s with %d gunicorn workers of %d threads, at most %s waiting requests each",
        f"[{args.host}]" if ":" in args.host else args.host,
        args.port,
        args.workers,
        threads,
        overrides.get("MAX_WAITING_REQUESTS") or os.environ.get("MAX_WAITING_REQUESTS", "unlimited"),
    )
    MessagingApplication().run()
    return 0


def _from_env(given: int | None, variable: str, default: int, low: int, high: int) -> int:
    """The option's value if given, else the environment variable's, else ``default``."""
    if given is not None:
        return given
    text = os.environ.get(variable, str(default))
    try:
        return whole_number(low, high)(text)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{variable}={text!r}: {exc}") from None


def is_loopback(host: str) -> bool:
    """Is ``host`` reachable from this machine only (127.0.0.0/8, ::1, localhost)?"""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    if not host:
        return False  # "" means every interface
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


def _connection_limit(wanted: int, threads: int) -> int:
    """``wanted``, lowered if the open-file limit cannot hold that many sockets.

    Raises the soft ``RLIMIT_NOFILE`` as far as the hard one allows, as
    servers commonly do (the usual soft default, 1024, is far too low).
    """
    needed = wanted + 3 * threads + _FILE_RESERVE  # a SQLite connection per thread: 3 files
    soft = raise_open_file_limit(needed)
    if soft >= needed:
        return wanted
    allowed = max(1, soft - 3 * threads - _FILE_RESERVE)
    log.warning(
        "the open-file limit (%d) holds only %d connections, not %d: raise it (ulimit -n) to accept more",
        soft,
        allowed,
        wanted,
    )
    return allowed


def _check_can_listen(host: str, port: int) -> None:
    """Raise ``UsageError`` now if ``host:port`` cannot be listened on (e.g. in use)."""
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, protocol, _, address in addresses:
            with socket.socket(family, kind, protocol) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as waitress does
                probe.bind(address)
    except OSError as exc:
        raise UsageError(bind_error(host, port, exc)) from None


if __name__ == "__main__":
    sys.exit(main())
