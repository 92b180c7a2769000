"""Exercises of lesson 03 (push or poll?)."""

from __future__ import annotations

from collections.abc import Callable

from course.checks import Exercise, Incorrect

__all__ = ["expected_requests"]

# (users, seconds, messages, interval): short runs (shorter than the long-poll
# timeout), nothing fails, each reader gets its messages one at a time.
_CASES = [
    (30, 6.0, 45, 1.0),
    (100, 60.0, 10, 5.0),
    (10, 10.0, 200, 0.5),
    (1, 20.0, 1, 2.0),
]


def _answer(transport: str, users: int, seconds: float, messages: int, interval: float) -> float:
    if transport == "poll":
        return users * seconds / interval  # every reader asks every interval, news or not
    if transport == "longpoll":
        return users + messages  # one waiting request each, and a new one after every answer
    if transport == "sse":
        return users  # one stream each, open for the whole run
    raise ValueError(f"unknown transport {transport!r}")


def _check(predict: Callable[[str, int, float, int, float], float]) -> None:
    hints = {
        "poll": "a poller asks every `interval` seconds whether or not anything happened: "
        "how many times does each of the `users` ask in `seconds`?",
        "longpoll": "each reader has one request waiting from the start, and asks again "
        "right after every answer (and an answer comes with each message).",
        "sse": "each reader opens one stream and keeps it for the whole run; messages "
        "travel on it without new requests.",
    }
    for transport in ("poll", "longpoll", "sse"):
        for users, seconds, messages, interval in _CASES:
            want = _answer(transport, users, seconds, messages, interval)
            got = predict(transport, users, seconds, messages, interval)
            Incorrect.unless(
                isinstance(got, (int, float)),
                f"expected_requests({transport!r}, ...) should return a number, got {got!r}",
            )
            # Polling may count the first request at time 0 (one more per user).
            slack = users if transport == "poll" else 0
            if not want - 0.01 <= got <= want + slack + 0.01:
                direction = "too many" if got > want else "too few"
                raise Incorrect(
                    f"{transport} with {users} users, {seconds:g} s, {messages} messages, "
                    f"interval {interval:g} s: {got:g} requests is {direction}. "
                    f"Think again: {hints[transport]}"
                )


def _per_message_poll(transport: str, users: int, seconds: float, messages: int, interval: float) -> float:
    # Mistake: polling costs a request per message, like the push transports.
    return {"poll": messages, "longpoll": users + messages, "sse": users}[transport]


def _long_poll_without_first_requests(
    transport: str, users: int, seconds: float, messages: int, interval: float
) -> float:
    # Mistake: forgets that every reader has a request waiting before any message.
    return {"poll": users * seconds / interval, "longpoll": messages, "sse": users}[transport]


def _stream_per_message(transport: str, users: int, seconds: float, messages: int, interval: float) -> float:
    # Mistake: treats SSE like long polling (a new request after every event).
    return {"poll": users * seconds / interval, "longpoll": users + messages, "sse": users + messages}[transport]


def _poll_forgets_users(transport: str, users: int, seconds: float, messages: int, interval: float) -> float:
    # Mistake: counts one reader's polls only.
    return {"poll": seconds / interval, "longpoll": users + messages, "sse": users}[transport]


expected_requests = Exercise(
    "expected_requests",
    checker=_check,
    hint_text=(
        "Count what each reader sends. A poller sends one request per `interval` "
        "for the whole run. A long poller has one request waiting from the start and "
        "sends a new one after each answer. An SSE reader opens one stream. Then "
        "multiply (or add) over the `users`."
    ),
    answer=_answer,
    wrong_answers=(
        _per_message_poll,
        _long_poll_without_first_requests,
        _stream_per_message,
        _poll_forgets_users,
    ),
    solution_code='''def expected_requests(transport, users, seconds, messages, interval):
    if transport == "poll":
        return users * seconds / interval   # asks every interval, news or not
    if transport == "longpoll":
        return users + messages             # one waiting each + one after every answer
    if transport == "sse":
        return users                        # one stream each, kept open
''',
    success="that is the cost model; now see how the measurement compares.",
)
