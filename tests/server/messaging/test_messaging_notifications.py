"""GET /notifications: the lesson's JSON contract, and the fixes to its design."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from messaging_helpers import user
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from server.messaging.database import UTCDateTime
from server.messaging.extensions import db
from server.messaging.inbox import send_message
from server.messaging.models import Message, Notification, User

# Every test here runs on SQLite and on PostgreSQL (see conftest.py).
pytestmark = pytest.mark.databases("sqlite", "postgresql")


def _add(app, username: str, name: str, data) -> int:
    with app.app_context():
        found = db.session.scalar(select(User).where(User.username == username))
        seq = found.add_notification(name, data)
        db.session.commit()
        return seq


def _set_timestamp(app, seq: int, timestamp: float) -> None:
    with app.app_context():
        db.session.execute(update(Notification).where(Notification.seq == seq).values(timestamp=timestamp))
        db.session.commit()


# -- the contract --------------------------------------------------------------------


def test_json_has_exactly_the_lessons_fields_plus_the_cursor(app, alice):
    _add(app, "alice", "unread_message_count", 4)
    [note] = alice.get("/notifications").json
    assert set(note) == {"id", "name", "data", "timestamp"}
    assert (note["name"], note["data"]) == ("unread_message_count", 4)
    assert isinstance(note["id"], int) and isinstance(note["timestamp"], float)


def test_since_returns_newer_notifications_oldest_first(app, alice):
    _add(app, "alice", "first", {"n": 1})
    _add(app, "alice", "second", [1, 2])
    everything = alice.get("/notifications?since=0").json
    assert [n["name"] for n in everything] == ["first", "second"]
    assert everything[1]["data"] == [1, 2]
    newer = alice.get(f"/notifications?since={everything[0]['timestamp']}").json
    assert [n["name"] for n in newer] == ["second"]
    assert alice.get(f"/notifications?since={everything[1]['timestamp']}").json == []


def test_after_returns_notifications_past_the_cursor_in_order(app, alice):
    first = _add(app, "alice", "a", 1)
    second = _add(app, "alice", "b", 2)
    assert second > first
    assert [n["id"] for n in alice.get(f"/notifications?after={first}").json] == [second]
    assert alice.get(f"/notifications?after={second}").json == []


@pytest.mark.parametrize("url", ["/notifications", "/notifications/wait", "/notifications/stream"])
def test_without_a_session_the_answer_is_401_json_not_a_redirect(make_client, url):
    answer = make_client().get(url)
    assert answer.status_code == 401
    assert answer.is_json and "error" in answer.json


@pytest.mark.parametrize(
    "query",
    [
        "since=abc", "since=nan", "since=inf", "since=-1", "after=x", "after=-1", "after=1.5",
        "since=1&after=1",
        "after=2147483648", "after=999999999999999999",  # past any cursor (INTEGER on PostgreSQL)
    ],
)
def test_bad_cursor_is_400_json(alice, query):
    answer = alice.get(f"/notifications?{query}")
    assert answer.status_code == 400
    assert answer.is_json and answer.json["error"]


def test_the_largest_cursor_is_accepted_and_nothing_is_newer(app, alice):
    _add(app, "alice", "a", 1)
    answer = alice.get("/notifications?after=2147483647")
    assert (answer.status_code, answer.json) == (200, [])


def test_a_last_event_id_past_any_cursor_is_400_json(alice):
    answer = alice.get("/notifications/stream", headers={"Last-Event-ID": "2147483648"})
    answer.close()  # had it streamed (the bug), its request context must not outlive the test
    assert answer.status_code == 400
    assert answer.is_json and "Last-Event-ID" in answer.json["error"]


@pytest.mark.parametrize(
    "query", ["timeout=abc", "timeout=-2", "timeout=nan", "after=z", "after=2147483648&timeout=0"]
)
def test_bad_long_poll_parameters_are_400_json(alice, query):
    answer = alice.get(f"/notifications/wait?{query}")
    assert answer.status_code == 400
    assert answer.is_json


# -- a cursor that cannot skip or repeat --------------------------------------------------


def test_a_late_commit_with_an_older_timestamp_is_not_skipped_by_the_cursor(app, alice):
    """A writer stamped its row, then committed after the client's last poll."""
    seen = _add(app, "alice", "first", 1)
    [first] = alice.get("/notifications").json
    late = _add(app, "alice", "late", 2)
    _set_timestamp(app, late, first["timestamp"] - 0.5)  # stamped before, committed after
    assert alice.get(f"/notifications?since={first['timestamp']}").json == []  # the lesson's skip
    assert [n["name"] for n in alice.get(f"/notifications?after={seen}").json] == ["late"]


def test_notifications_stamped_in_the_same_instant_are_seen_once_each(app, alice):
    first = _add(app, "alice", "a", 1)
    [a] = alice.get("/notifications?after=0").json
    second = _add(app, "alice", "b", 2)
    _set_timestamp(app, second, a["timestamp"])  # same clock reading
    by_since = alice.get(f"/notifications?since={a['timestamp']}").json
    assert by_since == []  # skipped by the lesson's cursor
    by_cursor = alice.get(f"/notifications?after={first}").json
    assert [n["name"] for n in by_cursor] == ["b"]
    assert alice.get(f"/notifications?after={by_cursor[0]['id']}").json == []


# -- one row per (user, name) ----------------------------------------------------------------


def test_add_notification_replaces_the_row_of_the_same_name(app, alice):
    _add(app, "alice", "unread_message_count", 1)
    _add(app, "alice", "unread_message_count", 2)
    with app.app_context():
        rows = db.session.scalars(select(Notification)).all()
        assert [(r.name, r.get_data()) for r in rows] == [("unread_message_count", 2)]


def test_the_database_refuses_a_second_row_of_the_same_name(app, alice):
    _add(app, "alice", "unread_message_count", 1)
    alice_id = user(app, "alice").id
    with app.app_context():
        db.session.add(
            Notification(user_id=alice_id, name="unread_message_count", seq=99, payload_json="5")
        )
        with pytest.raises(IntegrityError):
            db.session.commit()


# -- aware UTC datetimes ---------------------------------------------------------------------


def test_message_timestamps_are_aware_utc(app, alice):
    alice.send("bob", "hi")
    with app.app_context():
        stamp = db.session.scalar(select(Message.timestamp))
    assert stamp.tzinfo is not None and stamp.utcoffset().total_seconds() == 0


def test_a_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="naive datetime"):
        UTCDateTime().process_bind_param(datetime(2024, 1, 1), None)


# -- concurrency ---------------------------------------------------------------------------


def test_concurrent_senders_leave_one_row_with_the_full_count_seen_in_order(app, alice):
    senders, each = 20, 50
    with app.app_context():
        names = [f"sender{i}" for i in range(senders)]
        for name in names:
            db.session.add(User(username=name, email=f"{name}@example.com"))
        db.session.commit()
        ids = {name: db.session.scalar(select(User.id).where(User.username == name)) for name in names}
        bob = db.session.scalar(select(User).where(User.username == "bob"))
        db.session.expunge(bob)

    start = threading.Barrier(senders + 1)
    done = threading.Event()
    errors: list[BaseException] = []
    observed: list[tuple[int, int]] = []  # (cursor, count) as a follower saw them

    def send_all(name: str) -> None:
        try:
            with app.app_context():
                sender = db.session.get(User, ids[name])
                start.wait(timeout=30)
                for i in range(each):
                    send_message(sender, bob, f"{name} says {i}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    def follow() -> None:
        after = 0
        with app.app_context():
            while True:
                finished = done.is_set()
                for note in User(id=bob.id).notifications_after(after):
                    observed.append((note.seq, note.get_data()))
                    after = note.seq
                db.session.rollback()
                if finished:
                    return
                time.sleep(0.002)

    threads = [threading.Thread(target=send_all, args=(n,)) for n in names]
    follower = threading.Thread(target=follow)
    for thread in threads:
        thread.start()
    follower.start()
    start.wait(timeout=30)
    for thread in threads:
        thread.join(timeout=240)
    done.set()
    follower.join(timeout=60)

    assert not errors, errors[:3]
    with app.app_context():
        rows = db.session.scalars(
            select(Notification).where(Notification.user_id == bob.id)
        ).all()
        assert [(r.name, r.get_data()) for r in rows] == [("unread_message_count", senders * each)]
        assert db.session.scalar(select(func.count()).select_from(Message)) == senders * each
    cursors = [c for c, _ in observed]
    counts = [n for _, n in observed]
    assert cursors == sorted(set(cursors)), "the follower saw a cursor twice or out of order"
    assert counts == sorted(set(counts)), "the follower saw the count go back or repeat"
    assert counts[-1] == senders * each
    assert cursors[-1] == senders * each  # one cursor step per write: none skipped


# -- migrations --------------------------------------------------------------------------------


def test_migrations_create_exactly_the_models_schema(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == []
