"""The notification hub on its own: real threads waiting, real publishes."""

from __future__ import annotations

import threading
import time

import pytest

from server.messaging.hub import NoSeat, NotificationHub


def wait_in_threads(hub: NotificationHub, user_ids: list[int], timeout: float) -> tuple[list[threading.Thread], dict]:
    """One thread per user id, each waiting on the user's current generation."""
    results: dict[int, bool] = {}
    seen = {user_id: hub.generation(user_id) for user_id in user_ids}

    def waiter(user_id: int) -> None:
        results[user_id] = hub.wait(user_id, seen[user_id], timeout)

    threads = [threading.Thread(target=waiter, args=(u,), daemon=True) for u in user_ids]
    for thread in threads:
        thread.start()
    return threads, results


def until_waiting(hub: NotificationHub, count: int) -> None:
    deadline = time.monotonic() + 5
    while hub.waiting() < count:
        assert time.monotonic() < deadline, "the waiter threads never started waiting"
        time.sleep(0.005)


def test_a_publish_wakes_only_the_waiters_of_that_user() -> None:
    hub = NotificationHub()
    others = list(range(2, 22))
    threads, results = wait_in_threads(hub, others, timeout=10)
    until_waiting(hub, len(others))
    for _ in range(50):
        hub.publish([1])  # nobody waits for user 1
    assert hub.wakeups == 0  # one shared condition would have woken 20 threads 50 times
    hub.publish(others)
    for thread in threads:
        thread.join(5)
    assert results == {u: True for u in others}
    assert hub.wakeups == len(others)
    assert hub._waiting == {}  # nothing kept for users nobody waits for


def test_several_waiters_of_one_user_all_wake() -> None:
    hub = NotificationHub()
    threads, first = wait_in_threads(hub, [7], timeout=10)
    more, second = wait_in_threads(hub, [7], timeout=10)
    until_waiting(hub, 2)
    hub.publish([7])
    for thread in threads + more:
        thread.join(5)
        assert not thread.is_alive()
    assert first == second == {7: True}  # woken, not timed out
    assert hub.wakeups == 2
    assert hub._waiting == {}


def test_a_waiter_that_times_out_leaves_the_others_waiting() -> None:
    hub = NotificationHub()
    patient, patient_result = wait_in_threads(hub, [8], timeout=10)
    hasty, hasty_result = wait_in_threads(hub, [8], timeout=0.05)
    hasty[0].join(5)
    assert hasty_result == {8: False}
    until_waiting(hub, 1)  # the patient one is still there, on the same condition
    hub.publish([8])
    patient[0].join(5)
    assert patient_result == {8: True}
    assert hub.wakeups == 1
    assert hub._waiting == {}


def test_a_publish_before_the_wait_is_not_lost() -> None:
    hub = NotificationHub()
    seen = hub.generation(3)
    hub.publish([3])  # lands between reading the generation and waiting
    assert hub.wait(3, seen, timeout=5) is True
    assert hub.wakeups == 0  # it returned without waiting at all


def test_a_wait_times_out_when_nothing_changes() -> None:
    hub = NotificationHub()
    hub.publish([4])
    assert hub.wait(5, hub.generation(5), timeout=0.05) is False
    assert hub.wait(4, hub.generation(4), timeout=0.05) is False
    assert hub._waiting == {}


@pytest.mark.parametrize("max_waiting", [None, 2])
def test_seats(max_waiting: int | None) -> None:
    hub = NotificationHub(max_waiting)
    taken = []
    for user_id in (1, 2, 3):
        try:
            hub.take_seat(user_id)
            taken.append(True)
        except NoSeat as refusal:
            assert not refusal.per_user and refusal.retry_after > 0
            taken.append(False)
    assert taken == ([True, True, True] if max_waiting is None else [True, True, False])
    hub.leave_seat(1)
    hub.take_seat(3)
    assert hub.seats.held() == 3 if max_waiting is None else 2


def test_one_user_cannot_take_more_than_their_share_of_seats() -> None:
    """Finding 6: one user held every waiting seat, and everyone else got 503."""
    hub = NotificationHub(max_waiting=56, max_per_user=4)
    for _ in range(4):
        hub.take_seat(1)
    with pytest.raises(NoSeat) as refused:
        hub.take_seat(1)
    assert refused.value.per_user and refused.value.retry_after > 0
    for other in range(2, 12):  # the others still find seats
        hub.take_seat(other)
    hub.leave_seat(1)
    hub.take_seat(1)  # a seat given back can be taken again
    assert (hub.seats.held(1), hub.seats.held()) == (4, 14)


def test_leaving_a_seat_one_does_not_hold_is_an_error() -> None:
    hub = NotificationHub(max_per_user=2)
    with pytest.raises(RuntimeError, match="holds no seat"):
        hub.leave_seat(7)


def test_publish_waiting_wakes_everyone_waiting_and_only_bumps_their_users() -> None:
    hub = NotificationHub()
    threads, results = wait_in_threads(hub, [3, 4], timeout=10)
    until_waiting(hub, 2)
    idle_before = hub.generation(5)
    hub.publish_waiting()  # what the LISTEN thread does after (re)connecting
    for thread in threads:
        thread.join(5)
    assert results == {3: True, 4: True}
    assert hub.generation(5) == idle_before
