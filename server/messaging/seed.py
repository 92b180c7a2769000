"""Demo data for the notebooks: users ``user1..userN`` and some messages."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from .extensions import db
from .inbox import send_message
from .models import User

__all__ = ["DEMO_PASSWORD", "SeedReport", "seed_database", "seed_demo"]

DEMO_PASSWORD = "password"

_WORDS = [
    "lunch", "tomorrow", "meeting", "notes", "draft", "review", "coffee", "train", "late", "early", "thanks",
    "great", "idea", "slides", "demo", "bug", "fixed", "ship", "it", "weekend", "plans",
]


@dataclass(frozen=True)
class SeedReport:
    """What ``seed_demo`` left in the database."""

    usernames: tuple[str, ...]
    password: str
    users_created: int
    messages_sent: int


def seed_demo(app: Flask, users: int = 5, messages: int = 20, seed: int = 0) -> SeedReport:
    """Make sure ``user1..user<users>`` exist (password ``DEMO_PASSWORD``) and
    send ``messages`` messages between them, chosen with a fixed ``seed``.

    Safe to call again: existing users are kept (their password is reset to
    the demo one, which signs them out only if it was another); the messages
    are added again.
    """
    if users < 2 and messages:
        raise ValueError("messages need at least 2 users: pass users >= 2 or messages=0")
    names = tuple(f"user{i}" for i in range(1, users + 1))
    rng = random.Random(seed)
    with app.app_context():
        existing = {u.username: u for u in db.session.scalars(select(User).where(User.username.in_(names)))}
        created = 0
        for name in names:
            user = existing.get(name)
            if user is None:
                user = User(username=name, email=f"{name}@example.com")
                db.session.add(user)
                created += 1
            if user.password_hash is None or not user.check_password(DEMO_PASSWORD):
                user.set_password(DEMO_PASSWORD)
        db.session.commit()
        by_name = {u.username: u for u in db.session.scalars(select(User).where(User.username.in_(names)))}
        for _ in range(messages):
            sender, recipient = rng.sample(names, 2)
            body = " ".join(rng.choices(_WORDS, k=rng.randint(3, 10))).capitalize() + "."
            send_message(by_name[sender], by_name[recipient], body)
    return SeedReport(names, DEMO_PASSWORD, created, messages)


def seed_database(database_url: str, users: int = 5, messages: int = 20, **config: Any) -> SeedReport:
    """``seed_demo`` on the database a running server uses, from another process
    (e.g. a notebook): ``seed_database(f"sqlite:///{path}")``.

    The server's waiting long polls and streams are not woken by these writes
    (they happen in this process); they see them at their next database
    re-check (``NOTIFY_RECHECK_SECONDS``).
    """
    from . import create_app

    overrides = {"SQLALCHEMY_DATABASE_URI": database_url, **config}
    if database_url.startswith("sqlite:///") and "INSTANCE_PATH" not in overrides:
        overrides["INSTANCE_PATH"] = str(Path(database_url.removeprefix("sqlite:///")).resolve().parent)
    app = create_app(overrides)
    try:
        return seed_demo(app, users=users, messages=messages)
    finally:
        with app.app_context():
            db.engine.dispose()
