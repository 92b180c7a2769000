"""Lesson 09 (the capstone): exercises.

- ``poll_requests``: a model of what polling costs the server;
- ``pending_reported``: matching one notification with the messages it reports;
- ``send_all``: the capstone's writer pool (a throttled queue, one worker per
  signed-in writer), run against a messaging app of the checker's own and
  judged from the app's database: every message stored once, by every
  writer, no faster than the rate.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import aiohttp

from course import notify
from course.checks import Exercise, Incorrect, Mistake
from course.exercises._messaging import CHECKER_PASSWORD, checker_messaging_app, fresh_names, register_all
from course.queues import ThrottledQueue

__all__ = ["pending_reported", "poll_requests", "send_all"]

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
        # one reader only
        Mistake(lambda readers, seconds, interval: seconds / interval, "returned 10, expected about 640"),
        # upside down
        Mistake(lambda readers, seconds, interval: readers * interval / seconds, "returned 6.4, expected about 640"),
        # ignores the interval
        Mistake(lambda readers, seconds, interval: readers * seconds, "poll_requests(100, 60.0, 10.0) returned 6000"),
        # one request per reader, as with SSE
        Mistake(lambda readers, seconds, interval: readers, "returned 64, expected about 640"),
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
        # exact match only: a count that jumped past a message misses it
        Mistake(
            lambda pending, count, now: [now - s for e, s in pending if e == count], "expected [1.0, 0.8]"
        ),
        # the first one only
        Mistake(
            lambda pending, count, now: [now - s for e, s in pending[:1] if e <= count], "expected [1.0, 0.8]"
        ),
        # everything pending, reported or not
        Mistake(lambda pending, count, now: [now - s for e, s in pending], "expected [0.3]"),
        # the sign flipped
        Mistake(lambda pending, count, now: [s - now for e, s in pending if e <= count], "expected [0.5]"),
    ),
    solution_code=(
        "def pending_reported(pending, count, now):\n"
        "    # the message that took the count to `expected` is covered by any count >= expected\n"
        "    return [now - sent_at for expected, sent_at in pending if expected <= count]\n"
    ),
    success="a count covers every message that brought it there, so polling may report several at once.",
)


# -- send_all: the writers' pool, against a messaging app of the checker's own ------------------

_WRITERS, _READERS = 4, 2  # user1..user4 write, user5 and user6 read
_MESSAGES, _RATE = 12, 10.0  # 12 messages at 10 a second: 1.1 s from the first to the last


async def _send_all(
    sessions: Sequence[aiohttp.ClientSession], base_url: str, messages: Sequence[tuple[str, str]], rate: float
) -> int:
    """Send each ``(recipient, body)`` through the form: one worker per signed-in session,
    at most ``rate`` messages a second in all. Returns how many were sent."""
    jobs: ThrottledQueue[tuple[str, str] | None] = ThrottledQueue(rate)
    for message in messages:
        jobs.put_nowait(message)
    for _ in sessions:
        jobs.put_nowait(None)  # one end marker per worker

    async def writer(session: aiohttp.ClientSession) -> int:
        done = 0
        while (job := await jobs.get()) is not None:
            recipient, body = job
            await notify.send_message(session, base_url, recipient, body)
            done += 1
        return done

    async with asyncio.TaskGroup() as group:
        workers = [group.create_task(writer(session)) for session in sessions]
    return sum(worker.result() for worker in workers)


def _stored(database: Any, prefix: str) -> list[tuple[str, str, str, datetime]]:
    """(body, sender, recipient, stored at) of every message whose body starts with ``prefix``."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as connection:
        rows = connection.execute(
            "SELECT m.body, s.username, r.username, m.timestamp FROM message m "
            "JOIN user s ON s.id = m.sender_id JOIN user r ON r.id = m.recipient_id "
            "WHERE m.body LIKE ? ORDER BY m.timestamp",
            (prefix + "%",),
        ).fetchall()
    return [(body, sender, recipient, datetime.fromisoformat(at)) for body, sender, recipient, at in rows]


async def _check_send_all(answer: Any) -> None:
    app = checker_messaging_app()
    names = fresh_names(*(f"writer{k}n" for k in range(_WRITERS)), *(f"reader{k}n" for k in range(_READERS)))
    await register_all(app, names)
    writers, readers = names[:_WRITERS], names[_WRITERS:]
    prefix = f"check {uuid.uuid4().hex[:8]} message"
    messages = [(readers[k % len(readers)], f"{prefix} {k + 1}") for k in range(_MESSAGES)]
    sessions = await notify.sign_in_all(app.url, writers, CHECKER_PASSWORD)
    try:
        sent = await answer(list(sessions), app.url, list(messages), _RATE)
    finally:
        await asyncio.gather(*(session.close() for session in sessions))
    stored = _stored(app.database, prefix)
    copies = Counter(body for body, _, _, _ in stored)
    missing = [body for _, body in messages if copies[body] == 0]
    Incorrect.unless(
        not missing,
        f"{len(missing)} of the {_MESSAGES} messages never reached the app "
        f"(the first: {missing[0] if missing else ''!r}).",
    )
    doubled = [(body, n) for body, n in copies.items() if n > 1]
    Incorrect.unless(
        not doubled,
        "the app stored {!r} {} times: send each message once, from one writer.".format(*(doubled or [("", 0)])[0]),
    )
    wrong = [(body, to) for body, _, to, _ in stored if dict((b, r) for r, b in messages)[body] != to]
    Incorrect.unless(not wrong, f"{wrong[0] if wrong else ''} went to the wrong reader: keep each message's recipient.")
    senders = sorted({sender for _, sender, _, _ in stored})
    Incorrect.unless(
        len(senders) == _WRITERS,
        f"only {len(senders)} of the {_WRITERS} writers sent messages ({', '.join(senders)}): "
        "start one worker per signed-in session, all taking from the same queue.",
    )
    span = (stored[-1][3] - stored[0][3]).total_seconds()
    least = (_MESSAGES - 1) / _RATE
    Incorrect.unless(
        span >= 0.75 * least,
        f"your {_MESSAGES} messages were stored within {span:.2f} s; at {_RATE:g} a second they need at "
        f"least {least:.1f} s. Space them with one ThrottledQueue(rate) (or one RateLimiter) for all the writers.",
    )
    Incorrect.unless(
        sent == _MESSAGES, f"your function returned {sent!r}; return how many messages were sent ({_MESSAGES})."
    )


async def _send_all_at_once(sessions: Sequence[Any], base_url: str, messages: Sequence[Any], rate: float) -> int:
    await asyncio.gather(
        *(notify.send_message(sessions[k % len(sessions)], base_url, to, body) for k, (to, body) in enumerate(messages))
    )
    return len(messages)


async def _one_writer(sessions: Sequence[Any], base_url: str, messages: Sequence[Any], rate: float) -> int:
    return await _send_all(sessions[:1], base_url, messages, rate)


async def _every_writer_sends_everything(
    sessions: Sequence[Any], base_url: str, messages: Sequence[Any], rate: float
) -> int:
    sent = await asyncio.gather(*(_send_all([session], base_url, messages, rate) for session in sessions))
    return sum(sent)


async def _each_worker_paced_alone(sessions: Sequence[Any], base_url: str, messages: Sequence[Any], rate: float) -> int:
    jobs: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for message in messages:
        jobs.put_nowait(message)

    async def writer(session: Any) -> None:
        while not jobs.empty():
            recipient, body = jobs.get_nowait()
            await notify.send_message(session, base_url, recipient, body)
            await asyncio.sleep(1 / rate)  # each worker keeps to the rate: together, four times it

    await asyncio.gather(*(writer(session) for session in sessions))
    return len(messages)


send_all = Exercise(
    "send_all",
    checker=_check_send_all,
    hint_text=(
        "Put every (recipient, body) in one `ThrottledQueue(rate)`, then one end marker (`None`) per "
        "session. Each worker loops: `job = await queue.get()`, stop at `None`, else "
        "`await notify.send_message(session, base_url, recipient, body)`. Run one worker per session "
        "in an `asyncio.TaskGroup` and add up what they sent."
    ),
    answer=_send_all,
    wrong_answers=(
        Mistake(_send_all_at_once, "were stored within"),
        Mistake(_one_writer, "only 1 of the 4 writers"),
        Mistake(_every_writer_sends_everything, "times: send each message once"),
        Mistake(_each_worker_paced_alone, "were stored within"),
    ),
    solution_code=(
        "async def send_all(sessions, base_url, messages, rate):\n"
        "    queue = ThrottledQueue(rate)      # the one place where the rate is kept\n"
        "    for message in messages:\n"
        "        queue.put_nowait(message)\n"
        "    for _ in sessions:\n"
        "        queue.put_nowait(None)        # an end marker for each writer\n\n"
        "    async def write(session):\n"
        "        count = 0\n"
        "        while True:\n"
        "            job = await queue.get()\n"
        "            if job is None:\n"
        "                return count\n"
        "            await notify.send_message(session, base_url, *job)\n"
        "            count += 1\n\n"
        "    async with asyncio.TaskGroup() as group:\n"
        "        tasks = [group.create_task(write(s)) for s in sessions]\n"
        "    return sum(task.result() for task in tasks)\n"
    ),
    success="one queue sets the pace, the workers share it: the rate holds however many writers there are.",
    timeout=30.0,
)
