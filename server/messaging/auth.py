"""Blueprint ``auth``: register, log in, log out (the lesson's /auth/... URLs).

Signing in is throttled (``throttle``: 429 + ``Retry-After`` after too many
failures per user name or per address) and its password check waits for
the bounded hashing pool (``passwords``: 503 + ``Retry-After`` when it is
full). Signing out changes the user's ``session_token``, so every cookie
issued before, remember-me ones included, stops working.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.wrappers import Response

from .database import write_transaction
from .extensions import db
from .forms import LoginForm, LogoutForm, RegistrationForm
from .models import User, password_matches
from .notices import notice
from .passwords import HasherBusy
from .throttle import LoginThrottle, LoginThrottled

bp = Blueprint("auth", __name__, url_prefix="/auth")


@bp.route("/register", methods=["GET", "POST"])
def register() -> str | Response | tuple[str, int, dict[str, str]]:
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = RegistrationForm()
    if form.validate_on_submit():
        user = User(username=form.username.data, email=form.email.data)
        try:
            user.set_password(form.password.data or "")
        except HasherBusy as busy:
            return _refused(form, "auth/register.html", "Register", str(busy), 503, busy.retry_after)
        db.session.add(user)
        db.session.commit()
        notice("You are registered. Sign in to start.")
        return redirect(url_for("auth.login"))
    return render_template("auth/register.html", title="Register", form=form)


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int, dict[str, str]]:
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = _authenticate(form.username.data or "", form.password.data or "")
        except LoginThrottled as throttled:
            return _refused(form, "auth/login.html", "Sign in", f"{throttled}.", 429, throttled.retry_after)
        except HasherBusy as busy:
            return _refused(form, "auth/login.html", "Sign in", f"{busy}.", 503, busy.retry_after)
        if user is None:
            notice("Invalid username or password.")
            return redirect(url_for("auth.login"))
        login_user(user, remember=form.remember_me.data)
        return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", title="Sign in", form=form)


def _authenticate(username: str, password: str) -> User | None:
    """The user if the password is theirs, else None; counted by the login throttle."""
    throttle: LoginThrottle = current_app.extensions["login_throttle"]
    with throttle.attempt(username, request.remote_addr or "unknown") as attempt:
        user = db.session.scalar(select(User).where(User.username == username))
        if not password_matches(user, password):
            return None
        attempt.succeeded()
        return user


def _refused(
    form: FlaskForm, template: str, title: str, reason: str, status: int, retry_after: int
) -> tuple[str, int, dict[str, str]]:
    """The form again, saying why, with ``status`` and ``Retry-After``."""
    notice(reason)
    page = render_template(template, title=title, form=form)
    return page, status, {"Retry-After": str(retry_after)}


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> str | Response:
    """Sign out with a POST (the navigation bar's button) carrying the CSRF token.

    The source lesson signs out on a plain GET link, which any page on the web
    could trigger with an ``<img src=".../auth/logout">``. A GET here only
    shows a page with the button, so old links and bookmarks still work.

    Signing out revokes the user's cookies everywhere (a copy of the session
    or remember-me cookie kept from before no longer signs anyone in).
    """
    if current_user.is_anonymous:
        return redirect(url_for("main.index"))
    form = LogoutForm()
    if form.validate_on_submit():
        user_id = current_user.id
        with write_transaction():
            user = db.session.get(User, user_id)
            if user is not None:
                user.revoke_sessions()
        logout_user()
        notice("You are signed out.")
        return redirect(url_for("main.index"))
    return render_template("auth/logout.html", title="Sign out", form=form)


def _safe_next(target: str | None) -> str:
    """Follow ?next= only to a path on this site (no open redirect)."""
    if not target or urlsplit(target).netloc or urlsplit(target).scheme or target.startswith("//"):
        return url_for("main.index")
    return target
