"""How long a notification takes to arrive: the one delivery measurement.

Lesson 03 (``course.lesson03_delivery``), the capstone's load test
(``course.lesson09_load``) and the messaging benchmark
(``course.benchmarks.messaging``) all measure the same thing: messages are
sent to readers who follow their notifications with ``course.notify``, and a
message's *delay* runs from the moment its send started to the moment its
reader is told about it.

- ``Deliveries`` matches each send with the notification that reports it;
- ``DelayFigures`` gives a run record its delay figures (median, 95th
  percentile), by nearest rank (``course.stats.quantile``): every figure is a
  delay that really occurred.

    deliveries = Deliveries({"ann": 0})          # each reader's unread count now
    deliveries.sending("ann")                    # as a send to ann starts
    deliveries.seen("ann", note)                 # from ann's notify.follow callback
    deliveries.sends_over()                      # after the last send
    await deliveries.all_seen.wait()             # every accepted send reported
    deliveries.delays                            # seconds, in arrival order
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping

from course import notify
from course.stats import quantile

__all__ = ["UNREAD", "DelayFigures", "Deliveries"]

#: The notification that reports a reader's unread count (what a delivery is matched on).
UNREAD = "unread_message_count"


class Deliveries:
    """Matches each send with the notification that reports it, and times it.

    A reader's ``unread_message_count`` only grows during a run (nobody opens
    the inbox), so the k-th message to a reader is the one that takes the
    count to ``start + k``: any notification with ``data >= start + k``
    reports it. Polling often reports two messages with one notification;
    each gets its own delay.
    """

    def __init__(self, unread: Mapping[str, int]) -> None:
        self._unread = dict(unread)  # what each reader's count will be once the sends so far land
        self._pending: dict[str, deque[tuple[int, float]]] = {name: deque() for name in unread}
        self._outstanding = 0
        self._sending = True
        self.delays: list[float] = []
        self.send_times: list[float] = []
        self.all_seen = asyncio.Event()

    def sending(self, reader: str) -> None:
        """A send to ``reader`` starts now."""
        now = time.monotonic()
        self._unread[reader] += 1
        self._pending[reader].append((self._unread[reader], now))
        self._outstanding += 1
        self.send_times.append(now)

    def failed(self, reader: str) -> None:
        """The last send to ``reader`` was refused: expect nothing for it."""
        self._unread[reader] -= 1
        self._pending[reader].pop()
        self._outstanding -= 1
        self._check_done()

    def seen(self, reader: str, note: notify.Notification) -> None:
        if note.name != UNREAD or not isinstance(note.data, int):
            return
        now, waiting = time.monotonic(), self._pending[reader]
        while waiting and waiting[0][0] <= note.data:
            self.delays.append(now - waiting.popleft()[1])
            self._outstanding -= 1
        self._check_done()

    def sends_over(self) -> None:
        self._sending = False
        self._check_done()

    def _check_done(self) -> None:
        if not self._sending and self._outstanding == 0:
            self.all_seen.set()


class DelayFigures:
    """Delay figures of a run record that has ``delays`` (seconds, one per delivered message)."""

    delays: tuple[float, ...]

    @property
    def delivered(self) -> int:
        """Messages whose notification reached their reader."""
        return len(self.delays)

    def delay_quantile(self, fraction: float) -> float:
        """The delay a ``fraction`` of the deliveries took at most (nearest rank; NaN if none)."""
        return quantile(sorted(self.delays), fraction)

    @property
    def median(self) -> float:
        return self.delay_quantile(0.5)

    @property
    def p95(self) -> float:
        return self.delay_quantile(0.95)
