"""Fan-out: which open streams belong to which user, and what each is owed.

Each open stream is a ``Subscriber`` with a cursor (the last ``seq`` handed
to it). A wake-up for a user (a NOTIFY, a new stream that is owed something,
the periodic re-check) marks the user; one reading task reads, in one query,
every marked user's notifications after the smallest cursor among that
user's streams, shared by all of them; each stream then gets the rows past
its own cursor (their JSON text is made once, by the read). Users woken
while a read runs are read by the next one, so a notification committed
during a read is never left behind, and a burst of wake-ups (or a gateway
that fell behind) costs a few larger reads rather than a queue of small ones.

A new stream whose cursor is already at the user's newest (read with its
session, or heard in a NOTIFY since) costs no read: most streams of a busy
gateway start that way, and ten thousand catch-up reads at once would queue
every live delivery behind them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import psycopg
from sqlalchemy.exc import SQLAlchemyError

from .store import Item, UserState, Wakeup

__all__ = ["Fanout", "Subscriber"]

log = logging.getLogger(__name__)


#: The most users one read asks about.
READ_BATCH = 1000


class Reader(Protocol):
    async def owed(self, cursors: Mapping[int, int]) -> dict[int, list[Item]]: ...

    async def user_states(self, user_ids: Iterable[int]) -> dict[int, UserState]: ...


@dataclass(eq=False)
class Subscriber:
    """One open stream of one user."""

    user_id: int
    cursor: int
    transport: str  # "sse" or "ws"
    #: The session token its cookie carried: a stream ends when the user signs out.
    session_token: str = ""
    pending: list[Item] = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set when the gateway shuts down: tell the client to reconnect, then end.
    closing: bool = False
    #: Set when its session was signed out (or its user deleted): end it, no reconnect hint.
    signed_out: bool = False

    def offer(self, items: Iterable[Item]) -> None:
        """Queue the items past this stream's cursor, and wake its handler."""
        newer = [entry for entry in items if entry.seq > self.cursor]
        if newer:
            self.pending.extend(newer)
            self.cursor = newer[-1].seq
            self.wakeup.set()

    def take(self) -> list[Item]:
        """The queued items, oldest first (the queue is then empty)."""
        self.wakeup.clear()
        taken, self.pending = self.pending, []
        return taken

    async def wait(self, seconds: float) -> bool:
        """Wait for items or a close; False if ``seconds`` passed first.

        A timer sets the event (rather than ``asyncio.wait_for``, which makes
        and cancels a task per wait: with thousands of streams whose
        heartbeats come due, that is much of a busy gateway's time)."""
        if self.pending or self.closing:
            return True
        timer = asyncio.get_running_loop().call_later(seconds, self.wakeup.set)
        try:
            await self.wakeup.wait()
        finally:
            timer.cancel()
        return bool(self.pending or self.closing)

    def close(self) -> None:
        self.closing = True
        self.wakeup.set()

    def revoke(self) -> None:
        self.signed_out = True
        self.close()


class Fanout:
    """user id -> that user's open streams, and the reads that feed them."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self._users: dict[int, set[Subscriber]] = {}
        self._dirty: set[int] = set()
        self._reading: asyncio.Task[None] | None = None
        #: The newest cursor a NOTIFY named, per user (since the last re-check, for users with no stream).
        self._heard: dict[int, int] = {}
        self.reads = 0

    def subscribe(self, subscriber: Subscriber, newest: int | None = None) -> None:
        """Hold ``subscriber`` and read what it is owed already (its catch-up), if anything:
        ``newest`` is the user's newest cursor read before (None: unknown, read)."""
        self._users.setdefault(subscriber.user_id, set()).add(subscriber)
        known = max(newest, self._heard.get(subscriber.user_id, 0)) if newest is not None else None
        if known is None or known > subscriber.cursor:
            self.wake(subscriber.user_id)

    def heard(self, wakeup: Wakeup) -> None:
        """A NOTIFY: remember its cursor (a stream may be starting), wake the user's streams."""
        if wakeup.seq > self._heard.get(wakeup.user, 0):
            self._heard[wakeup.user] = wakeup.seq
        self.wake(wakeup.user)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        held = self._users.get(subscriber.user_id)
        if held is None:
            return
        held.discard(subscriber)
        if not held:
            del self._users[subscriber.user_id]

    def connections(self) -> int:
        return sum(len(held) for held in self._users.values())

    def users(self) -> int:
        return len(self._users)

    def by_transport(self) -> dict[str, int]:
        counts = {"sse": 0, "ws": 0}
        for held in self._users.values():
            for subscriber in held:
                counts[subscriber.transport] = counts.get(subscriber.transport, 0) + 1
        return counts

    def wake(self, user_id: int) -> None:
        """Something may be new for ``user_id``: read it (once, however many wake-ups)."""
        if user_id not in self._users:
            return
        self._dirty.add(user_id)
        if self._reading is None:
            self._reading = asyncio.create_task(self._read(), name="read-owed")

    def wake_all(self) -> None:
        for user_id in list(self._users):
            self.wake(user_id)

    def close_all(self) -> None:
        """Tell every open stream to have its client reconnect."""
        for held in self._users.values():
            for subscriber in held:
                subscriber.close()

    async def recheck(self) -> None:
        """Wake the users whose newest cursor is past one of their streams' (a missed NOTIFY);
        end the streams whose session was signed out since they opened."""
        # What was heard for users with no stream matters only to streams starting now;
        # one that starts past this point and misses it is found by the next re-check.
        self._heard = {user: seq for user, seq in self._heard.items() if user in self._users}
        if not self._users:
            return
        asked = list(self._users)
        try:
            states = await self._reader.user_states(asked)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("periodic re-check failed (%s); trying again later", exc)
            return
        for user_id in asked:
            state = states.get(user_id)
            held = [s for s in self._users.get(user_id, ()) if not s.signed_out]
            for subscriber in held:
                if state is None or subscriber.session_token != state.session_token:
                    subscriber.revoke()
            if state is not None and held and state.counter > min(s.cursor for s in held):
                self.wake(user_id)

    async def recheck_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self.recheck()

    async def _read(self) -> None:
        """Read for the marked users, a batch at a time, until none is left."""
        try:
            while self._dirty:
                batch = [user for user in self._dirty if user in self._users][:READ_BATCH]
                self._dirty.difference_update(batch)
                self._dirty.intersection_update(self._users)  # users whose streams all ended
                cursors = {user: min(s.cursor for s in self._users[user]) for user in batch}
                try:
                    found = await self._reader.owed(cursors)
                except (SQLAlchemyError, psycopg.Error, OSError) as exc:
                    # The periodic re-check finds these users behind and reads again.
                    log.warning("reading %d users' notifications failed: %s", len(batch), exc)
                    break
                self.reads += 1
                for user, items in found.items():
                    for subscriber in list(self._users.get(user, ())):
                        subscriber.offer(items)
        finally:
            self._reading = None

    async def drain(self) -> None:
        """Wait for the read running now (at shutdown)."""
        if self._reading is not None:
            await asyncio.gather(self._reading, return_exceptions=True)
