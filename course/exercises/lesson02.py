"""Lesson 02 exercises: a client-side cursor that neither skips nor repeats
(``next_batch``, on recorded answers) and one poll of the live app with it
(``poll_once``, checked against the checkers' own messaging app)."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from course import notify
from course.checks import Exercise, Incorrect, Mistake
from course.exercises._messaging import CHECKER_PASSWORD, checker_messaging_app, fresh_names, register_all

__all__ = ["next_batch", "poll_once"]

Note = dict[str, Any]


def _n(id_: int, timestamp: float, data: Any = None, name: str = "unread_message_count") -> Note:
    return {"id": id_, "name": name, "data": id_ if data is None else data, "timestamp": timestamp}


# (what a poll answered, the cursor before it, the ids that must be delivered, the cursor after)
_CASES: tuple[tuple[str, list[Note], int, list[int], int], ...] = (
    ("a first poll", [_n(1, 100.0), _n(2, 101.0)], 0, [1, 2], 2),
    ("an answer that repeats the last one delivered", [_n(2, 101.0), _n(3, 102.0)], 2, [3], 3),
    ("two notifications with the same timestamp", [_n(4, 103.0), _n(5, 103.0)], 3, [4, 5], 5),
    ("a late commit with an older timestamp", [_n(6, 104.0), _n(7, 99.5)], 5, [6, 7], 7),
    ("an empty answer", [], 7, [], 7),
    ("an answer listed out of id order", [_n(9, 106.0), _n(8, 105.0)], 7, [8, 9], 9),
    ("an answer holding only old notifications", [_n(6, 104.0), _n(7, 99.5)], 9, [], 9),
)


def _check(next_batch: object) -> None:
    Incorrect.unless(
        callable(next_batch),
        "Answer with a function: def next_batch(notifications, cursor) -> (fresh, cursor)",
    )
    for label, answer, cursor, want_ids, want_cursor in _CASES:
        result = next_batch([dict(n) for n in answer], cursor)  # type: ignore[operator]
        Incorrect.unless(
            isinstance(result, tuple) and len(result) == 2,
            f"for {label}, return a pair (fresh_notifications, new_cursor), not {result!r}",
        )
        fresh, new_cursor = result
        got_ids = [n["id"] for n in fresh]
        Incorrect.unless(
            got_ids == want_ids,
            f"for {label} (cursor {cursor}, ids {[n['id'] for n in answer]}), deliver ids "
            f"{want_ids} in that order, not {got_ids}",
        )
        Incorrect.unless(
            new_cursor == want_cursor,
            f"for {label}, the next cursor should be {want_cursor}, not {new_cursor!r}",
        )


def _reference(notifications: list[Note], cursor: int) -> tuple[list[Note], int]:
    fresh = sorted((n for n in notifications if n["id"] > cursor), key=lambda n: n["id"])
    return fresh, (fresh[-1]["id"] if fresh else cursor)


def _repeats_the_last(notifications: list[Note], cursor: int) -> tuple[list[Note], int]:
    fresh = sorted((n for n in notifications if n["id"] >= cursor), key=lambda n: n["id"])
    return fresh, max([cursor, *(n["id"] for n in fresh)])


def _forgets_the_cursor_on_empty(notifications: list[Note], cursor: int) -> tuple[list[Note], int]:
    fresh = sorted((n for n in notifications if n["id"] > cursor), key=lambda n: n["id"])
    return fresh, max((n["id"] for n in fresh), default=0)


def _orders_by_timestamp(notifications: list[Note], cursor: int) -> tuple[list[Note], int]:
    fresh = sorted((n for n in notifications if n["id"] > cursor), key=lambda n: n["timestamp"])
    return fresh, (fresh[-1]["id"] if fresh else cursor)


def _trusts_the_answer(notifications: list[Note], cursor: int) -> tuple[list[Note], int]:
    return list(notifications), (notifications[-1]["id"] if notifications else cursor)


def _last_listed_not_highest(notifications: list[Note], cursor: int) -> tuple[list[Note], int]:
    fresh = [n for n in notifications if n["id"] > cursor]
    return sorted(fresh, key=lambda n: n["id"]), (fresh[-1]["id"] if fresh else cursor)


next_batch = Exercise(
    "next_batch",
    checker=_check,
    hint_text=(
        "Ignore the timestamps entirely. Keep the notifications whose `id` is greater "
        "than the cursor, sort them by `id`, and move the cursor to the highest `id` you "
        "kept -- or leave it where it was if you kept nothing."
    ),
    answer=_reference,
    wrong_answers=(
        Mistake(_repeats_the_last, "deliver ids [3] in that order, not [2, 3]"),
        Mistake(_forgets_the_cursor_on_empty, "for an empty answer, the next cursor should be 7, not 0"),
        Mistake(_orders_by_timestamp, "deliver ids [6, 7] in that order, not [7, 6]"),
        Mistake(_trusts_the_answer, "not [2, 3]"),
        Mistake(_last_listed_not_highest, "the next cursor should be 9, not 8"),
    ),
    solution_code=(
        "def next_batch(notifications, cursor):\n"
        '    fresh = sorted((n for n in notifications if n["id"] > cursor), key=lambda n: n["id"])\n'
        '    return fresh, (fresh[-1]["id"] if fresh else cursor)\n'
    ),
    success="an id cursor cannot skip or repeat, whatever the clocks do.",
)


# -- poll_once: one poll of the live app ---------------------------------------------------------


def _id_of(note: Any) -> Any:
    return note["id"] if isinstance(note, dict) else getattr(note, "id", note)


async def _check_poll_once(poll_once: Any) -> None:
    Incorrect.unless(
        callable(poll_once),
        "Answer with an async function: async def poll_once(session, base_url, cursor) -> (notifications, cursor)",
    )
    app = checker_messaging_app()
    (reader,) = fresh_names("reader")
    await register_all(app, [reader])
    stamp = float(int(time.time()))
    # (what the checker writes before the poll, what the poll must deliver)
    steps: list[tuple[list[tuple[str, str, float]], str]] = [
        (
            [("unread_message_count", "1", stamp), ("greeting", '"hello"', stamp)],
            "two notifications with the same timestamp",
        ),
        ([], "nothing new"),
        (
            [("unread_message_count", "2", stamp), ("mention", '"see you"', stamp - 5.0)],
            "a new count with the same timestamp again, and a notification stamped 5 s in the past",
        ),
        ([], "nothing new"),
    ]
    delivered: dict[int, int] = {}  # id -> the poll that delivered it
    cursor: Any = 0
    async with notify.client_session() as session:
        await notify.login(session, app.url, reader, CHECKER_PASSWORD)
        for number, (writes, situation) in enumerate(steps, start=1):
            written = [app.add_notification(reader, name, data, at) for name, data, at in writes]
            result = await poll_once(session, app.url, cursor)
            Incorrect.unless(
                isinstance(result, tuple) and len(result) == 2,
                f"poll {number} returned {result!r}: return a pair (notifications, new_cursor)",
            )
            notes, new_cursor = result
            ids = [_id_of(note) for note in notes]
            for id_ in ids:
                if id_ in delivered:
                    raise Incorrect(
                        f"notification {id_} was delivered twice: by poll {delivered[id_]} and again by "
                        f"poll {number} ({situation}; your cursor before it: {cursor!r})"
                    )
                delivered[id_] = number
            missing = [id_ for id_ in written if id_ not in delivered]
            if missing:
                raise Incorrect(
                    f"poll {number} ({situation}): notification(s) {missing} were never delivered "
                    f"(it delivered {ids}, with the cursor {cursor!r}). Timestamps can be equal or out of "
                    "order: follow the ids"
                )
            try:
                went_back = new_cursor < cursor
            except TypeError:
                raise Incorrect(f"poll {number} returned the cursor {new_cursor!r}: return a number") from None
            Incorrect.unless(
                not went_back,
                f"after poll {number} ({situation}) the cursor went back from {cursor!r} to {new_cursor!r}: "
                "a cursor only ever grows",
            )
            cursor = new_cursor
    async with notify.client_session() as signed_out:
        try:
            result = await poll_once(signed_out, app.url, cursor)
        except Exception:  # it said so: right
            return
    raise Incorrect(
        f"with a session that is not logged in, the server answered 401 and your function returned "
        f"{result!r}, as if nothing were new. Raise an exception instead (e.g. notify.NotLoggedIn): the "
        "caller has to log in again, and would otherwise poll in vain forever."
    )


async def _poll_once(session: aiohttp.ClientSession, base_url: str, cursor: int) -> tuple[list[dict[str, Any]], int]:
    """One poll of ``/notifications?after=cursor``: the new notifications and the next cursor."""
    url = f"{base_url}/notifications"
    async with session.get(url, params={"after": str(cursor)}, allow_redirects=False) as reply:
        if reply.status != 200:  # 401: logged out; anything else: not a list to trust
            raise RuntimeError(f"GET {url} answered {reply.status}")
        answer: list[dict[str, Any]] = await reply.json()
    news = [note for note in answer if note["id"] > cursor]
    highest = max((note["id"] for note in news), default=cursor)
    return sorted(news, key=lambda note: note["id"]), highest


async def _by_timestamp(session: aiohttp.ClientSession, base_url: str, cursor: float) -> tuple[list[Any], float]:
    # Mistake: the source lesson's cursor, the newest timestamp seen, asked for with since=.
    async with session.get(f"{base_url}/notifications?since={cursor!r}") as reply:
        reply.raise_for_status()
        notes = await reply.json()
    return notes, (notes[-1]["timestamp"] if notes else cursor)


async def _resets_on_empty(session: aiohttp.ClientSession, base_url: str, cursor: int) -> tuple[list[Any], int]:
    # Mistake: the cursor is the last id of *this* answer, so an empty answer resets it to 0.
    async with session.get(f"{base_url}/notifications?after={cursor}") as reply:
        reply.raise_for_status()
        notes = await reply.json()
    return notes, (notes[-1]["id"] if notes else 0)


async def _swallows_401(session: aiohttp.ClientSession, base_url: str, cursor: int) -> tuple[list[Any], int]:
    # Mistake: treats any failure as "nothing new".
    async with session.get(f"{base_url}/notifications?after={cursor}") as reply:
        if reply.status != 200:
            return [], cursor
        notes = await reply.json()
    return notes, max((n["id"] for n in notes), default=cursor)


poll_once = Exercise(
    "poll_once",
    checker=_check_poll_once,
    hint_text=(
        "GET `/notifications?after=<cursor>` with the session, without following redirects. "
        "Anything but 200 is an error to raise (401 means: log in again). Keep the notifications "
        "whose `id` is above the cursor, in `id` order, and return the highest `id` as the new "
        "cursor, or the old cursor when nothing came."
    ),
    answer=_poll_once,
    wrong_answers=(
        Mistake(_by_timestamp, "were never delivered"),
        Mistake(_resets_on_empty, "the cursor went back from 2 to 0"),
        Mistake(_swallows_401, "the server answered 401 and your function returned ([], 4)"),
    ),
    success="every notification exactly once, whatever the timestamps said.",
)
