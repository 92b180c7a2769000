"""Helpers for the messaging app's tests (fixtures are in conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from course.servers import FAST_HASH, ServerHandle, start_server  # FAST_HASH: scrypt costs ~50 ms a login
from server.messaging.extensions import db
from server.messaging.models import User

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def csrf_token(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF token field"
    return match.group(1)


class FormClient:
    """A test client that fills forms like a browser: GET the page, POST with its token."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def get(self, url: str, **kwargs: Any) -> TestResponse:
        return self.client.get(url, **kwargs)

    def submit(self, url: str, data: dict[str, str], **kwargs: Any) -> TestResponse:
        page = self.client.get(url)
        assert page.status_code == 200, f"GET {url} answered {page.status_code}"
        return self.client.post(url, data={**data, "csrf_token": csrf_token(page.text)}, **kwargs)

    def register(self, username: str, password: str = "secret") -> TestResponse:
        return self.submit(
            "/auth/register",
            {
                "username": username,
                "email": f"{username}@example.com",
                "password": password,
                "password2": password,
            },
        )

    def login(self, username: str, password: str = "secret") -> TestResponse:
        return self.submit("/auth/login", {"username": username, "password": password})

    def logout(self) -> TestResponse:
        return self.submit("/auth/logout", {})

    def send(self, recipient: str, body: str, **kwargs: Any) -> TestResponse:
        return self.submit(f"/send_message/{recipient}", {"message": body}, **kwargs)


def app_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'messaging.db'}",
        "INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": "tests",
        "PASSWORD_HASH_METHOD": FAST_HASH,
        "MESSAGES_PER_PAGE": 3,
        "LONG_POLL_TIMEOUT": 5.0,
        **extra,
    }


def user(app: Flask, username: str) -> User:
    with app.app_context():
        found = db.session.scalar(db.select(User).where(User.username == username))
        assert found is not None
        db.session.expunge(found)
        return found


LIVE_CONFIG = {
    "SECRET_KEY": "live-tests",
    "PASSWORD_HASH_METHOD": FAST_HASH,
    "LONG_POLL_TIMEOUT": "30",
    "SSE_HEARTBEAT_SECONDS": "1",
    "NOTIFY_RECHECK_SECONDS": "60",  # > LONG_POLL_TIMEOUT: only the hub wakes waiters
    "MESSAGING_THREADS": "32",
}


TIMEOUT = (5, 15)  # connect, read (seconds): generous, the machine is shared


class WebUser:
    """One person with a browser-like requests session."""

    def __init__(self, base_url: str, username: str) -> None:
        self.base_url, self.username = base_url, username
        self.session = requests.Session()

    def url(self, path: str) -> str:
        return self.base_url + path

    def submit(self, path: str, data: dict[str, str]) -> requests.Response:
        page = self.session.get(self.url(path), timeout=TIMEOUT)
        page.raise_for_status()
        data = {**data, "csrf_token": csrf_token(page.text)}
        return self.session.post(self.url(path), data=data, timeout=TIMEOUT, allow_redirects=False)

    def register_and_login(self) -> WebUser:
        name = self.username
        self.submit(
            "/auth/register",
            {"username": name, "email": f"{name}@example.com", "password": "pw", "password2": "pw"},
        )
        answer = self.submit("/auth/login", {"username": name, "password": "pw"})
        assert answer.status_code == 302 and "/auth/login" not in answer.headers["Location"]
        return self

    def send(self, recipient: str, body: str) -> requests.Response:
        return self.submit(f"/send_message/{recipient}", {"message": body})

    def logout(self) -> requests.Response:
        return self.submit("/auth/logout", {})

    def get(self, path: str, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
        return self.session.get(self.url(path), timeout=kwargs.pop("timeout", TIMEOUT), **kwargs)


def identify_by_healthz(kind: str | None):  # type: ignore[no-untyped-def]
    """An ``identify`` for ``start_server``: ``/healthz`` answers a JSON object
    (with ``"server": kind`` unless ``kind`` is None: the contract promises the gateway's JSON only)."""

    def identify(url: str) -> dict[str, Any] | None:
        try:
            answer = requests.get(url + "/healthz", timeout=1)
            info = answer.json() if answer.ok else None
        except (requests.RequestException, ValueError):
            return None
        if not isinstance(info, dict) or (kind is not None and info.get("server") != kind):
            return None
        return info

    return identify


def start_app_workers(database_url: str, folder: Path, workers: int = 2, **settings: str) -> ServerHandle:
    """``python -m server.messaging --workers N`` (gunicorn) on a free port; stop it with ``stop()``."""
    env = {
        "DATABASE_URL": database_url,
        "MESSAGING_INSTANCE_PATH": str(folder),
        "PASSWORD_HASH_METHOD": FAST_HASH,
        "MESSAGING_THREADS": "8",
        **settings,
    }
    return start_server(
        "messaging app",
        "server.messaging",
        ["--workers", str(workers)],
        port=None,
        identify=identify_by_healthz("messaging"),
        env=env,
        reuse=False,
    )


def start_push_gateway(database_url: str, secret_key: str, **settings: str) -> ServerHandle:
    """``python -m server.push`` (the gateway of issue 13) on a free port, on the app's database."""
    env = {"DATABASE_URL": database_url, "SECRET_KEY": secret_key, **settings}
    return start_server(
        "push gateway", "server.push", port=None, identify=identify_by_healthz(None), env=env, reuse=False
    )
