"""A fresh messaging app for one lesson notebook: a live server and an in-process app
sharing one new SQLite database.

Lessons 01 and 02 need outputs that are the same on every run, so each kernel
gets its own temporary folder and database, and its own server on a free port
(two notebooks open at once never share a server or a database)::

    lesson = LessonApp.start("lesson01")   # idempotent within one kernel
    lesson.server.url                       # the live server (waitress, its own process)
    app = lesson.flask_app()                # the same database, for app contexts and test clients

Calling ``start`` again in the same kernel returns the same server and
database. The folder is removed when the kernel exits.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from flask import Flask

from course.servers import FAST_HASH, ServerHandle, start_messaging_app

__all__ = ["LessonApp"]


@dataclass
class LessonApp:
    """One lesson's messaging app: where its database lives and its running server."""

    name: str
    folder: Path
    server: ServerHandle
    config: dict[str, str] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.folder / 'messaging.db'}"

    @classmethod
    def start(cls, name: str, config: Mapping[str, str] | None = None) -> LessonApp:
        """Start (or, later in the same kernel, find again) the lesson's server.

        ``config`` is passed to the server as environment variables (see
        ``server.messaging``); the lesson's default is a fast password hash.
        No secret key is passed: the server generates one in its instance
        folder, which the in-process app (``flask_app``) shares.
        """
        settings = {"PASSWORD_HASH_METHOD": FAST_HASH, **(config or {})}
        folder = Path(tempfile.gettempdir()) / f"course-{name}-{_this_process()}"
        port_file = folder / "port"
        first_time = not port_file.exists()
        if first_time:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            atexit.register(shutil.rmtree, folder, True)
        server = start_messaging_app(
            port=None if first_time else int(port_file.read_text()),
            folder=folder,  # its instance files and folder/messaging.db
            config=settings,
            reuse=not first_time,
        )
        port_file.write_text(str(server.port))
        return cls(name, folder, server, settings)

    def flask_app(self, **overrides: Any) -> Flask:
        """An in-process app on the same database (for ``app_context()`` and ``test_client()``).

        ``overrides`` are config keys, e.g. ``WTF_CSRF_ENABLED=False`` or
        ``MESSAGES_PER_PAGE=3``.
        """
        from server.messaging import create_app

        return create_app(
            {
                "SQLALCHEMY_DATABASE_URI": self.database_url,
                "INSTANCE_PATH": str(self.folder),
                **self.config,
                **overrides,
            }
        )

    def stop(self) -> None:
        """Stop the server (the folder goes when the kernel exits)."""
        self.server.stop()


def _this_process() -> str:
    """Names this process uniquely on the machine (a pid alone can be reused)."""
    me = psutil.Process()
    return f"{me.pid}-{int(me.create_time() * 1000)}"
