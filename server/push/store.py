"""The gateway's database side: reads through a small pool, and one LISTEN connection.

Reads use the app's own tables (``server.messaging.models``) through an
asyncio SQLAlchemy engine on psycopg 3. The listener is a plain psycopg
``AsyncConnection`` in autocommit mode that runs ``LISTEN notifications``
and reports each ``NOTIFY`` payload ``{"user": <id>, "seq": <cursor>}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.messaging.models import Notification, User

from .settings import NOTIFY_CHANNEL

__all__ = ["Item", "Listener", "Store", "UserState", "conninfo", "listener_name", "parse_wakeup"]

log = logging.getLogger(__name__)

#: How many user ids one re-check query asks about.
_RECHECK_CHUNK = 2000


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

    async def user_for_token(self, token: str) -> int | None:
        """The id of the user whose ``session_token`` this is, if any."""
        async with self.engine.connect() as connection:
            found = await connection.scalar(select(User.id).where(User.session_token == token))
        return None if found is None else int(found)

    async def notifications_after(self, user_id: int, after: int) -> list[Item]:
        """The user's notifications with a cursor above ``after``, in cursor order."""
        query = (
            select(Notification.seq, Notification.name, Notification.payload_json, Notification.timestamp)
            .where(Notification.user_id == user_id, Notification.seq > after)
            .order_by(Notification.seq)
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [item(*row) for row in rows]

    async def user_states(self, user_ids: Iterable[int]) -> dict[int, UserState]:
        """Each user's newest cursor and session token, asked in chunks (deleted users: absent)."""
        ids = list(user_ids)
        found: dict[int, UserState] = {}
        async with self.engine.connect() as connection:
            for start in range(0, len(ids), _RECHECK_CHUNK):
                chunk = ids[start : start + _RECHECK_CHUNK]
                query = select(User.id, User.notification_counter, User.session_token).where(User.id.in_(chunk))
                for user_id, counter, token in (await connection.execute(query)).all():
                    found[int(user_id)] = UserState(int(counter or 0), str(token))
        return found

    async def close(self) -> None:
        await self.engine.dispose()


def parse_wakeup(payload: str) -> int | None:
    """The user id a NOTIFY payload names, or None if it names none."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    user = data.get("user") if isinstance(data, dict) else None
    return user if isinstance(user, int) and not isinstance(user, bool) else None


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

    ``on_wakeup(user_id)`` runs for each NOTIFY that names a user;
    ``on_connected()`` after each (re)connection, since NOTIFYs sent while it
    was away are lost: the caller re-reads everything then.
    """

    def __init__(
        self,
        database_url: str,
        on_wakeup: Callable[[int], None],
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
                user_id = parse_wakeup(notice.payload)
                if user_id is None:
                    log.warning("ignored a NOTIFY that names no user: %.200r", notice.payload)
                    continue
                self.wakeups += 1
                self._on_wakeup(user_id)
