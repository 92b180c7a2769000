"""The gateway's settings: one record, checked before anything listens.

The command line (``__main__``) fills most fields; two come from the
environment because the Flask app reads them from there too:

``DATABASE_URL``     the app's database, a PostgreSQL URL
                     (``postgresql+psycopg://user:pw@host:port/db``): the
                     gateway needs ``LISTEN``/``NOTIFY``, which SQLite lacks
``SECRET_KEY``       the app's key; without it no session cookie can be checked
``ALLOWED_ORIGINS``  comma-separated origins (``http://host:port``) whose pages
                     may open streams, when ``--allow-origin`` is not given
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = [
    "NOTIFY_CHANNEL",
    "ConfigError",
    "Settings",
    "database_url_from_env",
    "origins_from_text",
    "parse_origin",
    "secret_key_from_env",
]

#: The PostgreSQL channel the app's writers ``NOTIFY`` (the app's ``hub.NOTIFY_CHANNEL``).
NOTIFY_CHANNEL = "notifications"


class ConfigError(ValueError):
    """A setting the gateway cannot use; the message says what to change."""


@dataclass(frozen=True)
class Settings:
    """Everything one gateway process needs (picklable: workers get a copy)."""

    database_url: str
    secret_key: str
    host: str = "127.0.0.1"
    port: int = 8090
    workers: int = 1
    #: Open streams (SSE and WebSocket) one process holds; past it: 503.
    max_connections: int = 10_000
    #: Open streams one user may hold in one process; past it: 429.
    max_per_user: int = 8
    #: Idle seconds before an SSE comment / a WebSocket ping.
    heartbeat: float = 15.0
    #: Seconds between re-reads that cover a missed NOTIFY.
    recheck: float = 5.0
    #: Reconnection delay told to EventSource (``retry:``), in milliseconds.
    retry_ms: int = 2000
    #: Seconds open streams get to be told to reconnect on shutdown.
    shutdown_grace: float = 5.0
    #: Origins whose pages may open streams; empty: the request's own host name.
    allowed_origins: tuple[str, ...] = ()
    #: Database connections for reads, per process (the LISTEN one is extra).
    pool_size: int = 4


def database_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    """``DATABASE_URL``, checked to be a PostgreSQL URL."""
    env = os.environ if environ is None else environ
    text = env.get("DATABASE_URL", "").strip()
    if not text:
        raise ConfigError(
            "DATABASE_URL is not set: give the messaging app's PostgreSQL database, "
            "e.g. postgresql+psycopg://user:password@127.0.0.1:5432/messaging"
        )
    return postgresql_url(text).render_as_string(hide_password=False)


def postgresql_url(text: str) -> URL:
    """``text`` as a SQLAlchemy URL for the psycopg 3 driver; ConfigError if not PostgreSQL."""
    try:
        url = make_url(text)
    except ArgumentError:
        raise ConfigError(f"DATABASE_URL is not a database URL: {_hide_password(text)!r}") from None
    if url.get_backend_name() != "postgresql":
        raise ConfigError(
            f"DATABASE_URL must be a PostgreSQL database (the gateway needs LISTEN/NOTIFY), "
            f"not {url.get_backend_name()!r}: run the app on PostgreSQL and give its URL"
        )
    if url.get_driver_name() not in ("psycopg", "psycopg2", "asyncpg", "pg8000", "psycopg_async"):
        raise ConfigError(f"DATABASE_URL names an unknown PostgreSQL driver {url.get_driver_name()!r}")
    return url.set(drivername="postgresql+psycopg")


def _hide_password(text: str) -> str:
    parts = urlsplit(text)
    if parts.password:
        return text.replace(parts.password, "***")
    return text


def secret_key_from_env(environ: Mapping[str, str] | None = None) -> str:
    """``SECRET_KEY``: required, since the gateway verifies the app's cookies with it."""
    env = os.environ if environ is None else environ
    key = env.get("SECRET_KEY", "")
    if not key.strip():
        raise ConfigError(
            "SECRET_KEY is not set: give the messaging app's SECRET_KEY, or the gateway "
            "cannot check anyone's session cookie"
        )
    return key


def parse_origin(text: str) -> str:
    """``text`` as an origin ``scheme://host[:port]`` (lower case); ConfigError otherwise."""
    parts = urlsplit(text.strip())
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"origin {text!r} has a bad port") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ConfigError(f"origin {text!r} is not of the form http(s)://host[:port]")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def origins_from_text(texts: Sequence[str]) -> tuple[str, ...]:
    """Origins from ``--allow-origin`` values or ``ALLOWED_ORIGINS`` (each comma-separated)."""
    found: list[str] = []
    for text in texts:
        for piece in text.split(","):
            if piece.strip():
                origin = parse_origin(piece)
                if origin not in found:
                    found.append(origin)
    return tuple(found)
