"""Fixtures for the messaging app: an app on a temp SQLite file, a form-filling
test client (real CSRF tokens, as a browser sends them), and a live server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from course.servers import ServerHandle
from messaging_helpers import LIVE_CONFIG, FormClient, app_config
from server.messaging import create_app
from server.messaging.extensions import db


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app(app_config(tmp_path))
    yield app
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
