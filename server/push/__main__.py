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
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace

import psycopg

from server.cli import USAGE_ERROR, OneLineParser, whole_number

from .serving import BindError, bind, run_worker, supervise
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

DATABASE_ERROR = 1
MAX_WORKERS = 64


class UsageError(Exception):
    """A command-line argument or setting the program cannot use."""


class DatabaseUnusable(Exception):
    """The database does not answer, or lacks the app's tables."""


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


def _parser() -> OneLineParser:
    defaults = Settings(database_url="", secret_key="")
    parser = OneLineParser(prog="python -m server.push", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=whole_number(0, 65535, " (0: any free port)"),
        default=defaults.port,
        help=f"port, 1-65535, or 0 for any free port (the log says which); default {defaults.port}",
    )
    parser.add_argument(
        "--workers",
        type=whole_number(1, MAX_WORKERS),
        default=1,
        help=f"processes on the port, 1-{MAX_WORKERS} (default 1)",
    )
    parser.add_argument(
        "--max-connections",
        type=whole_number(1, 1_000_000),
        default=defaults.max_connections,
        help=f"open streams per process; more get 503 + Retry-After (default {defaults.max_connections})",
    )
    parser.add_argument(
        "--max-per-user",
        type=whole_number(0, 1_000_000),
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
        type=whole_number(0, 3_600_000),
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
        type=whole_number(1, 100),
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
        reservation = bind(settings.host, settings.port, reuse_port=settings.workers > 1)
        check_database(settings.database_url)
    except (UsageError, BindError, ConfigError) as exc:
        parser.exit(USAGE_ERROR, f"{parser.prog}: error: {exc}\n")
    except DatabaseUnusable as exc:
        parser.exit(DATABASE_ERROR, f"{parser.prog}: error: cannot use the database: {exc}\n")
    if settings.workers == 1:
        return run_worker(settings, reservation)
    with reservation:
        # Keep the port (bound, not listening) for the workers to share.
        settings = replace(settings, port=int(reservation.getsockname()[1]))
        return supervise(settings)


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


if __name__ == "__main__":
    sys.exit(main())
