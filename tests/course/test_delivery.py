"""course.delivery: matching sends with the notifications that report them, and the delay figures."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from course import notify
from course.delivery import DelayFigures, Deliveries


def note(count: int, name: str = "unread_message_count", id: int = 1) -> notify.Notification:
    return notify.Notification(id, name, count, 0.0)


# -- Deliveries --------------------------------------------------------------------------------


async def test_one_notification_reports_every_message_it_covers() -> None:
    deliveries = Deliveries({"ann": 3})
    deliveries.sending("ann")  # takes the count to 4
    deliveries.sending("ann")  # to 5
    deliveries.seen("ann", note(5))
    assert len(deliveries.delays) == 2
    assert all(delay >= 0 for delay in deliveries.delays)
    assert len(deliveries.send_times) == 2


async def test_a_lower_count_reports_only_the_messages_below_it() -> None:
    deliveries = Deliveries({"ann": 0})
    deliveries.sending("ann")
    deliveries.sending("ann")
    deliveries.seen("ann", note(1))
    deliveries.sends_over()
    assert len(deliveries.delays) == 1
    assert not deliveries.all_seen.is_set()
    deliveries.seen("ann", note(1))  # the same count again reports nothing new
    assert len(deliveries.delays) == 1
    deliveries.seen("ann", note(2))
    assert deliveries.all_seen.is_set()


async def test_other_notifications_and_other_readers_report_nothing() -> None:
    deliveries = Deliveries({"ann": 0, "bob": 0})
    deliveries.sending("ann")
    deliveries.seen("ann", note(7, name="something_else"))
    deliveries.seen("bob", note(7))
    assert deliveries.delays == []


async def test_a_refused_send_is_not_waited_for() -> None:
    deliveries = Deliveries({"ann": 0})
    deliveries.sending("ann")
    deliveries.sending("ann")
    deliveries.failed("ann")  # the second one was refused
    deliveries.sends_over()
    deliveries.seen("ann", note(1))
    assert len(deliveries.delays) == 1
    assert deliveries.all_seen.is_set()


async def test_nothing_sent_is_all_seen_once_the_sends_are_over() -> None:
    deliveries = Deliveries({"ann": 4})
    assert not deliveries.all_seen.is_set()  # sends may still come
    deliveries.sends_over()
    assert deliveries.all_seen.is_set()


# -- DelayFigures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run(DelayFigures):
    delays: tuple[float, ...]


def test_figures_are_nearest_rank_delays_that_occurred_whatever_the_order() -> None:
    run = Run(tuple(float(n) for n in range(20, 0, -1)))  # 20 delays, newest first
    assert run.delivered == 20
    assert run.median == 10.0  # the 10th of 20, not an interpolated 10.5
    assert run.p95 == 19.0  # the 19th of 20 (int(0.95 * n) as an index would give the 20th)
    assert run.delay_quantile(1.0) == 20.0 and run.delay_quantile(0.0) == 1.0


def test_figures_of_a_run_without_deliveries_are_nan() -> None:
    run = Run(())
    assert run.delivered == 0
    assert math.isnan(run.median) and math.isnan(run.p95)
    with pytest.raises(ValueError, match="between 0 and 1"):
        run.delay_quantile(95)
