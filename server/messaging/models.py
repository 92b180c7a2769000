"""The data model: users, private messages and notifications.

The model owns the logic the routes use: ``User.unread_message_count()``,
``User.add_notification()`` and the queries a client follows.

Notifications carry two orderings:

- ``timestamp`` (a Unix float), the lesson's cursor, kept for its browser
  code: ``?since=<float>``. It can skip a row committed late with an older
  stamp, or one stamped in the same instant as the last one seen;
- ``seq``, a per-user counter taken under the user's row lock in the same
  transaction as the write, shown as ``"id"`` in JSON: ``?after=<int>``.
  Writers for one user are serialized by that lock, so commit order equals
  ``seq`` order and a client that remembers the last ``seq`` it saw can
  neither skip nor repeat a change.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import current_app
from flask_login import UserMixin
from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import Insert as PostgreSQLInsert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import Insert as SQLiteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, WriteOnlyMapped, mapped_column, relationship, validates

from .database import UTCDateTime, utcnow
from .extensions import Base, db, login_manager
from .hub import NOTIFY_CHANNEL, notify_payload
from .passwords import PasswordHasher

__all__ = [
    "MAX_BODY_LENGTH",
    "MAX_CURSOR",
    "Message",
    "Notification",
    "User",
    "lock_user",
    "new_session_token",
    "normalize_name",
    "password_matches",
]

MAX_BODY_LENGTH = 140
#: The largest cursor (``seq``) there can be: INTEGER columns are 32-bit on PostgreSQL.
MAX_CURSOR = 2**31 - 1
UNREAD_MESSAGE_COUNT = "unread_message_count"

#: The INSERT of each database that knows ``ON CONFLICT ... DO UPDATE``.
_UPSERTS: dict[str, Callable[[Any], PostgreSQLInsert | SQLiteInsert]] = {
    "sqlite": sqlite_insert,
    "postgresql": postgresql_insert,
}


def new_session_token() -> str:
    """A fresh random value for ``User.session_token``."""
    return secrets.token_urlsafe(32)


def normalize_name(text: str) -> str:
    """How user names and email addresses are stored and looked up: lower case.

    ``Alice`` and ``alice`` are one user; the forms refuse anything else odd
    (spaces, line breaks) rather than clean it up.
    """
    return text.lower()


class User(UserMixin, Base):
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    email: Mapped[str] = mapped_column(String(120), unique=True, index=True)
    password_hash: Mapped[str | None] = mapped_column(String(256))
    last_message_read_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The last cursor value handed out to this user's notifications.
    notification_counter: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    messages_sent: WriteOnlyMapped[Message] = relationship(
        foreign_keys="Message.sender_id", back_populates="author"
    )
    messages_received: WriteOnlyMapped[Message] = relationship(
        foreign_keys="Message.recipient_id", back_populates="recipient"
    )
    notifications: WriteOnlyMapped[Notification] = relationship(back_populates="user")
    # What the session and remember-me cookies name the user by (``get_id``).
    # A new value signs out every cookie issued before: on logout and on a new password.
    session_token: Mapped[str] = mapped_column(String(64), unique=True, index=True, default=new_session_token)

    def __repr__(self) -> str:
        return f"<User {self.username}>"

    @validates("username", "email")
    def _normalize(self, _key: str, value: str) -> str:
        return normalize_name(value)

    def get_id(self) -> str:
        """Flask-Login's name for this user in cookies: the revocable token, not the id."""
        if self.session_token is None:  # a new user not flushed yet
            self.session_token = new_session_token()
        return self.session_token

    def revoke_sessions(self) -> None:
        """Sign out every session and remember-me cookie this user has now."""
        self.session_token = new_session_token()

    def set_password(self, password: str) -> None:
        """Store a hash of ``password``; cookies issued before stop working."""
        self.password_hash = _hasher().hash(password)
        self.revoke_sessions()

    def check_password(self, password: str) -> bool:
        """Does ``password`` match? (Runs a hash even when none is set.)"""
        return _hasher().check(self.password_hash, password)

    def unread_message_count(self) -> int:
        """Messages received after the last visit to /messages (all, if never)."""
        query = select(func.count()).select_from(Message).where(Message.recipient_id == self.id)
        if self.last_message_read_time is not None:
            query = query.where(Message.timestamp > self.last_message_read_time)
        return db.session.scalar(query) or 0

    def add_notification(self, name: str, data: Any | Callable[[], Any]) -> int:
        """Store notification ``name`` for this user, replacing the previous one.

        ``data`` is any JSON-serializable value, or a function that computes
        it once this user's notifications are locked (so a count taken inside
        is never older than the write it describes). Returns the new cursor.

        The counter UPDATE takes the user's row lock (SQLite: the database
        write lock) until commit; the row is then written with one upsert
        backed by the unique (user_id, name) constraint, so concurrent
        writers can neither leave two rows nor none.
        """
        seq = db.session.execute(
            update(User)
            .where(User.id == self.id)
            .values(notification_counter=User.notification_counter + 1)
            .returning(User.notification_counter),
            execution_options={"synchronize_session": False},
        ).scalar_one()
        db.session.expire(self, ["notification_counter"])
        payload = json.dumps(data() if callable(data) else data)
        values = {"seq": seq, "timestamp": time.time(), "payload_json": payload}
        dialect = db.session.get_bind().dialect.name
        if dialect in _UPSERTS:
            insert = _UPSERTS[dialect](Notification).values(user_id=self.id, name=name, **values)
            db.session.execute(
                insert.on_conflict_do_update(
                    index_elements=["user_id", "name"],
                    set_={key: insert.excluded[key] for key in values},
                )
            )
        else:  # any other database: still safe, the row lock above serializes us
            row = db.session.scalar(select(Notification).filter_by(user_id=self.id, name=name))
            if row is None:
                db.session.add(Notification(user_id=self.id, name=name, **values))
            else:
                for key, value in values.items():
                    setattr(row, key, value)
            db.session.flush()
        _announce(self.id, seq, dialect)
        return seq

    def notifications_since(self, since: float) -> list[Notification]:
        """The lesson's query: newer than a Unix timestamp, oldest first."""
        query = (
            select(Notification)
            .where(Notification.user_id == self.id, Notification.timestamp > since)
            .order_by(Notification.timestamp, Notification.seq)
        )
        return list(db.session.scalars(query.execution_options(populate_existing=True)))

    def notifications_after(self, after: int) -> list[Notification]:
        """Notifications whose cursor is greater than ``after``, in cursor order."""
        return notifications_after(self.id, after)

    def received_messages(self) -> Any:
        """Received messages, newest first (a select to paginate)."""
        return (
            select(Message)
            .where(Message.recipient_id == self.id)
            .order_by(Message.timestamp.desc(), Message.id.desc())
        )


class Message(Base):
    id: Mapped[int] = mapped_column(primary_key=True)
    sender_id: Mapped[int] = mapped_column(ForeignKey(User.id), index=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey(User.id), index=True)
    body: Mapped[str] = mapped_column(String(MAX_BODY_LENGTH))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime(), index=True, default=utcnow)

    author: Mapped[User] = relationship(foreign_keys=[sender_id], back_populates="messages_sent")
    recipient: Mapped[User] = relationship(
        foreign_keys=[recipient_id], back_populates="messages_received"
    )

    def __repr__(self) -> str:
        return f"<Message {self.id} {self.body!r}>"


class Notification(Base):
    __table_args__ = (
        UniqueConstraint("user_id", "name", name="uq_notification_user_name"),
        Index("ix_notification_user_seq", "user_id", "seq"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey(User.id), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    timestamp: Mapped[float] = mapped_column(Float, index=True, default=time.time)
    payload_json: Mapped[str] = mapped_column(Text)

    user: Mapped[User] = relationship(back_populates="notifications")

    def get_data(self) -> Any:
        return json.loads(self.payload_json)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the lesson, plus ``id``: the cursor to follow."""
        return {
            "id": self.seq,
            "name": self.name,
            "data": self.get_data(),
            "timestamp": self.timestamp,
        }


def notifications_after(user_id: int, after: int) -> list[Notification]:
    """Notifications of ``user_id`` with a cursor greater than ``after``, in order."""
    query = (
        select(Notification)
        .where(Notification.user_id == user_id, Notification.seq > after)
        .order_by(Notification.seq)
    )
    return list(db.session.scalars(query.execution_options(populate_existing=True)))


def _announce(user_id: int, seq: int, dialect: str) -> None:
    """On PostgreSQL, NOTIFY the other processes (see ``hub``) that ``user_id`` got ``seq``.

    Part of the writing transaction: PostgreSQL delivers it on commit, so a
    listener never hears of a row it cannot read yet, and never of a rolled
    back one. Other databases have no such channel (the hub's re-check covers them).
    """
    if dialect == "postgresql":
        db.session.execute(select(func.pg_notify(NOTIFY_CHANNEL, notify_payload(user_id, seq))))


def lock_user(user_id: int) -> User:
    """Load user ``user_id`` afresh and hold its row lock until the transaction ends.

    Call it first in a write transaction that reads what it then writes about
    this user (read time, unread messages): writers of one user then run one
    after the other, as they do on SQLite, whose ``BEGIN IMMEDIATE`` already
    holds the whole database. On PostgreSQL it is ``SELECT ... FOR NO KEY
    UPDATE``, which does not block inserting messages that merely reference
    the user (their foreign keys take a weaker lock), so two users writing to
    each other cannot deadlock.
    """
    found = db.session.get(
        User, user_id, with_for_update={"key_share": True}, populate_existing=True
    )
    if found is None:
        raise LookupError(f"no user with id {user_id}")
    return found


def password_matches(user: User | None, password: str) -> bool:
    """Is ``password`` that of ``user``? For no user, False after the same work
    (a hash), so the time taken does not tell which user names exist."""
    if user is None:
        return _hasher().check(None, password)
    return user.check_password(password)


def _hasher() -> PasswordHasher:
    hasher: PasswordHasher = current_app.extensions["password_hasher"]
    return hasher


@login_manager.user_loader
def load_user(session_token: str) -> User | None:
    """The user a cookie names (``User.get_id``), if that token is still theirs."""
    return db.session.scalar(select(User).where(User.session_token == session_token))
