"""The checkers' own messaging app (lessons 01 and 02): one per process, on a free port.

A checker judges a learner's client from the other end of the wire: it runs
the answer against this app, then reads what the app stored in its SQLite
database. Every check makes fresh users (:func:`fresh_names`), so checks never
see each other's messages or notifications.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import sqlite3
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from course import notify
from course.servers import FAST_HASH, ServerHandle, start_messaging_app

__all__ = ["CHECKER_PASSWORD", "CheckerApp", "checker_messaging_app", "fresh_names", "register_all"]

CHECKER_PASSWORD = "checker-password"


@dataclass(frozen=True)
class CheckerApp:
    """The checkers' messaging app: its URL and its database file."""

    server: ServerHandle
    database: Path

    @property
    def url(self) -> str:
        return self.server.url

    def connect(self) -> sqlite3.Connection:
        """A connection to the app's database (the app runs SQLite in WAL mode: readers never wait)."""
        connection = sqlite3.connect(self.database, timeout=30)
        connection.execute("PRAGMA busy_timeout=30000")
        return connection

    def user_id(self, username: str) -> int:
        with self.connect() as connection:
            row = connection.execute("SELECT id FROM user WHERE username = ?", (username,)).fetchone()
        if row is None:
            raise LookupError(f"no user {username!r} in the checkers' app")
        return int(row[0])

    def messages(self, sender: str, recipient: str) -> list[str]:
        """Bodies of the messages stored from ``sender`` to ``recipient``, oldest first."""
        query = (
            "SELECT m.body FROM message m JOIN user s ON m.sender_id = s.id JOIN user r ON m.recipient_id = r.id "
            "WHERE s.username = ? AND r.username = ? ORDER BY m.id"
        )
        with self.connect() as connection:
            return [row[0] for row in connection.execute(query, (sender, recipient))]

    def add_notification(self, username: str, name: str, data: str, timestamp: float) -> int:
        """Store a notification with a timestamp of the checker's choosing (replacing one of
        the same name), numbered as the app numbers them; returns its cursor."""
        user_id = self.user_id(username)
        with self.connect() as connection:  # one transaction, as the app's own write
            connection.execute(
                "UPDATE user SET notification_counter = notification_counter + 1 WHERE id = ?", (user_id,)
            )
            (seq,) = connection.execute("SELECT notification_counter FROM user WHERE id = ?", (user_id,)).fetchone()
            connection.execute(
                "INSERT INTO notification (user_id, name, seq, timestamp, payload_json) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (user_id, name) DO UPDATE SET seq = excluded.seq, "
                "timestamp = excluded.timestamp, payload_json = excluded.payload_json",
                (user_id, name, seq, timestamp, data),
            )
        return int(seq)


_APP: list[CheckerApp] = []
_LOCK = threading.Lock()
_NUMBERS = itertools.count(1)


def checker_messaging_app() -> CheckerApp:
    """The checkers' messaging app, started on first use (stopped at exit by ``course.servers``)."""
    with _LOCK:
        if _APP and _APP[0].server.running:
            return _APP[0]
        folder = Path(tempfile.mkdtemp(prefix="course-checker-messaging-"))
        atexit.register(shutil.rmtree, folder, True)
        server = start_messaging_app(
            port=None, folder=folder, config={"PASSWORD_HASH_METHOD": FAST_HASH}, reuse=False
        )  # course.servers keeps it alive past this (short-lived) checker thread
        _APP[:] = [CheckerApp(server, folder / "messaging.db")]
        return _APP[0]


def fresh_names(*roles: str) -> list[str]:
    """New user names for one check, e.g. ``fresh_names("alice", "bob")`` -> ``["alice7", "bob7"]``."""
    number = next(_NUMBERS)
    return [f"{role}{number}" for role in roles]


async def register_all(app: CheckerApp, names: list[str]) -> None:
    """Create these accounts (password :data:`CHECKER_PASSWORD`) over HTTP, through the form."""
    async with notify.client_session() as session:
        for name in names:
            await notify.register(session, app.url, name, CHECKER_PASSWORD)
