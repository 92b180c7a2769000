"""Lesson 03: how long a notification takes to arrive, and what it costs the server.

One sender sends messages at a steady rate, round-robin to a group of
readers who each follow their notifications with one transport of
:mod:`course.notify`. A message counts as *delivered* when its reader's
``unread_message_count`` reaches the count the message made; its *delay* runs
from the moment the sender started sending it to that arrival
(``course.delivery``: the measurement lesson 09 and the benchmark use too).

    readers = await sign_in(app.url, ["user1", "user2"], "password")
    run = await measure(app.url, "sse", readers, sender, messages=20, rate=10)
    run.median_delay, run.requests_per_delivery

The request count is every notification request the readers made during
the run, connection set-up included: what the server had to answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from course import notify
from course.delivery import DelayFigures, Deliveries

__all__ = ["Reader", "TransportRun", "close_all", "measure", "sign_in"]


@dataclass
class Reader:
    """A simulated user: a signed-in session and what it has seen so far."""

    name: str
    session: aiohttp.ClientSession
    cursor: int = 0  # newest notification id delivered to this reader
    unread: int = 0  # messages sent to this reader so far (nobody reads them)


@dataclass(frozen=True)
class TransportRun(DelayFigures):
    """What one transport did for one group of readers (``delivered``, ``median``, ``p95``: ``DelayFigures``)."""

    transport: notify.Transport
    users: int
    sent: int
    delays: tuple[float, ...]  # seconds, one per delivered message, in arrival order
    requests: int  # notification requests the readers made (connections, for SSE)
    errors: int  # failed requests the clients retried
    seconds: float  # how long the readers were following

    @property
    def median_delay(self) -> float:
        return self.median

    @property
    def requests_per_delivery(self) -> float:
        return self.requests / self.delivered if self.delivered else float("inf")

    def summary(self) -> dict[str, Any]:
        """One row for a table (delays in milliseconds)."""
        return {
            "transport": self.transport,
            "users": self.users,
            "sent": self.sent,
            "delivered": self.delivered,
            "median ms": round(1000 * self.median),
            "p95 ms": round(1000 * self.p95),
            "max ms": round(1000 * max(self.delays, default=float("nan"))),
            "requests": self.requests,
            "requests/delivery": round(self.requests_per_delivery, 2),
            "errors": self.errors,
        }


async def sign_in(base_url: str, names: list[str], password: str) -> list[Reader]:
    """A logged-in session per name (the accounts must exist)."""
    sessions = await notify.sign_in_all(base_url, names, password)
    return [Reader(name, session) for name, session in zip(names, sessions, strict=True)]


async def close_all(readers: list[Reader]) -> None:
    """Close every reader's session."""
    for reader in readers:
        await reader.session.close()


async def measure(
    base_url: str,
    transport: notify.Transport,
    readers: list[Reader],
    sender: aiohttp.ClientSession,
    *,
    messages: int,
    rate: float,
    settle: float = 1.0,
    drain_timeout: float = 30.0,
    **options: Any,
) -> TransportRun:
    """Let every reader follow with ``transport``, send ``messages`` messages at
    ``rate`` per second (round-robin over the readers), wait until all have
    arrived (at most ``drain_timeout`` s), then stop the readers.

    ``settle`` seconds pass before the first send, so that waiting transports
    are waiting. ``options`` go to the transport (e.g. ``interval=1.0`` for poll).
    Readers keep their cursor and unread count, so runs can follow each other.
    """
    deliveries = Deliveries({r.name: r.unread for r in readers})

    def on_notification(reader: Reader) -> Callable[[notify.Notification], None]:
        return lambda note: deliveries.seen(reader.name, note)

    counters = [notify.Counters(cursor=r.cursor) for r in readers]
    started = time.monotonic()
    tasks = [
        asyncio.create_task(
            notify.follow(r.session, base_url, on_notification(r), transport, counters=c, **options)
        )
        for r, c in zip(readers, counters, strict=True)
    ]
    waiter = asyncio.create_task(deliveries.all_seen.wait())
    try:
        await asyncio.sleep(settle)
        first_send = time.monotonic()
        for i in range(messages):
            await asyncio.sleep(max(0.0, first_send + i / rate - time.monotonic()))
            reader = readers[i % len(readers)]
            reader.unread += 1
            deliveries.sending(reader.name)
            await notify.send_message(sender, base_url, reader.name, f"message {i} by {transport}")
        deliveries.sends_over()
        # Until everything arrived, or time is up (reported as fewer deliveries
        # than messages), or a reader stopped (readers only stop by failing).
        await asyncio.wait([waiter, *tasks], timeout=drain_timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in [waiter, *tasks]:
            task.cancel()
        outcomes = await asyncio.gather(waiter, *tasks, return_exceptions=True)
    failures = [o for o in outcomes[1:] if isinstance(o, Exception)]
    if failures:  # e.g. NotLoggedIn: the run means nothing, say why
        raise failures[0]
    seconds = time.monotonic() - started
    for reader, counter in zip(readers, counters, strict=True):
        reader.cursor = counter.cursor
    return TransportRun(
        transport=transport,
        users=len(readers),
        sent=messages,
        delays=tuple(deliveries.delays),
        requests=sum(c.requests for c in counters),
        errors=sum(c.errors for c in counters),
        seconds=seconds,
    )
