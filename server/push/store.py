"""The gateway's database side: a small pool, one reading connection, one LISTEN connection.

Session look-ups and the periodic re-check use the app's own tables
(``server.messaging.models``) through an asyncio SQLAlchemy engine on
psycopg 3. What woken users are owed is read on a connection of its own
with one prepared statement for a whole batch of users (``owed``): one round
trip however many users a burst of NOTIFYs woke, and none of the cost of
building a query per user. The listener is a plain psycopg
``AsyncConnection`` in autocommit mode that runs ``LISTEN notifications``
and reports each ``NOTIFY`` payload ``{"user": <id>, "seq": <cursor>}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

import psycopg
from psycopg import sql
from sqlalchemy import bindparam, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.messaging.models import User

from .settings import NOTIFY_CHANNEL

__all__ = [
    "OWED_QUERY",
    "Item",
    "Listener",
    "SessionUser",
    "Store",
    "UserState",
    "Wakeup",
    "conninfo",
    "listener_name",
    "parse_wakeup",
]

log = logging.getLogger(__name__)

#: The notifications owed to a batch of users: each user's rows past that user's cursor, in order.
OWED_QUERY = """
SELECT n.user_id, n.seq, n.name, n.payload_json, n.timestamp
FROM unnest(%s::integer[], %s::integer[]) AS owed (user_id, after)
JOIN notification AS n ON n.user_id = owed.user_id AND n.seq > owed.after
ORDER BY n.user_id, n.seq
"""

#: Built once (building a SQLAlchemy statement costs more than running it).
_SESSION_USER = select(User.id, User.notification_counter).where(User.session_token == bindparam("token"))
#: The users as one array parameter: an IN list of thousands of placeholders costs
#: the driver more to convert on every re-check than the database takes to answer.
_USER_STATES = text('SELECT id, notification_counter, session_token FROM "user" WHERE id = ANY(:ids)')


@dataclass(frozen=True)
class Item:
    """One notification to push: its cursor, its JSON object and that object as text."""

    seq: int
    record: dict[str, Any]
    text: str


def item(seq: int, name: str, payload_json: str, timestamp: float) -> Item:
    """The ``Notification.to_dict()`` shape of the app, from a row's columns."""
    record = {"id": seq, "name": name, "data": json.loads(payload_json), "timestamp": timestamp}
    return Item(seq, record, json.dumps(record))


@dataclass(frozen=True)
class UserState:
    """What the periodic re-check reads of a user: the newest cursor, the current session token."""

    counter: int
    session_token: str


@dataclass(frozen=True)
class SessionUser:
    """The user a session token names, and that user's newest cursor when it was read."""

    user_id: int
    counter: int


@dataclass(frozen=True)
class Wakeup:
    """A NOTIFY: ``user`` has a notification with cursor ``seq`` (0: the payload named none)."""

    user: int
    seq: int = 0


class Store:
    """Reads of the app's database (the source of truth), a few connections at most."""

    def __init__(self, database_url: str, pool_size: int = 4) -> None:
        self.engine: AsyncEngine = create_async_engine(
            database_url,
            pool_size=pool_size,
            max_overflow=0,
            pool_pre_ping=True,
            pool_timeout=30,
        )
        self._conninfo = conninfo(database_url)
        self._reader: psycopg.AsyncConnection[Any] | None = None

    async def session_user(self, token: str) -> SessionUser | None:
        """The user whose ``session_token`` this is (if any), with their newest cursor:
        a stream whose cursor is already there is owed nothing yet, and needs no read."""
        async with self.engine.connect() as connection:
            found = (await connection.execute(_SESSION_USER, {"token": token})).first()
        return None if found is None else SessionUser(int(found[0]), int(found[1] or 0))

    async def owed(self, cursors: Mapping[int, int]) -> dict[int, list[Item]]:
        """Each user's notifications with a cursor above theirs (``cursors``: user id -> cursor),
        in cursor order; users owed nothing are absent. One query, on the reading connection
        (opened again if it was lost; psycopg.Error/OSError if the database does not answer)."""
        if not cursors:
            return {}
        if self._reader is None or self._reader.closed:
            self._reader = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, application_name=f"server.push reader {os.getpid()}"
            )
        users = list(cursors)
        try:
            result = await self._reader.execute(OWED_QUERY, (users, [cursors[u] for u in users]), prepare=True)
            rows = await result.fetchall()
        except (psycopg.OperationalError, OSError):
            await self._reader.close()
            raise
        found: dict[int, list[Item]] = {}
        for user_id, seq, name, payload_json, timestamp in rows:
            found.setdefault(int(user_id), []).append(item(int(seq), name, payload_json, float(timestamp)))
        return found

    async def user_states(self, user_ids: Iterable[int]) -> dict[int, UserState]:
        """Each user's newest cursor and session token (deleted users: absent)."""
        found: dict[int, UserState] = {}
        async with self.engine.connect() as connection:
            for user_id, counter, token in (await connection.execute(_USER_STATES, {"ids": list(user_ids)})).all():
                found[int(user_id)] = UserState(int(counter or 0), str(token))
        return found

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
        await self.engine.dispose()


def parse_wakeup(payload: str) -> Wakeup | None:
    """The user (and cursor) a NOTIFY payload names, or None if it names no user."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    user, seq = data.get("user"), data.get("seq")
    if not _whole(user):
        return None
    return Wakeup(user, seq if _whole(seq) else 0)


def _whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def conninfo(database_url: str) -> str:
    url = make_url(database_url)
    options: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
    }
    options.update({key: value for key, value in url.query.items() if isinstance(value, str)})
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in options.items() if v is not None})


def listener_name(pid: int) -> str:
    """The ``application_name`` of a gateway process's LISTEN connection (see ``pg_stat_activity``)."""
    return f"server.push listener {pid}"


class Listener:
    """One ``LISTEN`` connection, reconnected when it drops.

    ``on_wakeup(wakeup)`` runs for each NOTIFY that names a user;
    ``on_connected()`` after each (re)connection, since NOTIFYs sent while it
    was away are lost: the caller re-reads everything then.
    """

    def __init__(
        self,
        database_url: str,
        on_wakeup: Callable[[Wakeup], None],
        on_connected: Callable[[], None],
        *,
        channel: str = NOTIFY_CHANNEL,
        retry_seconds: float = 1.0,
    ) -> None:
        self._conninfo = conninfo(database_url)
        self._on_wakeup = on_wakeup
        self._on_connected = on_connected
        self._channel = channel
        self._retry_seconds = retry_seconds
        self.connected = False
        self.wakeups = 0

    async def run(self) -> None:
        """Listen until cancelled."""
        delay = self._retry_seconds
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError) as exc:
                if self.connected:  # it had worked: try again soon
                    delay = self._retry_seconds
                log.warning("LISTEN connection lost (%s); reconnecting in %.0f s", exc, delay)
            finally:
                self.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _listen(self) -> None:
        connection = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, application_name=listener_name(os.getpid())
        )
        async with connection:
            await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            self.connected = True
            self._on_connected()
            log.info("listening to PostgreSQL channel %r", self._channel)
            async for notice in connection.notifies():
                wakeup = parse_wakeup(notice.payload)
                if wakeup is None:
                    log.warning("ignored a NOTIFY that names no user: %.200r", notice.payload)
                    continue
                self.wakeups += 1
                self._on_wakeup(wakeup)
