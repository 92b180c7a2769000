"""The sliding-window limiter, on a fake clock: never more than R in any window."""

from __future__ import annotations

import random

import pytest

from server.mockapi.limiter import SlidingWindowLimiter


def _max_in_any_window(times: list[float], per: float) -> int:
    # The busiest window of length `per` starts at some admitted time.
    best, j = 0, 0
    for i, start in enumerate(times):
        while j < len(times) and times[j] < start + per:
            j += 1
        best = max(best, j - i)
    return best


@pytest.mark.parametrize("requests, per, seed", [(1, 1.0, 0), (5, 1.0, 1), (100, 1.0, 2), (7, 0.25, 3)])
def test_never_more_than_r_in_any_window(requests, per, seed):
    limiter = SlidingWindowLimiter(requests, per)
    rng = random.Random(seed)
    now, admitted = 0.0, []
    for _ in range(5000):
        now += rng.expovariate(requests * 3 / per)  # three times the allowed rate
        if limiter.try_acquire(now) == 0.0:
            admitted.append(now)
    assert _max_in_any_window(admitted, per) == requests
    assert len(admitted) >= requests * int(now / per) * 0.7  # and it does admit close to the limit


def test_wait_is_time_until_oldest_admission_leaves():
    limiter = SlidingWindowLimiter(2, 1.0)
    assert limiter.try_acquire(10.0) == 0.0
    assert limiter.try_acquire(10.3) == 0.0
    assert limiter.try_acquire(10.5) == pytest.approx(0.5)
    assert limiter.remaining(10.5) == 0 and limiter.reset_in(10.5) == pytest.approx(0.5)
    assert limiter.try_acquire(11.0) == 0.0  # exactly `per` after the oldest: it has left
    assert limiter.try_acquire(11.1) == pytest.approx(0.2)


def test_rejected_arrivals_do_not_use_slots():
    limiter = SlidingWindowLimiter(1, 1.0)
    assert limiter.try_acquire(0.0) == 0.0
    for t in (0.5, 0.6, 0.9, 0.99):
        assert limiter.try_acquire(t) > 0.0
    assert limiter.try_acquire(1.0) == 0.0


def test_limiter_refuses_nonsense():
    with pytest.raises(ValueError):
        SlidingWindowLimiter(0, 1.0)
    with pytest.raises(ValueError):
        SlidingWindowLimiter(1, 0.0)
