"""course.lesson10_push: the stack lesson 10 starts, against real processes on a throwaway PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest

from course import notify
from course.lesson10_push import (
    PushStack,
    StreamFleet,
    open_flask_streams,
    sse_ids,
    start_push_stack,
    stored_notes,
    write_notes,
    write_notifications,
)


@pytest.fixture(scope="module")
def stack() -> Iterator[PushStack]:
    started = start_push_stack(
        NOTIFY_RECHECK_SECONDS="30",  # only a NOTIFY can wake a waiting stream in these tests
        threaded_threads=12,
        threaded_config={"NOTIFY_LISTEN": "0"},
        gateway_args=("--recheck", "3600"),  # and the gateway's only way to hear of a write is its NOTIFY
    )
    yield started
    started.stop()


def test_the_threaded_app_seats_its_threads_minus_the_reserve_and_refuses_the_rest(stack: PushStack) -> None:
    async def run() -> tuple[int, dict[int, int], str | None]:
        streams = await open_flask_streams(stack.threaded.url, stack.add_users(10))
        try:
            return len(streams.held), streams.refused, streams.retry_after
        finally:
            await streams.close()

    held, refused, retry_after = asyncio.run(run())
    assert (held, refused) == (8, {503: 2})  # 12 threads, 4 kept for pages
    assert retry_after is not None and int(retry_after) > 0


def test_the_fleet_holds_both_transports_and_every_stream_gets_its_users_notification(stack: PushStack) -> None:
    users = stack.add_users(5)

    async def run() -> tuple[int, dict[str, int], int, int, int]:
        fleet = StreamFleet(stack.gateway.url, users)
        try:
            held = await fleet.grow(12)
            await asyncio.sleep(0.3)
            kinds = fleet.by_transport()
            targets = [user.user_id for user in users]
            expected = sum(fleet.streams_of(user_id) for user_id in targets)
            await write_notifications(stack.database_url, targets, rate=50, seconds=0.1)
            arrived = await fleet.wait_for(expected, quiet=10.0)
            return held, kinds, expected, arrived, sum(fleet.refused.values())
        finally:
            await fleet.close()

    held, kinds, expected, arrived, refused = asyncio.run(run())
    assert (held, refused) == (12, 0)
    assert kinds == {"sse": 6, "ws": 6}
    assert expected == 12 and arrived == 12


def test_written_notes_are_kept_apart_and_read_back_in_order(stack: PushStack) -> None:
    (user,) = stack.add_users(1)

    async def run() -> tuple[list[int], list[dict[str, object]], list[dict[str, object]]]:
        cursors = await write_notes(stack.database_url, user.user_id, 4)
        return (
            cursors,
            await stored_notes(stack.database_url, user.user_id),
            await stored_notes(stack.database_url, user.user_id, after=2),
        )

    cursors, everything, later = asyncio.run(run())
    assert cursors == [1, 2, 3, 4]
    assert [note["id"] for note in everything] == [1, 2, 3, 4]
    assert [note["name"] for note in everything] == ["note_1", "note_2", "note_3", "note_4"]
    assert [note["id"] for note in later] == [3, 4]


def test_a_note_reaches_a_gateway_stream_through_notify(stack: PushStack) -> None:
    (user,) = stack.add_users(1)

    async def run() -> tuple[int, int]:
        async with aiohttp.ClientSession(headers=user.headers) as session:
            await write_notes(stack.database_url, user.user_id, 1)
            async with sse_ids(session, f"{stack.gateway.url}/stream") as next_id:
                first = await asyncio.wait_for(next_id(), 30.0)  # a guard, not a timing assertion
                await write_notes(stack.database_url, user.user_id, 1)
                # The gateway re-checks once an hour: only the NOTIFY can bring it (30 s: a guard).
                second = await asyncio.wait_for(next_id(), 30.0)
        return first, second

    assert asyncio.run(run()) == (1, 2)


def test_a_message_through_the_app_reaches_the_threaded_app_only_at_its_recheck(stack: PushStack) -> None:
    async def run() -> bool:
        alice, bob = notify.client_session(), notify.client_session()
        try:
            for session, name in [(alice, "alice10"), (bob, "bob10")]:
                await notify.register(session, stack.app.url, name, "a long password")
                await notify.login(session, stack.app.url, name, "a long password")
            await notify.send_message(alice, stack.app.url, "bob10", "one")
            async with sse_ids(bob, f"{stack.threaded.url}/notifications/stream") as next_id:
                await asyncio.wait_for(next_id(), 30.0)  # what bob had: the stream works
                await notify.send_message(alice, stack.app.url, "bob10", "two")
                try:
                    await asyncio.wait_for(next_id(), 3.0)
                except TimeoutError:
                    return False  # not woken: NOTIFY_LISTEN=0 and the re-check is 30 s away
                return True
        finally:
            await alice.close()
            await bob.close()

    assert asyncio.run(run()) is False


def test_restart_gateway_comes_back_on_the_same_port(stack: PushStack) -> None:
    port = stack.gateway.port
    stack.restart_gateway(workers=1)
    assert stack.gateway.port == port and stack.gateway.running
    assert len(stack.gateway_health()) == 1
