"""Issue 15, the messaging app, in process (Flask's test client, real CSRF tokens).

Each test names the finding it reproduces: (1) the secret key, (2) user
names and emails, (4) password guessing, (5) sessions, cookies, headers
and body size. The findings that need a real server (3, 4's memory, 6, 7)
are in ``test_messaging_hardening_live.py``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from flask import Flask
from flask_migrate import downgrade, upgrade
from messaging_helpers import FAST_HASH, FormClient, app_config
from sqlalchemy import func, select, text

from server.messaging import MIGRATIONS, SECRET_KEY_FILE, ConfigError, config_from_env, create_app
from server.messaging.extensions import db
from server.messaging.models import User
from server.messaging.passwords import HasherBusy, PasswordHasher
from server.messaging.throttle import LoginThrottle, LoginThrottled

OLD_DEFAULT_KEY = "dev-only-secret-change-me"
BOTH = pytest.mark.databases("sqlite", "postgresql")  # see conftest.py


def make_app(tmp_path: Path, **extra: object) -> Flask:
    return create_app(app_config(tmp_path, **extra))


# -- (1) the secret key -------------------------------------------------------------------------


def test_without_secret_key_a_random_one_is_generated_once_and_kept_private(tmp_path, monkeypatch, caplog):
    """Finding 1: without SECRET_KEY the app signed with a key found in the repository."""
    monkeypatch.delenv("SECRET_KEY", raising=False)
    settings = {k: v for k, v in app_config(tmp_path).items() if k != "SECRET_KEY"}
    with caplog.at_level(logging.INFO, logger="server.messaging"):
        first = create_app(settings)
    key_file = tmp_path / SECRET_KEY_FILE
    assert first.config["SECRET_KEY"] not in (OLD_DEFAULT_KEY, None, "")
    assert len(first.config["SECRET_KEY"]) >= 32
    assert key_file.read_text().strip() == first.config["SECRET_KEY"]
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert any("generated" in r.getMessage() and str(key_file) in r.getMessage() for r in caplog.records)
    second = create_app(settings)  # a restart keeps it: sessions survive restarts
    assert second.config["SECRET_KEY"] == first.config["SECRET_KEY"]
    other_folder = tmp_path / "elsewhere"
    third = create_app({**settings, "INSTANCE_PATH": str(other_folder)})
    assert third.config["SECRET_KEY"] != first.config["SECRET_KEY"]


def test_an_empty_secret_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        make_app(tmp_path, SECRET_KEY="")


def test_a_given_secret_key_is_used_and_nothing_is_written(tmp_path):
    app = make_app(tmp_path, SECRET_KEY="given")
    assert app.config["SECRET_KEY"] == "given"
    assert not (tmp_path / SECRET_KEY_FILE).exists()


# -- (2) user names and email addresses ---------------------------------------------------------


def register(client: FormClient, username: str, email: str) -> tuple[int, str]:
    answer = client.submit(
        "/auth/register", {"username": username, "email": email, "password": "secret", "password2": "secret"}
    )
    return answer.status_code, answer.text


def usernames(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(User.username).order_by(User.id)))


@pytest.mark.parametrize("username", ["user1\n", "user1\r\n", "user1 ", " user1", "us er", ".", "..", "-x", "ü"])
def test_a_username_that_is_not_plain_letters_and_digits_is_refused_with_a_form_error(app, make_client, username):
    """Finding 2: "user1\\n" was accepted ($ matches before a final newline) and showed as "user1"."""
    status, page = register(make_client(), username, "someone@example.com")
    assert status == 200 and "Letters, digits, dots, dashes and underscores only" in page
    assert usernames(app) == []


def test_user_names_differing_only_in_case_are_the_same_user(app, make_client):
    """Finding 2: "USER1" was a second account beside "user1"."""
    assert register(make_client(), "user1", "one@example.com")[0] == 302
    status, page = register(make_client(), "USER1", "other@example.com")
    assert status == 200 and "That username is taken" in page
    assert register(make_client(), "Alice", "alice@example.com")[0] == 302
    assert usernames(app) == ["user1", "alice"]  # stored in lower case
    client = make_client()
    assert client.login("ALICE").headers["Location"] == "/index"  # and found in any case
    assert client.get("/user/alice").status_code == 200


@pytest.mark.parametrize("email", ["a@b\n", "a@b\r\n", "a b@c", "a@b@c", "@b", "a@", "a\t@b"])
def test_an_email_that_is_not_one_plain_address_is_refused(app, make_client, email):
    """Finding 2: the email "a@b\\n" was accepted."""
    status, page = register(make_client(), "someone", email)
    assert status == 200 and "That does not look like an email address." in page
    assert usernames(app) == []


def test_emails_differing_only_in_case_are_one_address(app, make_client):
    assert register(make_client(), "first", "Someone@Example.com")[0] == 302
    status, page = register(make_client(), "second", "someone@EXAMPLE.COM")
    assert status == 200 and "That email address is already registered." in page
    with app.app_context():
        assert db.session.scalar(select(User.email)) == "someone@example.com"


def test_models_store_names_in_lower_case_whoever_writes_them(app):
    with app.app_context():
        db.session.add(User(username="Carol", email="Carol@Example.COM"))
        db.session.commit()
        carol = db.session.scalar(select(User))
        assert carol is not None and (carol.username, carol.email) == ("carol", "carol@example.com")


@BOTH
def test_the_migration_lowers_existing_names_fills_session_tokens_and_keeps_clashes(tmp_path, database_url):
    app = make_app(tmp_path, SQLALCHEMY_DATABASE_URI=database_url)
    with app.app_context():
        downgrade(directory=str(MIGRATIONS), revision="382fe407b535")
        rows = [("Mixed", "Mixed@Example.com"), ("dup", "dup@example.com"), ("DUP", "DUP@example.com")]
        for name, email in rows:
            db.session.execute(
                text('INSERT INTO "user" (username, email, notification_counter) VALUES (:u, :e, 0)'),
                {"u": name, "e": email},
            )
        db.session.commit()
        upgrade(directory=str(MIGRATIONS))
        found = db.session.execute(select(User.username, User.email, User.session_token).order_by(User.id)).all()
        db.engine.dispose()
    assert [(u, e) for u, e, _ in found] == [
        ("mixed", "mixed@example.com"),
        ("dup", "dup@example.com"),
        ("DUP", "DUP@example.com"),  # kept: its lower-case name is taken
    ]
    tokens = [t for _, _, t in found]
    assert all(tokens) and len(set(tokens)) == 3


# -- (4) password guessing, in process ----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(throttle: LoginThrottle, username: str, address: str = "10.0.0.1") -> None:
    with throttle.attempt(username, address):
        pass  # the password was wrong


def test_the_throttle_refuses_a_user_name_after_its_failures_until_the_window_moves():
    clock = Clock()
    throttle = LoginThrottle(per_account=3, per_address=None, window=60.0, clock=clock)
    for _ in range(3):
        fail(throttle, "alice")
        clock.now += 1
    with pytest.raises(LoginThrottled, match="for this user name") as refused:
        fail(throttle, "alice")
    assert refused.value.retry_after == 57  # it is 1003; the first failure leaves the window at 1060
    fail(throttle, "bob")  # another name is not affected
    clock.now = 1060.5
    fail(throttle, "alice")  # one failure left the window: one more try
    with pytest.raises(LoginThrottled):
        fail(throttle, "alice")


def test_the_throttle_limits_failures_from_one_address_across_user_names():
    clock = Clock()
    throttle = LoginThrottle(per_account=None, per_address=2, window=60.0, clock=clock)
    fail(throttle, "a", "10.0.0.1")
    fail(throttle, "b", "10.0.0.1")
    with pytest.raises(LoginThrottled, match="from your address"):
        fail(throttle, "c", "10.0.0.1")
    fail(throttle, "c", "10.0.0.2")


def test_a_success_forgets_the_failures_and_an_error_is_not_a_failure():
    throttle = LoginThrottle(per_account=2, per_address=None, window=60.0, clock=Clock())
    fail(throttle, "alice")
    with throttle.attempt("alice", "x") as attempt:
        attempt.succeeded()
    for _ in range(5):
        with pytest.raises(HasherBusy), throttle.attempt("alice", "x"):
            raise HasherBusy()
    fail(throttle, "alice")
    fail(throttle, "alice")
    with pytest.raises(LoginThrottled):
        fail(throttle, "alice")


def test_attempts_in_progress_count_so_a_burst_cannot_slip_past_the_limit():
    throttle = LoginThrottle(per_account=3, per_address=None, window=60.0, clock=Clock())
    open_attempts = [throttle.attempt("alice", "x") for _ in range(3)]
    for attempt in open_attempts:
        attempt.__enter__()  # three guesses checking their passwords at once
    with pytest.raises(LoginThrottled):
        fail(throttle, "alice")
    for attempt in open_attempts:
        attempt.__exit__(None, None, None)


def test_the_throttle_keeps_a_bounded_number_of_keys():
    clock = Clock()
    throttle = LoginThrottle(per_account=5, per_address=5, window=60.0, clock=clock, max_keys=10)
    for i in range(100):
        fail(throttle, f"user{i}", f"10.0.0.{i}")
    assert len(throttle._accounts.events) <= 10 and len(throttle._addresses.events) <= 10


@pytest.fixture
def throttled(tmp_path: Path) -> Flask:
    app = make_app(tmp_path, LOGIN_FAILURES_PER_ACCOUNT=3, LOGIN_FAILURES_PER_ADDRESS=5)
    client = FormClient(app.test_client())
    for name in ("alice", "bob", "carol"):
        assert client.register(name).status_code == 302
    return app


def test_wrong_passwords_past_the_limit_get_429_with_retry_after(throttled):
    """Finding 4: no login throttling."""
    client = FormClient(throttled.test_client())
    for _ in range(3):
        assert client.login("alice", "wrong").headers["Location"] == "/auth/login"
    refused = client.login("alice", "wrong")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 600
    assert "too many failed sign-ins for this user name" in refused.text
    assert csrf_field_in(refused.text)  # the form is there to try again later
    assert client.login("alice").status_code == 429  # even the right password, for now
    assert client.login("bob").headers["Location"] == "/index"  # others sign in


def csrf_field_in(html: str) -> bool:
    return 'name="csrf_token"' in html


def test_failures_from_one_address_across_names_get_429(throttled):
    client = FormClient(throttled.test_client())
    for name in ("alice", "bob", "nobody", "alice", "bob"):
        assert client.login(name, "wrong").status_code == 302
    refused = client.login("carol", "wrong")
    assert refused.status_code == 429 and "from your address" in refused.text


def occupy(hasher: PasswordHasher, places: int) -> tuple[threading.Event, list[threading.Thread]]:
    """Fill ``places`` of the hasher's places with jobs that wait for the returned event."""
    release = threading.Event()
    jobs = [threading.Thread(target=hasher._run, args=(lambda _a, _b: release.wait(30), "", "")) for _ in range(places)]
    for job in jobs:
        job.start()
    while hasher.load() < places:
        time.sleep(0.001)
    return release, jobs


def test_a_full_hashing_queue_answers_503_with_retry_after(tmp_path):
    app = make_app(tmp_path)
    app.extensions["password_hasher"] = hasher = PasswordHasher(FAST_HASH, workers=1, queue=1)
    release, jobs = occupy(hasher, 2)
    try:
        for client, form in ((FormClient(app.test_client()), "login"), (FormClient(app.test_client()), "register")):
            answer = client.login("nobody", "x") if form == "login" else client.register("newcomer")
            assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1, form
            assert "too many sign-ins at once" in answer.text
    finally:
        release.set()
        for job in jobs:
            job.join()
    assert FormClient(app.test_client()).register("newcomer").status_code == 302  # free again


def test_the_hasher_runs_at_most_workers_plus_queue_then_refuses():
    hasher = PasswordHasher(FAST_HASH, workers=1, queue=2)
    release, jobs = occupy(hasher, 3)
    try:
        with pytest.raises(HasherBusy):
            hasher.hash("fourth")
    finally:
        release.set()
        for job in jobs:
            job.join()
    assert hasher.load() == 0
    assert hasher.check(hasher.hash("right"), "right") and not hasher.check(None, "right")


# -- (5) sessions, cookies, headers, body size --------------------------------------------------


def cookie(client: FormClient, name: str) -> str:
    found = client.client.get_cookie(name)
    assert found is not None, f"no {name} cookie"
    return found.value


def signed_in(app: Flask, **cookies: str) -> bool:
    """Does a fresh client carrying only these cookies reach a page that needs a login?"""
    fresh = app.test_client()
    for name, value in cookies.items():
        fresh.set_cookie(name, value)
    return fresh.get("/user/alice").status_code == 200


def test_a_session_cookie_kept_from_before_logout_no_longer_signs_in(app, alice):
    """Finding 5: a replayed pre-logout session cookie still worked."""
    kept = cookie(alice, "session")
    assert signed_in(app, session=kept)
    assert alice.logout().status_code == 302
    assert not signed_in(app, session=kept)


def test_a_remember_me_cookie_kept_from_before_logout_no_longer_signs_in(app, make_client):
    """Finding 5: a replayed remember_token still worked after logout."""
    client = make_client()
    client.register("alice")
    client.submit("/auth/login", {"username": "alice", "password": "secret", "remember_me": "y"})
    kept = cookie(client, "remember_token")
    assert signed_in(app, remember_token=kept)
    client.logout()
    assert not signed_in(app, remember_token=kept)


def test_logging_out_signs_out_the_other_sessions_of_that_user_only(app, alice, bob, make_client):
    other_tab = make_client()
    assert other_tab.login("alice").status_code == 302
    alice.logout()
    assert other_tab.get("/messages").status_code == 302  # to the login page
    assert bob.get("/messages").status_code == 200


def test_a_new_password_signs_out_earlier_cookies(app, alice):
    kept = cookie(alice, "session")
    with app.app_context():
        found = db.session.scalar(select(User).where(User.username == "alice"))
        assert found is not None
        found.set_password("a new one")
        db.session.commit()
    assert not signed_in(app, session=kept)
    assert FormClient(app.test_client()).login("alice", "a new one").headers["Location"] == "/index"


def set_cookie_header(answer, name: str) -> str:  # type: ignore[no-untyped-def]
    headers = [h for h in answer.headers.getlist("Set-Cookie") if h.startswith(f"{name}=")]
    assert headers, f"no Set-Cookie for {name}"
    return headers[-1]


def remember_me_login(app: Flask):  # type: ignore[no-untyped-def]
    client = FormClient(app.test_client())
    client.register("alice")
    return client.submit("/auth/login", {"username": "alice", "password": "secret", "remember_me": "y"})


@pytest.mark.parametrize("days, env", [(14, {}), (3, {"REMEMBER_COOKIE_DAYS": "3"})])
def test_remember_me_lasts_14_days_unless_configured(tmp_path, monkeypatch, days, env):
    """Finding 5: remember-me lasted 365 days."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    answer = remember_me_login(make_app(tmp_path))
    header = set_cookie_header(answer, "remember_token")
    expires = parsedate_to_datetime(re.search(r"Expires=([^;]+)", header).group(1))
    assert abs(expires - (datetime.now(UTC) + timedelta(days=days))) < timedelta(hours=1)


def test_session_and_remember_cookies_are_samesite_lax_and_httponly(tmp_path):
    """Finding 5: the cookies carried no SameSite."""
    answer = remember_me_login(make_app(tmp_path))
    for name in ("session", "remember_token"):
        header = set_cookie_header(answer, name)
        assert "SameSite=Lax" in header and "HttpOnly" in header, header
        assert "Secure" not in header  # plain http on loopback by default


def test_secure_and_samesite_are_set_from_the_environment(tmp_path, monkeypatch):
    """Finding 5: Secure and SameSite could not be set from the environment."""
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "1")
    monkeypatch.setenv("SESSION_COOKIE_SAMESITE", "strict")
    answer = remember_me_login(make_app(tmp_path))
    for name in ("session", "remember_token"):
        header = set_cookie_header(answer, name)
        assert "Secure" in header and "SameSite=Strict" in header, header


def test_samesite_none_without_secure_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="SESSION_COOKIE_SECURE"):
        make_app(tmp_path, SESSION_COOKIE_SAMESITE="None")


@pytest.mark.parametrize("path", ["/", "/auth/logout", "/send_message/bob", "/messages", "/notifications"])
def test_pages_forbid_framing_sniffing_and_foreign_scripts(alice, path):
    """Finding 5: no CSP, X-Frame-Options or nosniff; the send form could be framed."""
    answer = alice.get(path)
    assert answer.status_code == 200
    policy = answer.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/", "/auth/logout", "/send_message/bob", "/messages", "/user/bob"])
def test_pages_have_no_inline_script_or_style_the_policy_would_block(alice, path):
    html = alice.get(path).text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline <script>"
    assert not re.search(r"<style\b", html), "a <style> element"
    assert not re.search(r"\sstyle=", html), "a style= attribute"
    assert not re.search(r"\son[a-z]+=", html), "an on...= handler"


def test_a_body_over_max_content_length_is_413_and_not_echoed(app, alice):
    """Finding 5: a 5 MB message body was accepted and echoed."""
    page = alice.get("/send_message/bob")
    body = "x" * (5 * 1024 * 1024)
    answer = alice.client.post("/send_message/bob", data={"message": body, "csrf_token": csrf_of(page.text)})
    assert answer.status_code == 413
    assert len(answer.data) < 10_000
    assert app.config["MAX_CONTENT_LENGTH"] == 64 * 1024


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match
    return match.group(1)


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        {"SESSION_COOKIE_SECURE": "perhaps"},
        {"SESSION_COOKIE_SAMESITE": "sometimes"},
        {"REMEMBER_COOKIE_DAYS": "0"},
        {"MAX_CONTENT_LENGTH": "-1"},
        {"LONG_POLL_TIMEOUT": "nan"},
        {"MAX_WAITING_PER_USER": "-4"},
        {"PASSWORD_HASH_WORKERS": "0"},
    ],
)
def test_settings_out_of_range_name_themselves(env):
    with pytest.raises(ConfigError, match=next(iter(env))):
        config_from_env(env)


def test_yes_no_settings_read_the_usual_spellings():
    assert config_from_env({"SESSION_COOKIE_SECURE": "yes"})["SESSION_COOKIE_SECURE"] is True
    assert config_from_env({"SESSION_COOKIE_SECURE": "0"})["SESSION_COOKIE_SECURE"] is False
    assert config_from_env({})["SESSION_COOKIE_SECURE"] is False


def test_the_hasher_of_an_app_uses_its_method(app):
    assert app.extensions["password_hasher"].method == FAST_HASH
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0
