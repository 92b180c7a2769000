"""The checkers' own messaging app (course/exercises/_messaging.py)."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import urllib.request

import pytest

from course import notify
from course.exercises._messaging import (
    CHECKER_PASSWORD,
    CheckerApp,
    checker_messaging_app,
    fresh_names,
    register_all,
)


def test_the_checker_app_outlives_the_thread_that_started_it():
    # check() runs each checker in a short-lived thread; a server dies with the thread that started it.
    box: dict[str, CheckerApp] = {}
    worker = threading.Thread(target=lambda: box.setdefault("app", checker_messaging_app()))
    worker.start()
    worker.join()
    app = box["app"]
    assert app.server.process is not None  # started here, not found running
    with pytest.raises(subprocess.TimeoutExpired):
        app.server.process.wait(timeout=3)
    with urllib.request.urlopen(app.url + "/healthz", timeout=10) as answer:
        assert answer.status == 200
    assert checker_messaging_app() is app


def test_notifications_written_by_the_checker_are_served_in_cursor_order():
    app = checker_messaging_app()
    (reader,) = fresh_names("reader")

    async def scenario() -> list[tuple[int, str, float]]:
        await register_all(app, [reader])
        first = app.add_notification(reader, "a", '"one"', 1000.0)
        second = app.add_notification(reader, "b", '"two"', 1000.0)
        replaced = app.add_notification(reader, "a", '"three"', 990.0)
        assert (first, second, replaced) == (1, 2, 3)
        async with notify.client_session() as session:
            await notify.login(session, app.url, reader, CHECKER_PASSWORD)
            async with session.get(f"{app.url}/notifications?after=0") as answer:
                return [(n["id"], n["data"], n["timestamp"]) for n in await answer.json()]

    assert asyncio.run(scenario()) == [(2, "two", 1000.0), (3, "three", 990.0)]
