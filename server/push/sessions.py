"""Who a request comes from: the messaging app's own session cookie.

The app (Flask + Flask-Login) keeps its session in a cookie signed with its
``SECRET_KEY``; Flask-Login stores the user's ``session_token`` in it under
``_user_id``. The gateway checks the signature and age with Flask's own
serializer (``SecureCookieSessionInterface``), then looks the token up: a
forged or expired cookie, or a token revoked by a logout, names nobody.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature

__all__ = ["SESSION_COOKIE", "SessionReader"]

#: Flask's cookie name (the app keeps the default).
SESSION_COOKIE = "session"


class SessionReader:
    """Reads the ``session_token`` out of a session cookie the app signed."""

    def __init__(self, secret_key: str) -> None:
        # A bare Flask app only to hand Flask's serializer the same key and defaults
        # (salt, key derivation, digest, lifetime) as the messaging app uses.
        app = Flask("server.push")
        app.config["SECRET_KEY"] = secret_key
        serializer = SecureCookieSessionInterface().get_signing_serializer(app)
        if serializer is None:  # only without a key, which Settings refuses
            raise ValueError("a SECRET_KEY is needed to read session cookies")
        self._serializer = serializer
        self._max_age = int(app.permanent_session_lifetime.total_seconds())

    def session_token(self, cookie: str | None) -> str | None:
        """The token the cookie carries, or None (no cookie, forged, expired, signed out)."""
        if not cookie:
            return None
        try:
            data: Any = self._serializer.loads(cookie, max_age=self._max_age)
        except BadSignature:  # also SignatureExpired, and a payload that is not JSON
            return None
        if not isinstance(data, dict):
            return None
        token = data.get("_user_id")
        return token if isinstance(token, str) and token else None
