"""Wake the requests that wait for a user's notifications (long poll, SSE).

A writer calls ``hub.publish([user_id])`` after it commits a notification; every
request waiting for that user wakes up and reads the database. The hub only
says "something changed for user N": the database stays the one source of
truth, so a wake-up that is missed or spurious costs a query, never a
notification.

One hub lives in each server *process* and works across that process's
threads (a ``threading.Condition`` per user being waited for). With several
processes (several WSGI workers, several machines) a write in one process
does not wake waiters in another. On PostgreSQL the write therefore also
says so on a shared channel: ``pg_notify('notifications', ...)`` in the
writing transaction (``models.User.add_notification``), which PostgreSQL
delivers to every listening connection when, and only if, the transaction
commits. Each process runs one ``NotifyListener`` thread that LISTENs on
that channel and calls ``publish`` for the user named. Waiters still
re-check the database every ``recheck_seconds`` (``NOTIFY_RECHECK_SECONDS``):
the safety net for a wake-up lost while the listener reconnects, and the
only cross-process path on SQLite.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "NOTIFY_CHANNEL",
    "NoSeat",
    "NotificationHub",
    "NotifyListener",
    "Seats",
    "notify_payload",
    "parse_notify_payload",
]

log = logging.getLogger(__name__)

#: The PostgreSQL channel the app NOTIFYs on and every listener LISTENs to;
#: each payload is the text of ``{"user": <user id>, "seq": <cursor>}``.
NOTIFY_CHANNEL = "notifications"


class _Waiting:
    """The requests waiting for one user: a condition, and how many wait on it."""

    __slots__ = ("condition", "count")

    def __init__(self, lock: threading.Lock) -> None:
        self.condition = threading.Condition(lock)
        self.count = 0


class NoSeat(Exception):
    """A waiting request refused: the server's seats are all taken (``per_user``
    False: 503) or this user holds as many as one may (``per_user`` True: 429)."""

    def __init__(self, message: str, *, per_user: bool, retry_after: int) -> None:
        super().__init__(message)
        self.per_user = per_user
        self.retry_after = retry_after


class Seats:
    """How many requests wait, in all and per user, each under a cap (``None``: none).

    The per-user cap keeps one user (a script, or many tabs) from taking every
    seat: past it that user is refused, and everyone else still gets seats.
    """

    def __init__(self, total: int | None = None, per_user: int | None = None) -> None:
        self.total, self.per_user = total, per_user
        self._lock = threading.Lock()
        self._taken = 0
        self._by_user: dict[int, int] = {}  # only users holding a seat now

    def take(self, user_id: int) -> None:
        """Reserve a seat for a waiting request of ``user_id``; raises ``NoSeat``."""
        with self._lock:
            held = self._by_user.get(user_id, 0)
            if self.per_user is not None and held >= self.per_user:
                raise NoSeat(
                    f"you already have {held} requests waiting for notifications (the most one user may); "
                    "close one, or retry later",
                    per_user=True,
                    retry_after=5,
                )
            if self.total is not None and self._taken >= self.total:
                raise NoSeat(
                    "too many clients are waiting for notifications; retry shortly", per_user=False, retry_after=2
                )
            self._taken += 1
            self._by_user[user_id] = held + 1

    def leave(self, user_id: int) -> None:
        """Give back a seat taken with ``take``."""
        with self._lock:
            held = self._by_user.get(user_id, 0)
            if held == 0:
                raise RuntimeError(f"user {user_id} holds no seat to leave")
            self._taken -= 1
            if held == 1:
                del self._by_user[user_id]
            else:
                self._by_user[user_id] = held - 1

    def held(self, user_id: int | None = None) -> int:
        """Seats taken now: by ``user_id``, or in all."""
        with self._lock:
            return self._taken if user_id is None else self._by_user.get(user_id, 0)


class NotificationHub:
    """Per-user change counters, and per-user conditions to wait for them to move.

    Each user somebody waits for has a condition of its own (all share one
    lock), so a publish wakes only the requests waiting for *that* user: with
    a hundred streams open, a message to one user costs one wake-up, not a
    hundred. ``wakeups`` counts the wake-ups by a publish.

    ``max_waiting`` caps how many requests may wait at once, ``max_per_user``
    how many of them one user may hold (``None``: no cap; see ``Seats``). In
    a threaded server each waiting long poll or event stream holds a worker
    thread; keeping some threads free lets pages load and messages be sent
    while many clients wait.
    """

    def __init__(self, max_waiting: int | None = None, max_per_user: int | None = None) -> None:
        self._lock = threading.Lock()
        self._generation: dict[int, int] = {}
        self._waiting: dict[int, _Waiting] = {}  # only users somebody waits for now
        self.seats = Seats(max_waiting, max_per_user)
        self.wakeups = 0

    def take_seat(self, user_id: int) -> None:
        """Reserve a place for a waiting request of ``user_id``; raises ``NoSeat``."""
        self.seats.take(user_id)

    def leave_seat(self, user_id: int) -> None:
        """Give back a place taken with ``take_seat``."""
        self.seats.leave(user_id)

    def waiting(self) -> int:
        """How many requests are waiting now."""
        with self._lock:
            return sum(w.count for w in self._waiting.values())

    def generation(self, user_id: int) -> int:
        """A number that changes whenever ``publish`` is called for the user.

        Read it *before* querying the database, then pass it to ``wait``: a
        publish that happens between the query and the wait is not lost.
        """
        with self._lock:
            return self._generation.get(user_id, 0)

    def publish(self, user_ids: Iterable[int]) -> None:
        """Tell the waiters of these users that they have something new."""
        with self._lock:
            for user_id in user_ids:
                self._generation[user_id] = self._generation.get(user_id, 0) + 1
                waiting = self._waiting.get(user_id)
                if waiting is not None:
                    waiting.condition.notify_all()

    def wait(self, user_id: int, seen: int, timeout: float) -> bool:
        """Block until the user's generation differs from ``seen`` or ``timeout``.

        Returns True if it changed, False on timeout.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._generation.get(user_id, 0) != seen:
                return True
            waiting = self._waiting.get(user_id)
            if waiting is None:
                waiting = self._waiting[user_id] = _Waiting(self._lock)
            waiting.count += 1
            try:
                while self._generation.get(user_id, 0) == seen:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    if waiting.condition.wait(remaining):
                        self.wakeups += 1
                return True
            finally:
                waiting.count -= 1
                if waiting.count == 0:
                    del self._waiting[user_id]

    def publish_waiting(self) -> None:
        """Wake every request waiting now (to re-read after wake-ups may have been lost)."""
        with self._lock:
            users = list(self._waiting)
        self.publish(users)


def notify_payload(user_id: int, seq: int) -> str:
    """The text sent on ``NOTIFY_CHANNEL`` when ``user_id`` gets notification ``seq``."""
    return json.dumps({"user": user_id, "seq": seq})


def parse_notify_payload(text: str) -> tuple[int, int]:
    """``(user_id, seq)`` of a payload; ``ValueError`` if it is not one ``notify_payload`` makes."""
    try:
        fields = json.loads(text)
        user_id, seq = fields["user"], fields["seq"]
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a notification payload: {text[:80]!r}") from exc
    if not all(type(value) is int for value in (user_id, seq)):
        raise ValueError(f"not a notification payload: {text[:80]!r}")
    return user_id, seq


class NotifyListener:
    """A thread that LISTENs on ``channel`` and wakes the hub's waiters of the user named.

    ``connect()`` returns a new autocommit psycopg connection to the app's
    database. When the connection fails, the thread reconnects after a
    growing pause (at most ``max_pause`` seconds) and then wakes every
    waiter, since wake-ups sent while it was away are lost (the waiters'
    periodic re-check would find them too, later). ``received`` counts the
    payloads delivered to the hub; ``listening`` is set while LISTEN is active.
    """

    def __init__(
        self,
        hub: NotificationHub,
        connect: Callable[[], psycopg.Connection[Any]],
        *,
        channel: str = NOTIFY_CHANNEL,
        max_pause: float = 10.0,
    ) -> None:
        self.hub, self.channel, self.max_pause = hub, channel, max_pause
        self._connect = connect
        self._stopping = threading.Event()
        self.listening = threading.Event()
        self.received = 0
        self._thread = threading.Thread(target=self._run, name=f"listen-{channel}", daemon=True)

    def start(self) -> NotifyListener:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (within about a second) and close its connection."""
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                self._listen()
                failures = 0
            except Exception as exc:  # a lost or refused connection: retry
                failures += 1
                pause = min(0.5 * 2 ** (failures - 1), self.max_pause)
                log.warning("LISTEN %s failed (%s); retrying in %.1f s", self.channel, exc, pause)
                self._stopping.wait(pause)
            finally:
                self.listening.clear()

    def _listen(self) -> None:
        from psycopg import sql

        connection = self._connect()
        try:
            connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self.listening.set()
            self.hub.publish_waiting()  # whatever was sent before we listened
            while not self._stopping.is_set():
                for note in connection.notifies(timeout=1.0):
                    self._deliver(note.payload)
        finally:
            connection.close()

    def _deliver(self, payload: str) -> None:
        try:
            user_id, _seq = parse_notify_payload(payload)
        except ValueError as exc:
            log.warning("ignored on channel %s: %s", self.channel, exc)
            return
        self.received += 1
        self.hub.publish([user_id])
