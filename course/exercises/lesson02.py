"""Lesson 02 exercise: a client-side cursor that neither skips nor repeats."""

from __future__ import annotations

from typing import Any

from course.checks import Exercise, Incorrect

__all__ = ["next_batch"]

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
        _repeats_the_last,
        _forgets_the_cursor_on_empty,
        _orders_by_timestamp,
        _trusts_the_answer,
        _last_listed_not_highest,
    ),
    solution_code=(
        "def next_batch(notifications, cursor):\n"
        '    fresh = sorted((n for n in notifications if n["id"] > cursor), key=lambda n: n["id"])\n'
        '    return fresh, (fresh[-1]["id"] if fresh else cursor)\n'
    ),
    success="an id cursor cannot skip or repeat, whatever the clocks do.",
)
