"""The capstone's load test: simulated users of the messaging app, driven by the client framework.

Two kinds of simulated users, each with a session of its own (logged in
through the app's login form, as a browser would be):

- **readers** follow their notifications with ``course.notify`` -- poll,
  long poll or SSE -- exactly as the page script does in a browser tab;
- **writers** send messages through the app's real form
  (``course.notify.send_message``). They are Lesson B's fixed pool of worker
  coroutines reading one ``ThrottledQueue`` (``course.queues``): the queue
  sets the sending rate, the number of writers bounds how many sends are in
  flight, and every send is counted in a ``Stats`` (``course.stats``).

Each run sends the readers messages round-robin, so two messages to the same
reader are far apart in time. A message counts as *delivered* when its
reader is told of an ``unread_message_count`` at least as high as the count
that message produced (one notification may report several messages):
``Deliveries`` (``course.delivery``, the measurement lesson 03 uses too)
matches them.

    >>> crowd = await Crowd.sign_in(app.url, readers, writers, password)
    >>> run = await crowd.run(LoadPlan("sse", rate=20, seconds=8))
    >>> run.p95, run.requests_per_notification
    >>> await crowd.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import psutil

from course import notify
from course.delivery import DelayFigures, Deliveries
from course.queues import ThrottledQueue
from course.stats import Stats, StatsSnapshot

__all__ = ["SEND_ERRORS", "Best", "Crowd", "Deliveries", "LoadPlan", "SimUser", "TransportRun"]

#: What a failed send may raise; the run counts it instead of stopping.
SEND_ERRORS: tuple[type[BaseException], ...] = (notify.NotifyError, aiohttp.ClientError, asyncio.TimeoutError)


#: What the capstone's readers may use: the Flask app's own transports (no gateway here).
CAPSTONE_TRANSPORTS = ("poll", "longpoll", "sse")


@dataclass(frozen=True)
class LoadPlan:
    """One run: which transport the readers use, and how the writers send."""

    transport: notify.Transport
    rate: float = 20.0  # messages per second, all writers together
    seconds: float = 8.0  # of sending
    poll_interval: float = 1.0  # for transport="poll"
    warm_up: float = 1.0  # readers connect this long before the first send
    drain: float = 15.0  # longest wait for the last notifications after the last send

    @property
    def messages(self) -> int:
        return round(self.rate * self.seconds)

    def follow_options(self) -> dict[str, Any]:
        """What ``notify.follow`` gets for this transport."""
        if self.transport not in CAPSTONE_TRANSPORTS:
            raise ValueError(
                f"the capstone's readers follow the Flask app with one of {list(CAPSTONE_TRANSPORTS)}, "
                f"not {self.transport!r} (a websocket needs lesson 10's push gateway)"
            )
        return {"interval": self.poll_interval} if self.transport == "poll" else {}


@dataclass(frozen=True)
class TransportRun(DelayFigures):
    """What one run measured (``delivered``, ``median``, ``p95``: ``course.delivery.DelayFigures``)."""

    transport: notify.Transport
    readers: int
    writers: int
    sent: int  # messages the app accepted
    send_failures: int
    delays: tuple[float, ...]  # seconds from the start of a send to its notification, sorted
    requests: int  # HTTP requests the readers made (connections, for SSE)
    notifications: int  # notifications the readers received
    reader_errors: int  # failed reader requests (retried by course.notify)
    send_rate: float  # messages per second the writers achieved
    send_stats: StatsSnapshot
    server_cpu: float | None  # seconds of the server's CPU during the run, if known
    followed_for: float  # seconds the readers were following
    send_starts: tuple[float, ...] = ()  # when each send started, seconds after the first

    @property
    def requests_per_notification(self) -> float:
        """Requests the readers made per notification they received."""
        return self.requests / self.notifications if self.notifications else math.inf

    def row(self) -> dict[str, Any]:
        """The run as one table row (for pandas)."""
        return {
            "transport": self.transport,
            "sent": self.sent,
            "delivered": self.delivered,
            "median delay (ms)": round(self.median * 1e3),
            "p95 delay (ms)": round(self.p95 * 1e3),
            "reader requests": self.requests,
            "notifications": self.notifications,
            "requests / notification": round(self.requests_per_notification, 2),
            "server CPU (s)": None if self.server_cpu is None else round(self.server_cpu, 2),
        }


@dataclass(frozen=True)
class Best:
    """One transport's cost figures, each the lowest over repeated runs.

    A run on a shared machine is disturbed from outside (another process, a
    virtual machine's neighbour): a stall of a second moves the p95 of a
    five-second run and adds CPU time. Delays only ever grow when that
    happens, and so does the CPU time of the same work, so the best of a few
    runs is the closest to what the transport itself costs (the way
    ``timeit`` reports the best repeat). A stalled client also polls a
    little less, which the minimum may pick up: that only narrows polling's
    lead in requests and CPU, so a check that polling costs more still
    means what it says.
    """

    transport: str
    runs: tuple[TransportRun, ...]

    @classmethod
    def of(cls, runs: Iterable[TransportRun]) -> Best:
        runs = tuple(runs)
        transports = {run.transport for run in runs}
        if len(transports) != 1:
            raise ValueError(f"Best.of takes runs of one transport, got {sorted(transports) or 'none'}")
        return cls(transports.pop(), runs)

    @property
    def median(self) -> float:
        return min(run.median for run in self.runs)

    @property
    def p95(self) -> float:
        return min(run.p95 for run in self.runs)

    @property
    def server_cpu(self) -> float | None:
        known = [run.server_cpu for run in self.runs if run.server_cpu is not None]
        return min(known) if known else None

    @property
    def requests_per_notification(self) -> float:
        return min(run.requests_per_notification for run in self.runs)

    @property
    def steadiest(self) -> TransportRun:
        """The run with the lowest p95 delay (the one to plot)."""
        return min(self.runs, key=lambda run: run.p95)

    def row(self) -> dict[str, Any]:
        """The best figures as one table row (for pandas)."""
        return {
            "transport": self.transport,
            "runs": len(self.runs),
            "median delay (ms)": round(self.median * 1e3),
            "p95 delay (ms)": round(self.p95 * 1e3),
            "requests / notification": round(self.requests_per_notification, 2),
            "server CPU (s)": None if self.server_cpu is None else round(self.server_cpu, 2),
        }


@dataclass
class SimUser:
    """A simulated user: a name and a logged-in ``aiohttp`` session."""

    name: str
    session: aiohttp.ClientSession


class Crowd:
    """Readers and writers signed in to one messaging app; ``run`` measures a transport."""

    def __init__(self, base_url: str, readers: Sequence[SimUser], writers: Sequence[SimUser]) -> None:
        if not readers or not writers:
            raise ValueError("a Crowd needs at least one reader and one writer")
        self.base_url = base_url.rstrip("/")
        self.readers = list(readers)
        self.writers = list(writers)

    @classmethod
    async def sign_in(
        cls, base_url: str, readers: Sequence[str], writers: Sequence[str], password: str
    ) -> Crowd:
        """Log every user in through the login form, each in a session of its own."""
        names = [*readers, *writers]
        sessions = await notify.sign_in_all(base_url, names, password)
        users = [SimUser(name, session) for name, session in zip(names, sessions, strict=True)]
        return cls(base_url, users[: len(readers)], users[len(readers) :])

    async def close(self) -> None:
        await asyncio.gather(*(u.session.close() for u in [*self.readers, *self.writers]))

    async def __aenter__(self) -> Crowd:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def run(self, plan: LoadPlan, *, server_pid: int | None = None) -> TransportRun:
        """Readers follow with ``plan.transport`` while the writers send ``plan.messages``."""
        options = plan.follow_options()
        cursors, unread = await self._positions()
        deliveries = Deliveries(unread)
        counters = {u.name: notify.Counters() for u in self.readers}
        server = psutil.Process(server_pid) if server_pid is not None else None
        cpu_before = _cpu(server)

        def callback_for(name: str) -> Callable[[notify.Notification], None]:
            return lambda note: deliveries.seen(name, note)

        began = time.monotonic()
        followers = [
            asyncio.create_task(
                notify.follow(
                    u.session,
                    self.base_url,
                    callback_for(u.name),
                    plan.transport,
                    after=cursors[u.name],
                    counters=counters[u.name],
                    **options,
                ),
                name=f"reader {u.name}",
            )
            for u in self.readers
        ]
        stats = Stats()
        try:
            await asyncio.sleep(plan.warm_up)
            failures = await self._send_all(plan, deliveries, stats)
            deliveries.sends_over()
            with contextlib.suppress(TimeoutError):  # the run reports what arrived
                await asyncio.wait_for(deliveries.all_seen.wait(), timeout=plan.drain)
        finally:
            for task in followers:
                task.cancel()
            ended = await asyncio.gather(*followers, return_exceptions=True)
            followed_for = time.monotonic() - began
        crashed = [e for e in ended if isinstance(e, Exception)]
        if crashed:
            raise RuntimeError(f"{len(crashed)} reader(s) stopped early; the first: {crashed[0]!r}") from crashed[0]
        cpu_after = _cpu(server)
        times = deliveries.send_times
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        return TransportRun(
            transport=plan.transport,
            readers=len(self.readers),
            writers=len(self.writers),
            sent=plan.messages - failures,
            send_failures=failures,
            delays=tuple(sorted(deliveries.delays)),
            requests=sum(c.requests for c in counters.values()),
            notifications=sum(c.delivered for c in counters.values()),
            reader_errors=sum(c.errors for c in counters.values()),
            send_rate=(len(times) - 1) / span if span > 0 else math.nan,
            send_stats=stats.snapshot(),
            server_cpu=None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
            followed_for=followed_for,
            send_starts=tuple(t - times[0] for t in times),
        )

    async def _positions(self) -> tuple[dict[str, int], dict[str, int]]:
        """Each reader's newest notification id and unread count, before the run."""

        async def position(user: SimUser) -> tuple[int, int]:
            async with user.session.get(f"{self.base_url}/notifications?after=0") as response:
                if response.status != 200:
                    raise notify.NotifyError(f"{user.name}: /notifications answered {response.status}")
                items = await response.json()
            cursor = max((item["id"] for item in items), default=0)
            counts = [item["data"] for item in items if item["name"] == "unread_message_count"]
            return cursor, (counts[-1] if counts else 0)

        found = await asyncio.gather(*(position(u) for u in self.readers))
        names = [u.name for u in self.readers]
        return (
            {name: cursor for name, (cursor, _) in zip(names, found, strict=True)},
            {name: count for name, (_, count) in zip(names, found, strict=True)},
        )

    async def _send_all(self, plan: LoadPlan, deliveries: Deliveries, stats: Stats) -> int:
        """The producer fills a throttled queue; one worker per writer empties it."""
        queue: ThrottledQueue[tuple[str, str]] = ThrottledQueue(plan.rate)
        for number in range(plan.messages):
            reader = self.readers[number % len(self.readers)].name
            queue.put_nowait((reader, f"capstone {plan.transport} message {number + 1}"))
        failures = 0

        async def write(writer: SimUser) -> None:
            nonlocal failures
            while True:
                recipient, body = await queue.get()
                deliveries.sending(recipient)
                started = time.perf_counter()
                try:
                    await notify.send_message(writer.session, self.base_url, recipient, body)
                except SEND_ERRORS as exc:
                    failures += 1
                    deliveries.failed(recipient)
                    stats.record_request(None, exc, time.perf_counter() - started)
                    stats.record_outcome(False)
                else:
                    stats.record_request(302, None, time.perf_counter() - started)
                    stats.record_outcome(True)
                finally:
                    queue.task_done()

        stats.start()
        workers = [asyncio.create_task(write(w), name=f"writer {w.name}") for w in self.writers]
        try:
            done = asyncio.create_task(queue.join())
            finished, _ = await asyncio.wait([done, *workers], return_when=asyncio.FIRST_COMPLETED)
            if done not in finished:  # a writer died of something unexpected: surface it
                done.cancel()
                for task in finished:
                    task.result()
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return failures


def _cpu(process: psutil.Process | None) -> float | None:
    if process is None:
        return None
    try:
        times = process.cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system
