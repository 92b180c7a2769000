"""The messaging app on a real PostgreSQL server (a throwaway one, see conftest.py).

The notification contract, the upsert, the concurrency test and the
migration check run on both databases in test_messaging_notifications.py;
here is what PostgreSQL shows that SQLite does not: its own types, its row
locks (which serialize less than SQLite's single writer), its refusal of NUL
characters (the app now refuses them on both), and the app served by
waitress with ``DATABASE_URL`` pointing at it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from messaging_helpers import LIVE_CONFIG, WebUser, user
from sqlalchemy import event, func, select, text

import course.postgres_server as postgresql_server
from course.postgres_server import PostgreSQLNotFound, PostgreSQLServer
from course.servers import ServerHandle
from server.messaging.extensions import db
from server.messaging.inbox import mark_messages_read, send_message
from server.messaging.models import UNREAD_MESSAGE_COUNT, Message, Notification, User

pytestmark = pytest.mark.databases("postgresql")


def test_without_postgresql_installed_the_error_says_to_run_make_postgresql(monkeypatch, tmp_path):
    monkeypatch.setattr(postgresql_server, "DEBIAN_ROOT", tmp_path / "nothing-here")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("PG_BINDIR", raising=False)
    with pytest.raises(PostgreSQLNotFound, match="run `make postgresql`"):
        postgresql_server.start_postgresql()


def test_the_app_really_runs_on_postgresql(app):
    with app.app_context():
        assert db.engine.dialect.name == "postgresql"
        assert db.engine.dialect.driver == "psycopg"
        assert db.session.scalar(text("SELECT version()")).startswith("PostgreSQL")


# -- aware UTC datetimes ----------------------------------------------------------------------


def test_aware_datetimes_round_trip_as_the_same_instant_in_utc(app, alice):
    india = timezone(timedelta(hours=5, minutes=30))
    written = datetime(2024, 3, 10, 1, 30, 15, 123456, tzinfo=india)
    alice_id = user(app, "alice").id
    with app.app_context():
        db.session.get(User, alice_id).last_message_read_time = written
        db.session.commit()
    with app.app_context():
        # Another session time zone must not shift a stored instant.
        db.session.execute(text("SET TIME ZONE 'America/New_York'"))
        read = db.session.get(User, alice_id).last_message_read_time
        stored = db.session.scalar(
            text('SELECT last_message_read_time::text FROM "user" WHERE id = :id'), {"id": alice_id}
        )
    assert read == written
    assert read.tzinfo is UTC
    assert stored == "2024-03-09 20:00:15.123456"  # naive UTC in the column


def test_unread_count_compares_stored_instants_not_wall_clocks(app, alice, bob):
    alice.send("bob", "before")
    bob_id = user(app, "bob").id
    with app.app_context():
        first = db.session.scalar(select(Message.timestamp))
        bob_row = db.session.get(User, bob_id)
        # The same instant as the message, written in another time zone: not newer.
        bob_row.last_message_read_time = first.astimezone(timezone(timedelta(hours=-7)))
        db.session.commit()
        assert bob_row.unread_message_count() == 0
    alice.send("bob", "after")
    with app.app_context():
        assert db.session.get(User, bob_id).unread_message_count() == 1


# -- text PostgreSQL cannot store (refused on both databases, for one rule) --------------------------

BOTH = pytest.mark.databases("sqlite", "postgresql")


@BOTH
def test_a_message_with_a_nul_character_is_refused_not_a_server_error(app, alice):
    answer = alice.send("bob", "null\x00byte")
    assert answer.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(Message.id)) is None


@BOTH
@pytest.mark.parametrize("url", ["/user/bo%00b", "/send_message/bo%00b", "/auth/login?next=%00"])
def test_a_nul_character_in_the_url_is_400_not_a_server_error(alice, url):
    assert alice.get(url).status_code == 400


@BOTH
@pytest.mark.parametrize("url", ["/notifications?since=%00", "/notifications?after=1%00"])
def test_a_nul_character_in_an_api_query_is_a_400_json_answer(alice, url):
    answer = alice.get(url)
    assert answer.status_code == 400
    assert answer.is_json and "NUL" in answer.json["error"]


@BOTH
def test_registering_with_a_nul_character_is_refused(app, make_client):
    client = make_client()
    answer = client.submit(
        "/auth/register",
        {"username": "dora", "email": "dora\x00@example.com", "password": "pw", "password2": "pw"},
    )
    assert answer.status_code == 400
    with app.app_context():
        assert db.session.scalar(select(User.id).where(User.username == "dora")) is None


# -- row locks: a read of the inbox racing a new message ------------------------------------------


def _waiting_on_a_lock(app) -> bool:
    with app.app_context(), db.engine.connect() as connection:
        waiting = connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)


def test_reading_the_inbox_while_a_message_is_sent_leaves_the_true_unread_count(app, alice):
    """A sender has loaded bob's row when bob opens /messages (marks all read).

    On SQLite the sender holds the write lock from its first statement, so
    this cannot interleave. On PostgreSQL the app must lock bob's row before
    reading what it uses (read time, unread messages), or it counts with a
    stale read time and the badge shows messages bob has already read.
    """
    for i in range(3):
        alice.send("bob", f"old {i}")
    alice_id, bob_id = user(app, "alice").id, user(app, "bob").id
    with app.app_context():
        engine = db.engine

    armed, loaded, go = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def pause_after_loading_bob(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        # The sender's first read of a user row inside send_message: then pause.
        if (
            threading.current_thread() is sender
            and armed.is_set()
            and not loaded.is_set()
            and statement.lstrip().upper().startswith("SELECT")
            and 'FROM "user"' in statement
        ):
            loaded.set()
            go.wait(timeout=60)

    def send() -> None:
        try:
            with app.app_context():
                author, recipient = db.session.get(User, alice_id), db.session.get(User, bob_id)
                armed.set()
                send_message(author, recipient, "new")
        except BaseException as exc:  # reported below
            errors.append(exc)

    def read() -> None:
        try:
            with app.app_context():
                mark_messages_read(db.session.get(User, bob_id))
        except BaseException as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    event.listen(engine, "after_cursor_execute", pause_after_loading_bob)
    try:
        sender.start()
        assert loaded.wait(timeout=60), "the sender never loaded bob's row"
        reader = threading.Thread(target=read)
        reader.start()
        # Either the read finishes now (nothing locked bob's row yet), or it
        # waits for the sender's lock: go on once one of the two is visible.
        deadline = time.monotonic() + 60
        while reader.is_alive() and not _waiting_on_a_lock(app) and time.monotonic() < deadline:
            time.sleep(0.05)
        go.set()
        sender.join(timeout=60)
        reader.join(timeout=60)
    finally:
        go.set()
        event.remove(engine, "after_cursor_execute", pause_after_loading_bob)
    assert not errors, errors

    with app.app_context():
        bob_row = db.session.get(User, bob_id)
        notification = db.session.scalar(
            select(Notification).where(
                Notification.user_id == bob_id, Notification.name == UNREAD_MESSAGE_COUNT
            )
        )
        assert notification.get_data() == bob_row.unread_message_count()
        assert notification.get_data() in (0, 1)  # the new message, read or not; never the old ones


@BOTH
def test_users_writing_to_each_other_and_reading_at_once_keep_true_counts(app):
    """Crossing writes lock two user rows in opposite orders: no deadlock, no
    lost update, and every badge ends equal to its user's unread messages."""
    names = [f"user{i}" for i in range(6)]
    with app.app_context():
        for name in names:
            db.session.add(User(username=name, email=f"{name}@example.com"))
        db.session.commit()
        ids = [db.session.scalar(select(User.id).where(User.username == n)) for n in names]

    start = threading.Barrier(len(ids))
    errors: list[BaseException] = []

    def act(me: int, rounds: int = 15) -> None:
        try:
            with app.app_context():
                start.wait(timeout=30)
                for round_ in range(rounds):
                    for other in ids:
                        if other != me:
                            send_message(db.session.get(User, me), db.session.get(User, other), "hi")
                    if round_ % 4 == 3:
                        mark_messages_read(db.session.get(User, me))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=act, args=(me,)) for me in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not errors, errors[:3]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Message)) == 15 * 6 * 5
        for user_id in ids:
            row = db.session.get(User, user_id)
            [badge] = db.session.scalars(select(Notification).where(Notification.user_id == user_id))
            assert badge.get_data() == row.unread_message_count(), row.username


# -- the app served by waitress with DATABASE_URL on PostgreSQL -----------------------------------


@pytest.fixture
def pg_server(start_messaging, postgresql: PostgreSQLServer) -> Iterator[ServerHandle]:  # type: ignore[no-untyped-def]
    name = f"live_{uuid.uuid4().hex[:12]}"
    handle = start_messaging("pg-live", database_url=postgresql.create_database(name), **LIVE_CONFIG)
    yield handle
    handle.stop()
    postgresql.drop_database(name)


def test_a_live_server_on_postgresql_counts_messages_and_answers_since(pg_server):
    alice = WebUser(pg_server.url, "alice").register_and_login()
    bob = WebUser(pg_server.url, "bob").register_and_login()
    assert bob.get("/notifications?since=0").json() == []

    for body in ("one", "two", "three"):
        assert alice.send("bob", body).status_code == 302
    [note] = bob.get("/notifications?since=0").json()
    assert (note["name"], note["data"]) == ("unread_message_count", 3)
    assert bob.get(f"/notifications?since={note['timestamp']}").json() == []

    assert bob.get("/messages").status_code == 200  # reading them resets the count
    [read] = bob.get(f"/notifications?since={note['timestamp']}").json()
    assert read["data"] == 0 and read["id"] > note["id"]
    assert alice.get("/notifications?since=0").json() == []
