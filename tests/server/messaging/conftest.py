"""Fixtures for the messaging app: an app on a temp SQLite file (or a fresh
PostgreSQL database), a form-filling test client (real CSRF tokens, as a
browser sends them), and a live server.

Tests run on SQLite. A module or test marked
``@pytest.mark.databases("sqlite", "postgresql")`` runs once per database
named: its ``app`` then sits on a new, empty database of a throwaway
PostgreSQL server (one per test session, see ``course.postgres_server``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from messaging_helpers import LIVE_CONFIG, FormClient, app_config

from course.postgres_server import PostgreSQLServer, start_postgresql
from course.servers import ServerHandle
from server.messaging import create_app
from server.messaging.extensions import db

DATABASES = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "databases(*names): run the test once per database named (sqlite, postgresql)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("databases")
    if marker is None or "database" not in metafunc.fixturenames:
        return
    unknown = set(marker.args) - set(DATABASES)
    if unknown:
        raise pytest.UsageError(f"databases({', '.join(marker.args)}): pick from {DATABASES}")
    metafunc.parametrize("database", marker.args, indirect=True)


@pytest.fixture(scope="session")
def postgresql() -> Iterator[PostgreSQLServer]:
    """A PostgreSQL server of this test session (fails if it is not installed)."""
    server = start_postgresql()
    yield server
    server.stop()


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str:
    """Which database the test's app uses: "sqlite" unless marked ``databases``."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def database_url(request: pytest.FixtureRequest, database: str, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database of the kind ``database`` names."""
    if database == "sqlite":
        yield f"sqlite:///{tmp_path / 'messaging.db'}"
        return
    server: PostgreSQLServer = request.getfixturevalue("postgresql")
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield server.create_database(name)
    server.drop_database(name)


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Flask]:
    app = create_app(app_config(tmp_path, SQLALCHEMY_DATABASE_URI=database_url))
    yield app
    listener = app.extensions.get("notify_listener")  # PostgreSQL: its LISTEN thread
    if listener is not None:
        listener.stop()
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def make_client(app: Flask):  # type: ignore[no-untyped-def]
    def make() -> FormClient:
        return FormClient(app.test_client())

    return make


@pytest.fixture
def alice(app: Flask, make_client) -> FormClient:  # type: ignore[no-untyped-def]
    """A registered, logged-in user "alice" (bob and carol exist too)."""
    client = make_client()
    for name in ("alice", "bob", "carol"):
        assert client.register(name).status_code == 302
    assert client.login("alice").status_code == 302
    return client


@pytest.fixture
def bob(alice: FormClient, make_client) -> FormClient:  # type: ignore[no-untyped-def]
    client = make_client()
    assert client.login("bob").status_code == 302
    return client


@pytest.fixture(scope="module")
def live_server(start_messaging) -> Iterator[ServerHandle]:  # type: ignore[no-untyped-def]
    handle = start_messaging("live-messaging", **LIVE_CONFIG)
    yield handle
    handle.stop()
