"""Lesson 01 exercises: the send form's rule for a message body, as a function
(``message_rule``), and sending a message through the real forms from async code
(``send_note``, checked against the checkers' own messaging app)."""

from __future__ import annotations

import re

import aiohttp

from course.checks import Exercise, Incorrect, Mistake
from course.exercises._messaging import CHECKER_PASSWORD, checker_messaging_app, fresh_names, register_all

__all__ = ["RULE_CASES", "message_rule", "send_note"]

#: (body, does the send form accept it?) -- checked against the real form in
#: notebook 01, so these cases cannot drift from the app.
RULE_CASES: tuple[tuple[str, bool], ...] = (
    ("", False),
    ("   ", False),
    ("\t\n", False),
    ("hi", True),
    ("x" * 140, True),
    ("x" * 141, False),
    ("é" * 140, True),
    ("  hello  ", True),
    (" " * 139 + "x", True),
    ("x" + " " * 140, False),
    ("x" * 500, False),
)


def _describe(body: str) -> str:
    if len(body) > 12:
        return f"a body of {len(body)} characters ({body[:3]!r}...)"
    return repr(body)


def _check_rule(accepts: object) -> None:
    Incorrect.unless(callable(accepts), "Answer with a function: def accepts(body: str) -> bool")
    for body, expected in RULE_CASES:
        got = accepts(body)  # type: ignore[operator]
        Incorrect.unless(
            isinstance(got, bool),
            f"accepts({_describe(body)}) returned {got!r}; return True or False",
        )
        if got != expected:
            verdict = "accepts" if expected else "refuses"
            raise Incorrect(
                f"the form {verdict} {_describe(body)}, but your function returned {got}. "
                "Look again at the two validators of MessageForm.message."
            )


def _reference(body: str) -> bool:
    """DataRequired: something other than whitespace; Length: at most 140 characters as typed."""
    return bool(body.strip()) and len(body) <= 140


message_rule = Exercise(
    "message_rule",
    checker=_check_rule,
    hint_text=(
        "Two validators, two conditions. `DataRequired` refuses a body that is empty "
        "*after* stripping whitespace; `Length(max=140)` counts the characters as they "
        "were typed, spaces included."
    ),
    answer=_reference,
    wrong_answers=(
        Mistake(lambda body: len(body) <= 140, "the form refuses '', but your function returned True"),
        Mistake(lambda body: bool(body) and len(body) <= 140, "the form refuses '   '"),
        Mistake(  # measures the stripped body
            lambda body: 0 < len(body.strip()) <= 140, "the form refuses a body of 141 characters ('x  '"
        ),
        Mistake(  # refuses exactly 140
            lambda body: bool(body.strip()) and len(body) < 140, "the form accepts a body of 140 characters ('xxx'"
        ),
        Mistake(  # counts bytes, not characters
            lambda body: bool(body.strip()) and len(body.encode()) <= 140,
            "the form accepts a body of 140 characters ('ééé'",
        ),
    ),
    solution_code=(
        "def accepts(body: str) -> bool:\n"
        "    # DataRequired: not empty once whitespace is stripped\n"
        "    # Length(max=140): at most 140 characters, counted as typed\n"
        "    return bool(body.strip()) and len(body) <= 140\n"
    ),
    success="that is exactly the send form's rule.",
)


# -- send_note: log in and send through the real forms -----------------------------------------

_NOTE = "Lunch at noon? ✓ (sent by the checker)"
_TOO_LONG = "y" * 141


async def _check_send_note(send_note: object) -> None:
    Incorrect.unless(
        callable(send_note),
        "Answer with an async function: async def send_note(base_url, username, password, recipient, body)",
    )
    app = checker_messaging_app()
    writer, reader = fresh_names("writer", "reader")
    await register_all(app, [writer, reader])
    call = f"send_note(url, {writer!r}, password, {reader!r}, ...)"

    await send_note(app.url, writer, CHECKER_PASSWORD, reader, _NOTE)  # type: ignore[operator]
    stored = app.messages(writer, reader)
    if not stored:
        raise Incorrect(
            f"after {call} returned, the server had stored no message from {writer} to {reader}. "
            "Did the login stick (aiohttp's default cookie jar drops the cookies of an address such as "
            "127.0.0.1: use aiohttp.CookieJar(unsafe=True)), and did each POST carry the csrf_token "
            "of the form you fetched?"
        )
    Incorrect.unless(
        stored == [_NOTE],
        f"the server stored {len(stored)} message(s) from {writer} to {reader}: {stored!r}; "
        f"expected exactly one, {_NOTE!r}",
    )

    try:
        await send_note(app.url, writer, CHECKER_PASSWORD, reader, _TOO_LONG)  # type: ignore[operator]
    except Exception:  # refused, and said so: right
        pass
    else:
        raise Incorrect(
            "your function returned normally for a body of 141 characters, but the app refused it: "
            "it answered 200 with the form again and its error, and stored nothing. A refused form "
            "is not an HTTP error, so raise_for_status() does not see it; a send that worked answers "
            "302 (a redirect to the recipient's profile)."
        )
    Incorrect.unless(
        app.messages(writer, reader) == [_NOTE],
        f"a body of 141 characters was stored for {reader}; the form should have refused it",
    )


_TOKEN = re.compile(r'name="csrf_token"[^>]*\svalue="([^"]+)"')


async def _send_note(base_url: str, username: str, password: str, recipient: str, body: str) -> None:
    """Log in through the login form, then send ``body`` through the send form."""
    cookies = aiohttp.CookieJar(unsafe=True)  # keep the session cookie of 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=cookies) as session:

        async def post_form(path: str, fields: dict[str, str]) -> tuple[int, str]:
            async with session.get(base_url + path) as form_page:
                found = re.search(r'name="csrf_token"[^>]*\svalue="([^"]+)"', await form_page.text())
            if found is None:
                raise RuntimeError(f"no form with a CSRF token at {path} (status {form_page.status})")
            fields = {**fields, "csrf_token": found.group(1)}
            async with session.post(base_url + path, data=fields, allow_redirects=False) as reply:
                return reply.status, reply.headers.get("Location", "")

        status, goes_to = await post_form("/auth/login", {"username": username, "password": password})
        if status != 302 or goes_to.endswith("/auth/login"):
            raise RuntimeError(f"login of {username!r} refused (status {status})")
        status, _ = await post_form(f"/send_message/{recipient}", {"message": body})
        if status != 302:  # 200: the form came back with an error under the text area
            raise RuntimeError(f"message to {recipient!r} refused (status {status})")


async def _forgets_the_token(base_url: str, username: str, password: str, recipient: str, body: str) -> None:
    # Mistake: posts the fields without the form's CSRF token (the app answers 400).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await session.post(f"{base_url}/auth/login", data={"username": username, "password": password})
        await session.post(f"{base_url}/send_message/{recipient}", data={"message": body})


async def _default_cookie_jar(base_url: str, username: str, password: str, recipient: str, body: str) -> None:
    # Mistake: a plain ClientSession drops the cookies of 127.0.0.1, so the token never matches a session.
    async with aiohttp.ClientSession() as session:
        for path, fields in [
            ("/auth/login", {"username": username, "password": password}),
            (f"/send_message/{recipient}", {"message": body}),
        ]:
            async with session.get(base_url + path) as page:
                token = _TOKEN.search(await page.text())
            await session.post(base_url + path, data={**fields, "csrf_token": token.group(1) if token else ""})


async def _trusts_the_status(base_url: str, username: str, password: str, recipient: str, body: str) -> None:
    # Mistake: follows the redirects and trusts raise_for_status(); a refused form answers 200.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        for path, fields in [
            ("/auth/login", {"username": username, "password": password}),
            (f"/send_message/{recipient}", {"message": body}),
        ]:
            async with session.get(base_url + path) as page:
                token = _TOKEN.search(await page.text())
            async with session.post(
                base_url + path, data={**fields, "csrf_token": token.group(1) if token else ""}
            ) as reply:
                reply.raise_for_status()


send_note = Exercise(
    "send_note",
    checker=_check_send_note,
    hint_text=(
        "One session for both forms, with `aiohttp.CookieJar(unsafe=True)` so that it keeps the "
        "session cookie of 127.0.0.1. For each form: GET the page, find the hidden `csrf_token` "
        "input's value with a regular expression, POST the fields plus that token with "
        "`allow_redirects=False`. Success is a 302; a 200 means the form came back with an error."
    ),
    answer=_send_note,
    wrong_answers=(
        Mistake(_forgets_the_token, "the server had stored no message"),
        Mistake(_default_cookie_jar, "the server had stored no message"),
        Mistake(_trusts_the_status, "returned normally for a body of 141 characters"),
    ),
    success="the server stored your message, and a refused one raised.",
)
