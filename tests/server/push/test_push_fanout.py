"""The fan-out's bookkeeping without a server: which new streams need a read.

The reader here is a list in memory standing in for the database, so that
the order of a NOTIFY and a stream's start can be chosen exactly (over real
sockets it is a race the test could not steer).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping

from server.push.fanout import Fanout, Subscriber
from server.push.store import Item, UserState, Wakeup, parse_wakeup


class Rows:
    """Notifications by user, and how many reads were asked for."""

    def __init__(self) -> None:
        self.rows: dict[int, list[Item]] = {}
        self.reads = 0

    def add(self, user_id: int, seq: int) -> None:
        record = {"id": seq, "name": "n", "data": seq, "timestamp": 0.0}
        self.rows.setdefault(user_id, []).append(Item(seq, record, json.dumps(record)))

    async def owed(self, cursors: Mapping[int, int]) -> dict[int, list[Item]]:
        self.reads += 1
        found = {user: [row for row in self.rows.get(user, []) if row.seq > after] for user, after in cursors.items()}
        return {user: rows for user, rows in found.items() if rows}

    async def user_states(self, user_ids: Iterable[int]) -> dict[int, UserState]:
        return {}


async def settled() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_stream_at_the_newest_cursor_is_not_read_for():
    rows = Rows()
    rows.add(7, 1)
    fanout = Fanout(rows)
    fanout.subscribe(Subscriber(7, 1, "sse"), newest=1)
    await settled()
    assert rows.reads == 0


async def test_a_stream_behind_the_newest_cursor_is_read_for_and_gets_the_rows():
    rows = Rows()
    rows.add(7, 1)
    fanout = Fanout(rows)
    behind = Subscriber(7, 0, "sse")
    fanout.subscribe(behind, newest=1)
    await settled()
    assert rows.reads == 1 and [item.seq for item in behind.take()] == [1]


async def test_a_notify_heard_while_the_stream_was_starting_is_not_lost():
    # The session was read at cursor 1; a message committed (seq 2) and its NOTIFY
    # arrived before the stream subscribed: the stream must still be read for.
    rows = Rows()
    rows.add(7, 1)
    fanout = Fanout(rows)
    rows.add(7, 2)
    fanout.heard(Wakeup(7, 2))  # nobody of user 7 subscribed yet: nothing to read now
    await settled()
    assert rows.reads == 0
    starting = Subscriber(7, 1, "ws")
    fanout.subscribe(starting, newest=1)
    await settled()
    assert [item.seq for item in starting.take()] == [2]


def test_wakeup_payloads_name_the_user_and_the_cursor():
    assert parse_wakeup('{"user": 3, "seq": 9}') == Wakeup(3, 9)
    assert parse_wakeup('{"user": 3}') == Wakeup(3, 0)
    assert parse_wakeup('{"user": 3, "seq": true}') == Wakeup(3, 0)
    for bad in ('{"user": true, "seq": 1}', '{"seq": 1}', "[3]", "not json", '{"user": "3"}'):
        assert parse_wakeup(bad) is None
