"""Blueprint ``auth``: register, log in, log out (the lesson's /auth/... URLs)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from .extensions import db
from .forms import LoginForm, LogoutForm, RegistrationForm
from .models import User

bp = Blueprint("auth", __name__, url_prefix="/auth")


@bp.route("/register", methods=["GET", "POST"])
def register() -> str | Response:
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = RegistrationForm()
    if form.validate_on_submit():
        user = User(username=form.username.data, email=form.email.data)
        user.set_password(form.password.data)
        db.session.add(user)
        db.session.commit()
        flash("You are registered. Sign in to start.")
        return redirect(url_for("auth.login"))
    return render_template("auth/register.html", title="Register", form=form)


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response:
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    if form.validate_on_submit():
        user = db.session.scalar(select(User).where(User.username == form.username.data))
        if user is None or not user.check_password(form.password.data):
            flash("Invalid username or password.")
            return redirect(url_for("auth.login"))
        login_user(user, remember=form.remember_me.data)
        return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", title="Sign in", form=form)


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> str | Response:
    """Sign out with a POST (the navigation bar's button) carrying the CSRF token.

    The source lesson signs out on a plain GET link, which any page on the web
    could trigger with an ``<img src=".../auth/logout">``. A GET here only
    shows a page with the button, so old links and bookmarks still work.
    """
    if current_user.is_anonymous:
        return redirect(url_for("main.index"))
    form = LogoutForm()
    if form.validate_on_submit():
        logout_user()
        flash("You are signed out.")
        return redirect(url_for("main.index"))
    return render_template("auth/logout.html", title="Sign out", form=form)


def _safe_next(target: str | None) -> str:
    """Follow ?next= only to a path on this site (no open redirect)."""
    if not target or urlsplit(target).netloc or urlsplit(target).scheme or target.startswith("//"):
        return url_for("main.index")
    return target
