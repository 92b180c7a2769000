"""Helpers of the gateway's tests: users of the real app, a NOTIFY, an SSE reader."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psycopg

from course import notify
from server.push.store import conninfo

PASSWORD = "correct horse battery"
#: The app's and the gateways' key in these tests.
SECRET_KEY = "push-gateway-tests-" + uuid.uuid4().hex
#: A guard against a hang (never a timing assertion): how long one read may take.
READ_GUARD = 60.0


@dataclass
class Person:
    """A user registered and signed in at the app, with the app's session cookie."""

    name: str
    user_id: int
    session: aiohttp.ClientSession

    @property
    def cookie(self) -> str:
        for morsel in self.session.cookie_jar:
            if morsel.key == "session":
                return morsel.value
        raise AssertionError(f"{self.name} has no session cookie")

    @property
    def headers(self) -> dict[str, str]:
        return {"Cookie": f"session={self.cookie}"}


def query(database_url: str, text: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo(database_url), autocommit=True) as connection:
        cursor = connection.execute(text, params)
        return cursor.fetchall() if cursor.description else []


async def sign_up(app_url: str, database_url: str, prefix: str = "user") -> Person:
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    session = notify.client_session()
    await notify.register(session, app_url, name, PASSWORD)
    await notify.login(session, app_url, name, PASSWORD)
    rows = await asyncio.to_thread(query, database_url, 'SELECT id FROM "user" WHERE username = %s', name)
    return Person(name, int(rows[0][0]), session)


def write_without_notify(database_url: str, user_id: int, name: str = "test_marker") -> int:
    """Store a notification for ``user_id`` as the app's writer does, but send no
    NOTIFY (a lost wake-up); its cursor."""
    with psycopg.connect(conninfo(database_url)) as connection:  # one transaction
        seq = connection.execute(
            'UPDATE "user" SET notification_counter = notification_counter + 1 WHERE id = %s '
            "RETURNING notification_counter",
            (user_id,),
        ).fetchone()
        assert seq is not None
        connection.execute(
            "INSERT INTO notification (name, user_id, seq, timestamp, payload_json) "
            "VALUES (%s, %s, %s, extract(epoch from now()), %s) ON CONFLICT (user_id, name) "
            "DO UPDATE SET seq = excluded.seq, timestamp = excluded.timestamp, payload_json = excluded.payload_json",
            (name, user_id, seq[0], json.dumps({"marker": seq[0]})),
        )
    return int(seq[0])


def wake(database_url: str, user_id: int) -> None:
    """What the app's writer sends on commit (PUSH-CONTRACT.md): NOTIFY with user and seq."""
    rows = query(database_url, 'SELECT notification_counter FROM "user" WHERE id = %s', user_id)
    payload = json.dumps({"user": user_id, "seq": int(rows[0][0])})
    query(database_url, "SELECT pg_notify('notifications', %s)", payload)


async def send(
    app_url: str, database_url: str, sender: Person, recipient: Person, *, notify_gateway: bool = True
) -> None:
    """``sender`` messages ``recipient`` through the app's form (a notification for
    the recipient); then, unless told not to, NOTIFY as the app's writer will."""
    await notify.send_message(sender.session, app_url, recipient.name, f"hello {uuid.uuid4().hex[:6]}")
    if notify_gateway:
        await asyncio.to_thread(wake, database_url, recipient.user_id)


async def app_notifications(app_url: str, person: Person, after: int = 0) -> list[dict[str, Any]]:
    """What the app's own ``/notifications?after=`` answers this person."""
    async with person.session.get(f"{app_url}/notifications", params={"after": str(after)}) as response:
        assert response.status == 200
        result: list[dict[str, Any]] = await response.json()
        return result


@dataclass
class Event:
    """One Server-Sent Event: its fields, and the comment lines around it."""

    fields: dict[str, str] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)


class EventReader:
    """Reads Server-Sent Events off an aiohttp response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self) -> Event | None:
        """The next event (or block of comments); None at the end of the stream."""
        event = Event()
        async with asyncio.timeout(READ_GUARD):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    return None if not (event.fields or event.comments) else event
                line = raw.decode().rstrip("\r\n")
                if line == "":
                    if event.fields or event.comments:
                        return event
                    continue
                if line.startswith(":"):
                    event.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                event.fields[name] = event.fields[name] + "\n" + value if name in event.fields else value

    async def next_data(self) -> Event:
        """The next event that carries data (skipping retry: and comments)."""
        while True:
            event = await self.next()
            assert event is not None, "the stream ended before an event came"
            if "data" in event.fields:
                return event

    async def rest(self) -> list[Event]:
        """Every event until the end of the stream."""
        events = []
        while (event := await self.next()) is not None:
            events.append(event)
        return events
