"""Lesson 09 (the capstone): exercises."""

from __future__ import annotations

import math

from course.checks import Exercise, Incorrect

__all__ = ["pending_reported", "poll_requests"]

# -- poll_requests: what polling costs the server --------------------------------------

# (readers, seconds, interval)
_POLL_CASES = [(64, 10.0, 1.0), (100, 60.0, 10.0), (10, 5.0, 0.5), (1, 30.0, 2.0), (500, 3600.0, 30.0)]


def _poll_requests(readers: int, seconds: float, interval: float) -> float:
    """About how many requests ``readers`` polling clients send in ``seconds``."""
    # each reader asks once per interval, whether or not anything is new
    return readers * seconds / interval


def _check_poll_requests(answer) -> None:
    for readers, seconds, interval in _POLL_CASES:
        expected = readers * seconds / interval
        got = answer(readers, seconds, interval)
        Incorrect.unless(
            isinstance(got, (int, float)) and math.isfinite(got),
            f"poll_requests({readers}, {seconds}, {interval}) returned {got!r}; return a number of requests.",
        )
        # Counting the first request of each reader (+1 each) is fine too.
        Incorrect.unless(
            abs(got - expected) <= max(readers, 0.01 * expected),
            f"poll_requests({readers}, {seconds}, {interval}) returned {got:g}, expected about "
            f"{expected:g}. How many times does ONE reader ask in that time, and how many readers are there?",
        )


poll_requests = Exercise(
    "poll_requests",
    checker=_check_poll_requests,
    hint_text=(
        "A polling reader asks once every `interval` seconds, news or not. "
        "Count one reader's requests in `seconds`, then multiply."
    ),
    answer=_poll_requests,
    wrong_answers=(
        lambda readers, seconds, interval: seconds / interval,  # one reader only
        lambda readers, seconds, interval: readers * interval / seconds,  # upside down
        lambda readers, seconds, interval: readers * seconds,  # ignores the interval
        lambda readers, seconds, interval: readers,  # one request per reader, as with SSE
    ),
    solution_code=(
        "def poll_requests(readers, seconds, interval):\n"
        "    # every reader asks once per interval, whether or not anything is new\n"
        "    return readers * seconds / interval\n"
    ),
    success="polling costs readers / interval requests every second, news or not.",
)


# -- pending_reported: one notification, several messages ----------------------------------

# (pending (count after that message, sent at), notification's count, now) -> delays
_PENDING_CASES = [
    ([(4, 10.0)], 4, 10.5, [0.5]),
    ([(4, 10.0), (5, 10.2)], 5, 11.0, [1.0, 0.8]),  # one poll answer reports both
    ([(4, 10.0), (5, 10.2)], 4, 10.3, [0.3]),  # the second is not reported yet
    ([(7, 3.0)], 6, 3.5, []),  # an older count: reports nothing
    ([], 9, 1.0, []),
    ([(2, 0.0), (3, 1.0), (4, 2.0)], 9, 2.5, [2.5, 1.5, 0.5]),  # a count can jump past ours
]


def _pending_reported(pending: list[tuple[int, float]], count: int, now: float) -> list[float]:
    """Delays of the pending messages (oldest first) that a notification of ``count`` reports."""
    # the message that took the count to `expected` is reported by any count >= expected
    return [now - sent_at for expected, sent_at in pending if expected <= count]


def _check_pending_reported(answer) -> None:
    for pending, count, now, expected in _PENDING_CASES:
        got = answer(list(pending), count, now)
        Incorrect.unless(
            isinstance(got, list),
            f"pending_reported({pending}, {count}, {now}) returned {got!r}; return a list of delays.",
        )
        ok = len(got) == len(expected) and all(
            math.isclose(a, b, abs_tol=1e-9) for a, b in zip(got, expected, strict=True)
        )
        Incorrect.unless(
            ok,
            f"pending_reported({pending}, {count}, {now}) returned {got}, expected {expected}. "
            "Which messages does an unread count of that size cover, and how long ago was each sent?",
        )


pending_reported = Exercise(
    "pending_reported",
    checker=_check_pending_reported,
    hint_text=(
        "The count only grows. The message that made it `expected` is covered by every "
        "notification whose count is at least `expected`, so one notification may cover several "
        "messages (and none that came later). Each delay is `now - sent_at`."
    ),
    answer=_pending_reported,
    wrong_answers=(
        lambda pending, count, now: [now - s for e, s in pending if e == count],  # exact match only
        lambda pending, count, now: [now - s for e, s in pending[:1] if e <= count],  # first one only
        lambda pending, count, now: [now - s for e, s in pending],  # everything pending
        lambda pending, count, now: [s - now for e, s in pending if e <= count],  # sign flipped
    ),
    solution_code=(
        "def pending_reported(pending, count, now):\n"
        "    # the message that took the count to `expected` is covered by any count >= expected\n"
        "    return [now - sent_at for expected, sent_at in pending if expected <= count]\n"
    ),
    success="a count covers every message that brought it there, so polling may report several at once.",
)
