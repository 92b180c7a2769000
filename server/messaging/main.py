"""Blueprint ``main``: the pages (home, profile, send a message, inbox)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from werkzeug.wrappers import Response

from . import TRANSPORTS
from .extensions import db
from .forms import MessageForm
from .inbox import mark_messages_read, send_message
from .models import User
from .notices import notice

bp = Blueprint("main", __name__)

#: Pages past this are empty anyway; the bound keeps the SQL OFFSET within 64 bits.
MAX_PAGE = 1_000_000


@bp.app_context_processor
def notify_settings() -> dict[str, Any]:
    """What the page's notification script needs: transport, poll interval, gateway.

    ``?transport=poll|longpoll|sse|websocket`` on any page overrides
    ``NOTIFY_TRANSPORT`` for the rest of the browser session
    (``?transport=default`` forgets it). ``push_url`` is ``PUSH_URL``: where
    the script opens its event stream and WebSocket when there is a gateway.
    """
    asked = request.args.get("transport")
    if asked in TRANSPORTS:
        session["transport"] = asked
    elif asked == "default":
        session.pop("transport", None)
    return {
        "notify": {
            "transport": session.get("transport", current_app.config["NOTIFY_TRANSPORT"]),
            "interval_ms": current_app.config["NOTIFY_POLL_INTERVAL_MS"],
            "push_url": current_app.config["PUSH_URL"],
        }
    }


@bp.route("/")
@bp.route("/index")
def index() -> str:
    users = db.session.scalars(select(User).order_by(User.username)).all()
    return render_template("index.html", title="Home", users=users)


@bp.route("/user/<username>")
@login_required
def user(username: str) -> str:
    profile = db.first_or_404(select(User).where(User.username == username))
    return render_template("user.html", title=profile.username, user=profile)


@bp.route("/send_message/<recipient>", methods=["GET", "POST"])
@login_required
def send_message_page(recipient: str) -> str | Response:
    to = db.first_or_404(select(User).where(User.username == recipient))
    form = MessageForm()
    if form.validate_on_submit():
        send_message(current_user, to, form.message.data or "")
        notice("Your message has been sent.")
        return redirect(url_for("main.user", username=recipient))
    return render_template("send_message.html", title="Send message", form=form, recipient=recipient)


@bp.route("/messages")
@login_required
def messages() -> str:
    mark_messages_read(current_user)
    page = min(request.args.get("page", 1, type=int), MAX_PAGE)
    pagination = db.paginate(
        current_user.received_messages(),
        page=page,
        per_page=current_app.config["MESSAGES_PER_PAGE"],
        error_out=False,
    )
    newer_url = url_for("main.messages", page=pagination.prev_num) if pagination.has_prev else None
    older_url = url_for("main.messages", page=pagination.next_num) if pagination.has_next else None
    return render_template(
        "messages.html",
        title="Messages",
        messages=pagination.items,
        newer_url=newer_url,
        older_url=older_url,
    )


@bp.route("/healthz")
def healthz() -> dict[str, str]:
    return {"server": "messaging", "version": current_app.config["APP_VERSION"]}


