"""Blueprint ``api``: notifications as JSON, by polling, long polling and SSE.

All three deliver the same objects, ``Notification.to_dict()``::

    {"id": 17, "name": "unread_message_count", "data": 3, "timestamp": 1763750000.12}

- ``GET /notifications?since=<float>`` the lesson's poll, by timestamp;
  ``GET /notifications?after=<id>`` the same, by cursor (cannot skip or repeat).
- ``GET /notifications/wait?after=<id>[&timeout=<s>]`` long poll: answers at
  once when something is newer, else when something arrives, else with
  ``[]`` after ``timeout`` (at most ``LONG_POLL_TIMEOUT``) seconds.
- ``GET /notifications/stream[?after=<id>]`` Server-Sent Events: one event per
  notification, its ``id:`` the cursor; a reconnecting browser sends
  ``Last-Event-ID`` and resumes after it. Comments keep idle streams alive.

A server has a limited number of threads, and each waiting request holds
one: past ``MAX_WAITING_REQUESTS`` waiting requests, the two waiting
endpoints answer ``503`` with ``Retry-After`` (clients back off and retry);
a user who already holds ``MAX_WAITING_PER_USER`` of them gets ``429`` with
``Retry-After`` instead, so one user cannot take every seat.

Without a session every endpoint answers ``401`` with a JSON error (a script
cannot do anything useful with the login page a redirect would give it); a
bad ``since``/``after``/``timeout`` is a ``400`` with a JSON error (``after``
and ``Last-Event-ID`` go up to ``MAX_CURSOR``, 2**31 - 1).
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context
from flask_login import current_user

from .extensions import db
from .hub import NoSeat
from .inbox import hub
from .models import MAX_CURSOR, Notification, User, notifications_after

bp = Blueprint("api", __name__)

DISCONNECT_CHECK_SECONDS = 1.0

F = TypeVar("F", bound=Callable[..., Any])


class BadParameter(ValueError):
    """A query parameter the API cannot use; becomes a 400 JSON answer."""


@bp.errorhandler(BadParameter)
def _bad_parameter(error: BadParameter) -> tuple[Response, int]:
    return jsonify(error=str(error)), 400


@bp.errorhandler(NoSeat)
def _no_seat(refusal: NoSeat) -> tuple[Response, int, dict[str, str]]:
    """429 when this user holds too many waiting requests, 503 when the server does."""
    status = 429 if refusal.per_user else 503
    return jsonify(error=str(refusal)), status, {"Retry-After": str(refusal.retry_after)}


def json_login_required(view: F) -> F:
    """Like ``login_required``, but answers 401 JSON instead of redirecting."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return jsonify(error="not logged in: sign in at /auth/login"), 401
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@bp.route("/notifications")
@json_login_required
def notifications() -> Response:
    since, after = _cursor_params()
    return jsonify([n.to_dict() for n in _newer(current_user, since, after)])


def _newer(user: User | None, since: float | None, after: int | None) -> list[Notification]:
    """By cursor when ``after`` is given, else by the lesson's timestamp (none for no user)."""
    if user is None:  # deleted while a request waited for it
        return []
    if after is not None:
        return user.notifications_after(after)
    return user.notifications_since(since if since is not None else 0.0)


@bp.route("/notifications/wait")
@json_login_required
def wait_for_notifications() -> Response:
    since, after = _cursor_params()
    limit = current_app.config["LONG_POLL_TIMEOUT"]
    timeout = _number("timeout", request.args.get("timeout"), default=limit, low=0.0, high=limit)
    user_id = current_user.id
    hub().take_seat(user_id)  # or NoSeat: 429/503 with Retry-After
    try:
        return _wait(user_id, since, after, timeout)
    finally:
        hub().leave_seat(user_id)


def _wait(user_id: int, since: float | None, after: int | None, timeout: float) -> Response:
    recheck = current_app.config["NOTIFY_RECHECK_SECONDS"]
    gone = _client_gone_check()
    deadline = time.monotonic() + timeout
    while True:
        seen = hub().generation(user_id)
        rows = _newer(db.session.get(User, user_id), since, after)
        remaining = deadline - time.monotonic()
        if rows or remaining <= 0 or gone():
            return jsonify([n.to_dict() for n in rows])
        db.session.rollback()  # hold no transaction or connection while waiting
        _sleep_until_changed(user_id, seen, min(remaining, recheck), gone)


def _client_gone_check() -> Callable[[], bool]:
    """waitress tells a request whether its client hung up (with
    ``channel_request_lookahead`` > 0); other servers: assume it is there."""
    return request.environ.get("waitress.client_disconnected", lambda: False)


def _sleep_until_changed(user_id: int, seen: int, timeout: float, gone: Callable[[], bool]) -> None:
    """Wait for the hub, waking every second to let a departed client's thread go."""
    deadline = time.monotonic() + timeout
    while not gone():
        remaining = deadline - time.monotonic()
        if remaining <= 0 or hub().wait(user_id, seen, min(remaining, DISCONNECT_CHECK_SECONDS)):
            return


@bp.route("/notifications/stream")
@json_login_required
def stream_notifications() -> Response:
    after = _integer("Last-Event-ID", request.headers.get("Last-Event-ID"))
    if after is None:
        after = _integer("after", request.args.get("after"))
    user_id, seats = current_user.id, hub()
    seats.take_seat(user_id)  # or NoSeat: 429/503 with Retry-After
    config = current_app.config
    events = _event_stream(
        user_id,
        after or 0,
        gone=_client_gone_check(),
        heartbeat=config["SSE_HEARTBEAT_SECONDS"],
        recheck=config["NOTIFY_RECHECK_SECONDS"],
        retry_ms=config["SSE_RETRY_MS"],
    )
    response = Response(
        stream_with_context(events),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    # The WSGI server closes the response when the stream ends: the client
    # went away (noticed within a second, or at the next write) or it failed.
    response.call_on_close(functools.partial(seats.leave_seat, user_id))
    return response


def _event_stream(
    user_id: int,
    after: int,
    *,
    gone: Callable[[], bool],
    heartbeat: float,
    recheck: float,
    retry_ms: int,
) -> Iterator[str]:
    yield f"retry: {retry_ms}\n\n"
    last_sent = time.monotonic()
    while not gone():
        seen = hub().generation(user_id)
        rows: list[Notification] = notifications_after(user_id, after)
        events = [(n.seq, json.dumps(n.to_dict())) for n in rows]
        db.session.rollback()  # hold no transaction or connection while waiting
        for seq, data in events:
            yield f"id: {seq}\ndata: {data}\n\n"
            after = seq
            last_sent = time.monotonic()
        idle = time.monotonic() - last_sent
        if idle >= heartbeat:
            yield ": keep-alive\n\n"  # also how a closed connection is noticed
            last_sent = time.monotonic()
            idle = 0.0
        _sleep_until_changed(user_id, seen, min(heartbeat - idle, recheck), gone)


def _cursor_params() -> tuple[float | None, int | None]:
    since_text, after_text = request.args.get("since"), request.args.get("after")
    if since_text is not None and after_text is not None:
        raise BadParameter("give either since=<timestamp> or after=<id>, not both")
    since = _number("since", since_text, default=None, low=0.0, high=math.inf)
    return since, _integer("after", after_text)


def _number(name: str, text: str | None, *, default: Any, low: float, high: float) -> Any:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise BadParameter(f"{name} must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise BadParameter(f"{name} must be a finite number >= 0, got {text!r}")
    return min(max(value, low), high)


def _integer(name: str, text: str | None) -> int | None:
    if text is None or text == "":
        return None
    if not re.fullmatch(r"[0-9]{1,18}", text):
        raise BadParameter(f"{name} must be a whole number >= 0, got {text!r}")
    value = int(text)
    if value > MAX_CURSOR:  # PostgreSQL could not even compare it with a cursor
        raise BadParameter(f"{name} must be at most {MAX_CURSOR}, got {text!r}")
    return value
