"""PostgreSQL LISTEN/NOTIFY: a write in one app process wakes the waiters of another.

The app NOTIFYs ``{"user": id, "seq": seq}`` on the ``notifications`` channel
inside the transaction that writes a notification (PostgreSQL delivers it on
commit only); every app process LISTENs and wakes that user's long polls and
streams. Without it a waiter in another process finds the message only at its
next re-check (``NOTIFY_RECHECK_SECONDS``), which these tests set far beyond
their deadlines: a delivery inside the deadline can only come from the NOTIFY.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
import requests
from flask import Flask
from messaging_helpers import LIVE_CONFIG, WebUser, user
from sqlalchemy import make_url

from course.postgres_server import PostgreSQLServer
from course.servers import ServerHandle
from server.messaging.extensions import db
from server.messaging.hub import (
    NOTIFY_CHANNEL,
    NotificationHub,
    NotifyListener,
    notify_payload,
    parse_notify_payload,
)
from server.messaging.inbox import send_message
from server.messaging.models import UNREAD_MESSAGE_COUNT, lock_user

pytestmark = pytest.mark.databases("postgresql")

#: Longer than any deadline below: only a NOTIFY can wake a waiter in time.
SLOW_RECHECK = {"NOTIFY_RECHECK_SECONDS": "30", "SSE_HEARTBEAT_SECONDS": "30"}
DEADLINE = 5  # seconds a waiter is given to hear of a message sent through the other process


def listening_connection(app: Flask) -> psycopg.Connection:
    """A separate autocommit connection to the app's database, LISTENing on the channel."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(drivername="postgresql")
    connection = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
    connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
    return connection


def payloads(connection: psycopg.Connection, timeout: float = 2.0) -> list[dict]:
    return [json.loads(note.payload) for note in connection.notifies(timeout=timeout)]


# -- the NOTIFY: part of the writing transaction --------------------------------------------


def test_the_payload_round_trips_and_junk_is_refused():
    assert parse_notify_payload(notify_payload(7, 42)) == (7, 42)
    assert json.loads(notify_payload(7, 42)) == {"user": 7, "seq": 42}
    for junk in ["", "7", "[]", '{"user": 7}', '{"user": "7", "seq": 1}', '{"user": true, "seq": 1}', "{"]:
        with pytest.raises(ValueError, match="not a notification payload"):
            parse_notify_payload(junk)


def test_a_sent_message_notifies_its_recipient_and_cursor_on_commit(app, alice):
    bob_id = user(app, "bob").id
    listener = listening_connection(app)
    try:
        assert alice.send("bob", "hello").status_code == 302
        assert alice.send("bob", "again").status_code == 302
        heard = payloads(listener)
        with app.app_context():
            [note] = lock_user(bob_id).notifications_after(0)
            cursor = note.seq
    finally:
        listener.close()
    assert heard == [{"user": bob_id, "seq": cursor - 1}, {"user": bob_id, "seq": cursor}]


def test_a_rolled_back_write_notifies_nobody_and_a_pending_one_waits_for_commit(app, alice):
    bob = user(app, "bob")
    alice_user = user(app, "alice")
    listener = listening_connection(app)
    try:
        with app.app_context():
            recipient = lock_user(bob.id)
            recipient.add_notification(UNREAD_MESSAGE_COUNT, 99)
            assert payloads(listener, timeout=0.5) == []  # not committed yet: nothing said
            db.session.rollback()
        assert payloads(listener, timeout=0.5) == []  # rolled back: never said

        with app.app_context():
            send_message(alice_user, bob, "committed")
        [heard] = payloads(listener)
    finally:
        listener.close()
    assert heard["user"] == bob.id


# -- the listener thread: a NOTIFY from anywhere wakes the hub ------------------------------------


def test_a_notify_from_another_connection_wakes_that_users_waiters_only(app):
    hub: NotificationHub = app.extensions["notification_hub"]
    listener: NotifyListener = app.extensions["notify_listener"]
    assert listener.listening.wait(10), "the app's LISTEN thread never started listening"
    seen_5, seen_6 = hub.generation(5), hub.generation(6)
    other = listening_connection(app)  # stands for another app process
    try:
        other.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, notify_payload(5, 1)))
        other.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, "not json"))  # ignored, no crash
        assert hub.wait(5, seen_5, timeout=10)
    finally:
        other.close()
    assert hub.generation(6) == seen_6
    assert listener.received == 1


def test_without_notify_listen_there_is_no_listener(tmp_path, database_url):
    from messaging_helpers import app_config

    from server.messaging import create_app

    app = create_app(app_config(tmp_path, SQLALCHEMY_DATABASE_URI=database_url, NOTIFY_LISTEN=False))
    assert "notify_listener" not in app.extensions
    with app.app_context():
        db.engine.dispose()


def test_the_listener_reconnects_and_wakes_every_waiter_after_losing_its_connection(app):
    hub: NotificationHub = app.extensions["notification_hub"]
    listener: NotifyListener = app.extensions["notify_listener"]
    assert listener.listening.wait(10)
    seen = hub.generation(5)
    woken = threading.Event()
    thread = threading.Thread(target=lambda: hub.wait(5, seen, 30) and woken.set(), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while hub.waiting() < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    admin = listening_connection(app)
    try:
        # End the listener's connection, as a server restart or a network cut would.
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%%'"
        )
        assert woken.wait(15), "no wake-up after the listener reconnected"
        assert listener.listening.wait(10)
        seen = hub.generation(7)
        admin.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, notify_payload(7, 1)))
        assert hub.wait(7, seen, 10), "the reconnected listener hears NOTIFYs again"
    finally:
        admin.close()


# -- two app processes on one database ------------------------------------------------------------


@pytest.fixture
def shared_database(postgresql: PostgreSQLServer) -> Iterator[str]:
    name = f"listen_{uuid.uuid4().hex[:12]}"
    yield postgresql.create_database(name)
    postgresql.drop_database(name)


StartPair = Callable[[bool], tuple[ServerHandle, ServerHandle]]


@pytest.fixture
def two_processes(start_messaging, shared_database: str) -> StartPair:  # type: ignore[no-untyped-def]
    """``two_processes(listen)`` -> apps A and B, separate processes on one database."""

    def start(listen: bool) -> tuple[ServerHandle, ServerHandle]:
        settings = {
            **LIVE_CONFIG,
            **SLOW_RECHECK,
            "MAX_WAITING_PER_USER": "1",  # a second wait is refused while the first waits
            "NOTIFY_LISTEN": "1" if listen else "0",
        }
        first = start_messaging("listen-a", database_url=shared_database, **settings)
        second = start_messaging("listen-b", database_url=shared_database, **settings)
        return first, second

    return start


def until_waiting(person: WebUser) -> None:
    """Return once ``person`` holds a waiting request (the app refuses a second: 429).

    A probe may take the one seat just before the request it looks for, which
    then gets the 429 and must retry (as the test's readers do).
    """
    deadline = time.monotonic() + 15
    while person.get("/notifications/wait?after=0&timeout=0").status_code != 429:
        assert time.monotonic() < deadline, "the long poll or stream never started waiting"
        time.sleep(0.05)


@pytest.mark.parametrize("listen", [True, False], ids=["listen", "no-listen"])
def test_a_long_poll_on_one_process_hears_a_message_sent_through_another(two_processes, listen):
    app_a, app_b = two_processes(listen)
    bob = WebUser(app_a.url, "bob").register_and_login()
    alice = WebUser(app_b.url, "alice").register_and_login()
    answer: list[list[dict]] = []
    done = threading.Event()

    def long_poll() -> None:
        try:  # the server would hold it 25 s (and re-read then); we give up after DEADLINE
            response = bob.get("/notifications/wait?after=0&timeout=25", timeout=(5, DEADLINE))
            while response.status_code == 429:  # our probe held the one seat a moment
                response = bob.get("/notifications/wait?after=0&timeout=25", timeout=(5, DEADLINE))
            assert response.status_code == 200
            answer.append(response.json())
        except requests.exceptions.ReadTimeout:
            answer.append([])
        finally:
            done.set()

    threading.Thread(target=long_poll, daemon=True).start()
    until_waiting(bob)
    assert alice.send("bob", "through the other process").status_code == 302
    assert done.wait(30)
    [notes] = answer
    if listen:
        assert [(n["name"], n["data"]) for n in notes] == [("unread_message_count", 1)]
    else:  # the other process's write goes unheard until the re-check, 30 s away
        assert notes == []


@pytest.mark.parametrize("listen", [True, False], ids=["listen", "no-listen"])
def test_an_event_stream_on_one_process_hears_a_message_sent_through_another(two_processes, listen):
    app_a, app_b = two_processes(listen)
    bob = WebUser(app_a.url, "bob").register_and_login()
    alice = WebUser(app_b.url, "alice").register_and_login()
    heard: list[dict] = []
    done = threading.Event()

    def read_stream() -> None:
        try:
            response = bob.get("/notifications/stream?after=0", stream=True, timeout=(5, DEADLINE))
            while response.status_code == 429:  # our probe held the one seat a moment
                response = bob.get("/notifications/stream?after=0", stream=True, timeout=(5, DEADLINE))
            with response:
                assert response.status_code == 200
                for line in response.iter_lines(decode_unicode=True):
                    if line.startswith("data: "):
                        heard.append(json.loads(line.removeprefix("data: ")))
                        return
        except requests.exceptions.ConnectionError:  # read timeout: nothing within the deadline
            pass
        finally:
            done.set()

    threading.Thread(target=read_stream, daemon=True).start()
    until_waiting(bob)
    assert alice.send("bob", "through the other process").status_code == 302
    assert done.wait(30)
    if listen:
        assert [(n["name"], n["data"]) for n in heard] == [("unread_message_count", 1)]
    else:
        assert heard == []
