"""course.lesson03_delivery against a live messaging app: what lesson 03 measures."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from course import notify
from course.lesson03_delivery import Reader, TransportRun, close_all, measure, sign_in
from course.servers import ServerHandle

PASSWORD = "pw"
READERS = 4
_numbers = itertools.count()


@pytest.fixture(scope="module")
def app(start_messaging) -> Iterator[ServerHandle]:  # type: ignore[no-untyped-def]
    handle = start_messaging("lesson03-app", LONG_POLL_TIMEOUT="20", MESSAGING_THREADS="32")
    yield handle
    handle.stop()


async def _new_accounts(app: ServerHandle, count: int) -> list[str]:
    names = [f"reader{next(_numbers)}" for _ in range(count)]
    async with notify.client_session() as session:
        for name in names:
            await notify.register(session, app.url, name, PASSWORD)
    return names


@pytest.fixture
async def group(app: ServerHandle) -> AsyncIterator[tuple[list[Reader], notify.aiohttp.ClientSession]]:
    """READERS signed-in readers with no messages yet, and a signed-in sender."""
    *names, sender_name = await _new_accounts(app, READERS + 1)
    readers = await sign_in(app.url, names, PASSWORD)
    sender = notify.client_session()
    await notify.login(sender, app.url, sender_name, PASSWORD)
    yield readers, sender
    await close_all(readers)
    await sender.close()


OPTIONS = {"poll": {"interval": 0.5}, "longpoll": {}, "sse": {}}


@pytest.mark.parametrize("transport", ["poll", "longpoll", "sse"])
async def test_every_message_is_delivered_once_with_a_delay(app, group, transport):
    readers, sender = group
    run = await measure(app.url, transport, readers, sender, messages=2 * READERS, rate=20, **OPTIONS[transport])
    assert run.sent == run.delivered == 2 * READERS
    assert run.errors == 0
    assert all(0 <= delay < 30 for delay in run.delays)
    assert [r.unread for r in readers] == [2] * READERS
    assert all(r.cursor == 2 for r in readers)  # one notification per message, none skipped


async def test_push_transports_cost_what_the_model_says(app, group):
    readers, sender = group
    # One message per reader: long polling asks once per reader, then once per delivery.
    longpoll = await measure(app.url, "longpoll", readers, sender, messages=READERS, rate=20)
    assert longpoll.requests == READERS + READERS
    sse = await measure(app.url, "sse", readers, sender, messages=READERS, rate=20)
    assert sse.requests == READERS  # one stream each, kept open


async def test_polling_asks_even_when_nothing_happens(app, group):
    readers, sender = group
    run = await measure(app.url, "poll", readers, sender, messages=0, rate=1, settle=3.0, interval=0.5)
    assert run.delivered == 0
    assert run.requests >= 2 * READERS  # at least a first and a second poll each
    assert run.requests_per_delivery == float("inf")


async def test_a_reader_without_a_session_makes_the_run_fail_fast(app, group):
    readers, sender = group
    stranger = Reader(readers[0].name, notify.client_session())  # never logged in
    try:
        with pytest.raises(notify.NotLoggedIn):
            await measure(app.url, "longpoll", [stranger], sender, messages=1, rate=1, drain_timeout=60)
    finally:
        await stranger.session.close()


async def test_runs_follow_each_other_without_counting_old_notifications(app, group):
    readers, sender = group
    first = await measure(app.url, "sse", readers, sender, messages=READERS, rate=20)
    second = await measure(app.url, "longpoll", readers, sender, messages=READERS, rate=20)
    assert first.delivered == second.delivered == READERS
    assert second.requests == 2 * READERS  # old notifications did not answer the first long polls


def test_summary_reports_milliseconds_and_ratios():
    run = TransportRun("sse", users=2, sent=3, delays=(0.010, 0.020, 0.030), requests=3, errors=0, seconds=3.0)
    row = run.summary()
    assert row["median ms"] == 20 and row["max ms"] == 30 and row["p95 ms"] == 30
    assert row["requests/delivery"] == 1.0
    # Nearest rank, as in every lesson: the median of two delays is the first, one that occurred.
    pair = TransportRun("sse", users=2, sent=2, delays=(0.010, 0.030), requests=2, errors=0, seconds=3.0)
    assert pair.median_delay == 0.010 and pair.delay_quantile(0.95) == 0.030
