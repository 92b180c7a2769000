"""Database plumbing: aware UTC datetimes, SQLite settings, write transactions.

SQLite allows one writer at a time. A transaction that starts by reading and
later writes (Python's default "deferred" BEGIN) can fail at once with
"database is locked" when another writer got there first, because SQLite
cannot wait for a lock it would deadlock on. Write transactions therefore
start with ``BEGIN IMMEDIATE``: they take the write lock up front and queue
politely behind each other (up to the connection's busy timeout). Read-only
requests (pages, polls) keep a plain ``BEGIN`` and, in WAL mode, never wait
for writers.

Other databases (PostgreSQL, ...) do not need any of this: their row locks
do the serializing, which is why each write first locks the row of the user
it is about (``models.lock_user``, used by ``inbox``). PostgreSQL also refuses
text containing NUL characters; the app answers 400 to any request carrying
one (see ``create_app``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.types import TypeDecorator

from .extensions import db

__all__ = ["UTCDateTime", "configure_engine", "utcnow", "write_transaction"]

# True while the current thread runs a write transaction (see write_transaction).
_immediate: contextvars.ContextVar[bool] = contextvars.ContextVar("immediate", default=False)


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (never ``datetime.utcnow()``)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A DateTime column that only accepts aware datetimes and returns aware UTC.

    Stored as naive UTC, which every database can compare correctly; SQLite
    has no time-zone type, so ``DateTime(timezone=True)`` alone would hand
    back naive values there.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(
                f"naive datetime {value!r}: pass an aware one, e.g. datetime.now(timezone.utc)"
            )
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def configure_engine(engine: Engine) -> None:
    """Apply the SQLite settings above to ``engine``; no-op for other databases."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if _immediate.get() else "BEGIN")


@contextmanager
def write_transaction() -> Iterator[None]:
    """Run the block as one write transaction of ``db.session``, then commit.

    Ends whatever read transaction the request had open (objects loaded
    before are expired and reload inside the new transaction), begins a new
    one that holds SQLite's write lock from its first statement, commits on
    success and rolls back on error.
    """
    token = _immediate.set(True)
    try:
        db.session.commit()
        try:
            yield
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
    finally:
        _immediate.reset(token)
