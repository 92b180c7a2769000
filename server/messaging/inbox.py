"""The two writes of the lesson: send a message, read one's messages.

Each runs as one write transaction that also refreshes the recipient's
``unread_message_count`` notification, then wakes that user's waiting long
polls and event streams (see ``hub``). Each begins by locking the row of the
user whose count it changes (``lock_user``), so the message's timestamp, the
read time and the count are all taken while no other writer of that user
can commit in between (on PostgreSQL; SQLite serializes every writer anyway).
"""

from __future__ import annotations

from flask import current_app

from .database import utcnow, write_transaction
from .extensions import db
from .hub import NotificationHub
from .models import UNREAD_MESSAGE_COUNT, Message, User, lock_user

__all__ = ["hub", "mark_messages_read", "send_message"]


def hub() -> NotificationHub:
    """This app's notification hub."""
    return current_app.extensions["notification_hub"]


def send_message(sender: User, recipient: User, body: str) -> Message:
    """Store a message and refresh the recipient's unread count."""
    sender_id, recipient_id = sender.id, recipient.id
    with write_transaction():
        recipient = lock_user(recipient_id)
        message = Message(sender_id=sender_id, recipient_id=recipient_id, body=body)
        db.session.add(message)
        db.session.flush()
        recipient.add_notification(UNREAD_MESSAGE_COUNT, recipient.unread_message_count)
    hub().publish([recipient_id])
    return message


def mark_messages_read(user: User) -> None:
    """Everything received so far is read: the read time moves, the count drops to 0."""
    user_id = user.id
    with write_transaction():
        user = lock_user(user_id)
        user.last_message_read_time = utcnow()
        user.add_notification(UNREAD_MESSAGE_COUNT, 0)
    hub().publish([user_id])
