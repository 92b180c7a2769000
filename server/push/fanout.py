"""Fan-out: which open streams belong to which user, and what each is owed.

Each open stream is a ``Subscriber`` with a cursor (the last ``seq`` handed
to it). A wake-up for a user (a NOTIFY, a new stream, the periodic
re-check) starts at most one read of that user's notifications after the
smallest cursor among their streams; each stream then gets the rows past its
own cursor. Wake-ups that arrive while a read runs make it read once more,
so a notification committed during a read is never left behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from .store import Item, UserState

__all__ = ["Fanout", "Subscriber"]

log = logging.getLogger(__name__)


class Reader(Protocol):
    async def notifications_after(self, user_id: int, after: int) -> list[Item]: ...

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
        """Wait for items or a close; False if ``seconds`` passed first."""
        if self.pending or self.closing:
            return True
        try:
            await asyncio.wait_for(self.wakeup.wait(), seconds)
        except TimeoutError:
            return False
        return True

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
        self._reads: dict[int, asyncio.Task[None]] = {}
        self.reads = 0

    def subscribe(self, subscriber: Subscriber) -> None:
        """Hold ``subscriber`` and read what it is owed already (its catch-up)."""
        self._users.setdefault(subscriber.user_id, set()).add(subscriber)
        self.wake(subscriber.user_id)

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
        if user_id not in self._reads:
            self._reads[user_id] = asyncio.create_task(self._read(user_id), name=f"read-user-{user_id}")

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

    async def _read(self, user_id: int) -> None:
        try:
            while user_id in self._dirty:
                self._dirty.discard(user_id)
                held = self._users.get(user_id)
                if not held:
                    break
                after = min(subscriber.cursor for subscriber in held)
                try:
                    items = await self._reader.notifications_after(user_id, after)
                except (SQLAlchemyError, OSError) as exc:
                    # The periodic re-check finds the user behind and reads again.
                    log.warning("reading user %d's notifications failed: %s", user_id, exc)
                    break
                self.reads += 1
                for subscriber in list(self._users.get(user_id, ())):
                    subscriber.offer(items)
        finally:
            del self._reads[user_id]

    async def drain(self) -> None:
        """Wait for the reads running now (at shutdown)."""
        running = list(self._reads.values())
        if running:
            await asyncio.gather(*running, return_exceptions=True)
