"""The push gateway of Lesson 10: thousands of open notification streams in one process.

The Flask app (``server.messaging``) serves each long poll or event stream
with a thread, so a few dozen waiting clients fill it. This gateway is an
aiohttp application: an open stream costs a coroutine and a socket, not a
thread. It serves

- ``GET /stream``: Server-Sent Events, the same events as the app's
  ``/notifications/stream`` (``id:`` the cursor, resume with
  ``Last-Event-ID`` or ``?after=``);
- ``GET /ws``: a WebSocket; each text message is a JSON list of notifications
  as ``/notifications`` returns them (resume with ``?after=``);
- ``GET /healthz``: JSON, what this process holds.

Clients sign in at the app; the gateway reads the app's own session cookie
(same ``SECRET_KEY``) and looks the user up by ``session_token``. The
database stays the source of truth: one ``LISTEN notifications`` connection
per process wakes the streams of the user a ``NOTIFY`` names, which re-read
that user's notifications after their cursors; a periodic re-check covers a
missed wake-up. Run it with ``python -m server.push`` (see ``__main__``).
"""

from __future__ import annotations

from .settings import NOTIFY_CHANNEL, ConfigError, Settings

__all__ = ["NOTIFY_CHANNEL", "ConfigError", "Settings"]
