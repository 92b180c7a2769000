"""The checkers' servers, started from one long-lived thread.

``check()`` runs a checker in a worker thread that ends when the check does.
``course.servers`` asks Linux to stop a server when its parent dies
(``PR_SET_PDEATHSIG``), and the kernel means the *thread* that started it:
a server started from a check's thread is stopped as soon as that check
returns, and the next check finds its port closed. So the checkers of
lessons 08 and 09 start their servers here, on a thread that lives as long
as the process (``course.servers`` still stops them at exit).
"""

from __future__ import annotations

import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from course.checks import checker_mock_api

__all__ = ["MessagingApp", "messaging_app", "mock_api"]

_STARTER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checker-servers")


def mock_api(scenario: dict[str, Any] | None = None) -> str:
    """``course.checks.checker_mock_api(scenario)``, started (once) from the long-lived thread."""
    return _STARTER.submit(checker_mock_api, scenario).result()


class MessagingApp:
    """The checkers' messaging app: its URL, its database file and the users seeded in it."""

    def __init__(self, url: str, database: Path, users: tuple[str, ...], password: str) -> None:
        self.url = url
        self.database = database
        self.users = users
        self.password = password


_APP: dict[str, Any] = {}
_APP_LOCK = threading.Lock()


def _start_messaging_app(users: int) -> MessagingApp:
    from course.servers import FAST_HASH, start_messaging_app
    from server.messaging.seed import seed_database

    handle = _APP.get("handle")
    if handle is None or not handle.running:
        folder = Path(tempfile.mkdtemp(prefix="checker-messaging-"))
        handle = start_messaging_app(
            port=None, folder=folder, reuse=False, config={"PASSWORD_HASH_METHOD": FAST_HASH}
        )
        database = folder / "messaging.db"
        seeded = seed_database(f"sqlite:///{database}", users=users, messages=0, PASSWORD_HASH_METHOD=FAST_HASH)
        _APP.update(handle=handle, app=MessagingApp(handle.url, database, tuple(seeded.usernames), seeded.password))
    app: MessagingApp = _APP["app"]
    return app


def messaging_app(users: int = 8) -> MessagingApp:
    """A messaging app of the checkers' own (one per process, fast password hashing, its own
    SQLite file) with ``user1..user<users>`` seeded."""
    with _APP_LOCK:
        return _STARTER.submit(_start_messaging_app, users).result()
