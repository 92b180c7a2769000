"""Wake the requests that wait for a user's notifications (long poll, SSE).

A writer calls ``hub.publish([user_id])`` after it commits a notification; every
request waiting for that user wakes up and reads the database. The hub only
says "something changed for user N": the database stays the one source of
truth, so a wake-up that is missed or spurious costs a query, never a
notification.

One hub lives in each server *process* and works across that process's
threads (a ``threading.Condition`` per user being waited for). With several
processes (several WSGI workers, several machines) a write in one process
does not wake waiters in another. Waiters therefore also re-check the
database every ``recheck_seconds`` (``NOTIFY_RECHECK_SECONDS``), which bounds
the extra delay to that interval; to remove it, publish through a shared
channel instead, e.g. PostgreSQL ``LISTEN/NOTIFY`` or Redis pub/sub, and call
``publish`` from the listener in each process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

__all__ = ["NotificationHub"]


class _Waiting:
    """The requests waiting for one user: a condition, and how many wait on it."""

    __slots__ = ("condition", "count")

    def __init__(self, lock: threading.Lock) -> None:
        self.condition = threading.Condition(lock)
        self.count = 0


class NotificationHub:
    """Per-user change counters, and per-user conditions to wait for them to move.

    Each user somebody waits for has a condition of its own (all share one
    lock), so a publish wakes only the requests waiting for *that* user: with
    a hundred streams open, a message to one user costs one wake-up, not a
    hundred. ``wakeups`` counts the wake-ups by a publish.

    ``max_waiting`` caps how many requests may wait at once (``None``: no
    cap). In a threaded server each waiting long poll or event stream holds
    a worker thread; keeping some threads free lets pages load and messages
    be sent while many clients wait.
    """

    def __init__(self, max_waiting: int | None = None) -> None:
        self._lock = threading.Lock()
        self._generation: dict[int, int] = {}
        self._waiting: dict[int, _Waiting] = {}  # only users somebody waits for now
        self._seats = None if max_waiting is None else threading.BoundedSemaphore(max_waiting)
        self.wakeups = 0

    def take_seat(self) -> bool:
        """Reserve a place for one waiting request; False when all are taken."""
        return self._seats is None or self._seats.acquire(blocking=False)

    def leave_seat(self) -> None:
        """Give back a place taken with ``take_seat``."""
        if self._seats is not None:
            self._seats.release()

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
