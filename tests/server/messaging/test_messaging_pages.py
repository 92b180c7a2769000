"""The lesson's pages through Flask's test client, with real CSRF tokens."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from messaging_helpers import csrf_token, user
from sqlalchemy import func, select

from server.messaging.extensions import db
from server.messaging.models import Message, Notification

# Every test here runs on SQLite and on PostgreSQL (see conftest.py).
pytestmark = pytest.mark.databases("sqlite", "postgresql")


def _count(app: Flask, model: type) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model)) or 0


def _badge(html: str) -> tuple[str, str]:
    """("visible" or "hidden", the count) of the navigation bar's badge."""
    match = re.search(r'id="message_count"\s+class="([^"]*)">(\d+)<', html)
    assert match, "the navigation bar has no message_count badge"
    return ("hidden" if "invisible" in match.group(1).split() else "visible"), match.group(2)


# -- register, login, logout ---------------------------------------------------


def test_register_then_login_then_logout(make_client):
    client = make_client()
    assert client.register("dora").headers["Location"] == "/auth/login"
    assert client.login("dora").status_code == 302
    assert "Hi, dora!" in client.get("/").text
    assert client.logout().status_code == 302
    assert "Hi, dora!" not in client.get("/").text


def test_a_get_of_logout_only_asks(make_client):
    """A link or an <img src=".../auth/logout"> on another site cannot sign you out."""
    client = make_client()
    client.register("erin")
    client.login("erin")
    page = client.get("/auth/logout")
    assert page.status_code == 200 and "Sign out" in page.text
    assert "Hi, erin!" in client.get("/").text  # still signed in


def test_a_logout_post_without_the_csrf_token_is_refused(make_client):
    client = make_client()
    client.register("fay")
    client.login("fay")
    assert client.client.post("/auth/logout").status_code == 400
    assert "Hi, fay!" in client.get("/").text


def test_the_navigation_bar_signs_out_with_a_post_form(make_client):
    client = make_client()
    client.register("gus")
    client.login("gus")
    nav = client.get("/").text
    form = re.search(r'<form method="post" action="/auth/logout"[^>]*>(.*?)</form>', nav, re.S)
    assert form, "no sign-out form in the navigation bar"
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.group(1))
    assert token and 'id="logout"' in form.group(1)
    answer = client.client.post("/auth/logout", data={"csrf_token": token.group(1)})
    assert answer.status_code == 302
    assert "Hi, gus!" not in client.get("/").text
    assert client.get("/auth/logout").headers["Location"] == "/index"  # signed out: nothing to ask


def test_register_rejects_a_taken_username(alice, make_client):
    page = make_client().register("alice")
    assert page.status_code == 200
    assert "That username is taken" in page.text


def test_login_with_a_wrong_password_is_refused(alice, make_client):
    client = make_client()
    client.login("bob", password="wrong")
    assert "Invalid username or password" in client.get("/auth/login").text
    assert client.get("/messages").status_code == 302  # still anonymous


def test_login_does_not_redirect_to_another_site(alice, make_client):
    client = make_client()
    page = client.client.get("/auth/login?next=https://evil.example/")

    answer = client.client.post(
        "/auth/login?next=https://evil.example/",
        data={"username": "bob", "password": "secret", "csrf_token": csrf_token(page.text)},
    )
    assert answer.headers["Location"] == "/index"


# -- profile and send_message --------------------------------------------------


def test_profile_links_to_send_message_except_on_your_own(alice):
    assert "/send_message/bob" in alice.get("/user/bob").text
    own = alice.get("/user/alice").text
    assert "/send_message/" not in own


def test_unknown_profile_is_404(alice):
    assert alice.get("/user/nobody").status_code == 404


def test_pages_need_a_login(make_client):
    client = make_client()
    for url in ("/user/alice", "/send_message/alice", "/messages"):
        answer = client.get(url)
        assert answer.status_code == 302, url
        assert answer.headers["Location"].startswith("/auth/login"), url


def test_sending_stores_the_message_flashes_and_redirects_to_the_profile(app, alice):
    answer = alice.send("bob", "hello bob")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/user/bob"
    assert "Your message has been sent." in alice.get("/user/bob").text
    with app.app_context():
        message = db.session.scalar(select(Message))
        assert (message.author.username, message.recipient.username, message.body) == (
            "alice",
            "bob",
            "hello bob",
        )


def test_posting_without_reading_pages_keeps_the_session_cookie_small(alice):
    """A script that reads the form once, then only posts: one notice waits, not one per message
    (each would be signed into the cookie on every request, and browsers refuse a cookie past 4 KB)."""
    token = csrf_token(alice.get("/send_message/bob").text)
    sizes = []
    for n in range(40):
        answer = alice.client.post("/send_message/bob", data={"message": f"message {n}", "csrf_token": token})
        assert answer.status_code == 302
        cookie = alice.client.get_cookie("session")
        assert cookie is not None
        sizes.append(len(cookie.value))
    assert sizes[-1] <= sizes[0] + 64, f"the session cookie grew from {sizes[0]} to {sizes[-1]} bytes"
    page = alice.get("/user/bob").text
    assert page.count("Your message has been sent.") == 1


def test_unknown_recipient_is_404(app, alice):
    assert alice.get("/send_message/nobody").status_code == 404
    token_page = alice.get("/send_message/bob")

    answer = alice.client.post(
        "/send_message/nobody", data={"message": "hi", "csrf_token": csrf_token(token_page.text)}
    )
    assert answer.status_code == 404
    assert _count(app, Message) == 0


def test_empty_message_is_rejected(app, alice):
    answer = alice.send("bob", "")
    assert answer.status_code == 200
    assert "This field is required" in answer.text
    assert _count(app, Message) == 0


def test_message_of_141_characters_is_rejected_and_140_accepted(app, alice):
    answer = alice.send("bob", "x" * 141)
    assert answer.status_code == 200
    assert "between 1 and 140 characters" in answer.text
    assert _count(app, Message) == 0
    assert alice.send("bob", "x" * 140).status_code == 302
    assert _count(app, Message) == 1


def test_sending_refreshes_the_recipients_unread_count_notification(app, alice, bob):
    alice.send("bob", "one")
    alice.send("bob", "two")
    notes = bob.get("/notifications").json
    assert [(n["name"], n["data"]) for n in notes] == [("unread_message_count", 2)]


# -- messages page, read-marking, pagination, badge ---------------------------------


def test_messages_page_marks_everything_read(app, alice, bob):
    alice.send("bob", "one")
    alice.send("bob", "two")
    assert _badge(bob.get("/").text) == ("visible", "2")
    page = bob.get("/messages")
    assert "one" in page.text and "two" in page.text
    assert _badge(page.text) == ("hidden", "0")
    assert [n["data"] for n in bob.get("/notifications").json] == [0]
    alice.send("bob", "three")
    assert _badge(bob.get("/").text) == ("visible", "1")
    with app.app_context():
        assert user(app, "bob").last_message_read_time.tzinfo is not None


@pytest.mark.parametrize("page", ["0", "-3", "99", "10000000000000000000000"])
def test_a_page_number_out_of_range_is_an_empty_or_first_page_not_an_error(alice, page):
    assert alice.get(f"/messages?page={page}").status_code == 200


def test_badge_is_always_in_the_page_and_hidden_at_zero(alice):
    assert _badge(alice.get("/").text) == ("hidden", "0")


def test_messages_are_paginated_newest_first_with_working_links(alice, bob):
    for i in range(7):
        alice.send("bob", f"message number {i}")
    first = bob.get("/messages").text
    bodies = re.findall(r"message number (\d)", first)
    assert bodies == ["6", "5", "4"]
    newer, older = (re.search(rf'id="{link}" href="([^"]+)"', first).group(1) for link in ("newer", "older"))
    assert newer == "#"
    second = bob.get(older).text
    assert re.findall(r"message number (\d)", second) == ["3", "2", "1"]
    back = re.search(r'id="newer" href="([^"]+)"', second).group(1)
    assert re.findall(r"message number (\d)", bob.get(back).text) == ["6", "5", "4"]
    last = bob.get(re.search(r'id="older" href="([^"]+)"', second).group(1)).text
    assert re.findall(r"message number (\d)", last) == ["0"]
    assert 'id="older" href="#"' in last


def test_a_user_sees_only_the_messages_sent_to_them(alice, bob, make_client):
    alice.send("bob", "for bob only")
    alice.send("carol", "for carol only")
    carol = make_client()
    carol.login("carol")
    page = carol.get("/messages").text
    assert "for carol only" in page
    assert "for bob only" not in page
    assert "for carol only" not in bob.get("/messages").text


def test_a_user_gets_only_their_own_notifications(alice, bob):
    alice.send("bob", "hi")
    assert alice.get("/notifications").json == []
    assert [n["data"] for n in bob.get("/notifications").json] == [1]


# -- security ---------------------------------------------------------------------


def test_post_without_csrf_token_is_rejected(app, alice):
    answer = alice.client.post("/send_message/bob", data={"message": "forged"})
    assert answer.status_code == 400
    assert "CSRF" in answer.text
    assert _count(app, Message) == 0


def test_login_without_csrf_token_is_rejected(alice, make_client):
    answer = make_client().client.post("/auth/login", data={"username": "bob", "password": "secret"})
    assert answer.status_code == 400


def test_message_body_is_shown_escaped(alice, bob):
    alice.send("bob", "<script>alert('x')</script>")
    page = bob.get("/messages").text
    assert "<script>alert(" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page


def test_pages_load_bootstrap_from_this_server_not_a_cdn(alice):
    page = alice.get("/").text
    assert "cdn.jsdelivr.net" not in page
    css = re.search(r'href="(/bootstrap/static/[^"]+\.css)"', page)
    assert css, "no local Bootstrap stylesheet in the page"
    assert alice.get(css.group(1)).status_code == 200


def test_transport_query_parameter_sticks_for_the_session(alice):
    assert 'data-transport="poll"' in alice.get("/").text
    assert 'data-transport="sse"' in alice.get("/?transport=sse").text
    assert 'data-transport="sse"' in alice.get("/messages").text
    assert 'data-transport="poll"' in alice.get("/?transport=default").text


def test_healthz_identifies_the_app(make_client):
    assert make_client().get("/healthz").json["server"] == "messaging"


def test_the_messaging_tables_exist_after_start(app):
    assert _count(app, Notification) == 0
