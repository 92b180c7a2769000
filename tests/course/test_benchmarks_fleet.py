"""course.benchmarks.fleet runs, and its figures read the server's arrivals right."""

from __future__ import annotations

import pytest
from redis_fixture import requires_redis

from course.benchmarks.fleet import _figures, run_benchmark, run_kill, seconds_to_reach


def test_figures_of_even_arrivals() -> None:
    arrivals = [i / 16 for i in range(50)]  # 16 per second, evenly (exact binary fractions)
    stats = {"arrivals": [*arrivals, 2.05], "statuses": ["200"] * 50 + ["429"]}
    figures = _figures("x", stats, commands=102, seconds=5.0, rate=16)
    assert (figures.admitted, figures.refused) == (50, 1)
    assert figures.steady_rate == pytest.approx(16)
    assert figures.busiest_100ms == pytest.approx(2 / 1.6)  # two in any 100 ms, an even share being 1.6
    assert figures.gap_spread == pytest.approx(0, abs=1e-9)
    assert figures.redis_commands_per_request == pytest.approx(2)


@requires_redis
@pytest.mark.slow
def test_two_processes_sharing_the_limit_get_no_429() -> None:
    (figures,) = run_benchmark(processes=2, rate=40, requests=80, workers=4, contenders=("shared",))
    assert figures.admitted == 80 and figures.refused == 0


def test_seconds_to_reach_finds_the_first_second_at_ninety_percent() -> None:
    # 5/s for the first 2 s, then 10/s: the first second holding 9 admitted ends at 2.6 s
    slow = [i / 5 for i in range(10)]  # 0.0 .. 1.8
    fast = [2.0 + i / 10 for i in range(20)]  # 2.0 .. 3.9
    arrivals = [*slow, *fast]
    statuses = ["200"] * len(arrivals)
    reached = seconds_to_reach(arrivals, statuses, rate=10)
    assert reached is not None and 2.0 < reached < 3.0
    assert seconds_to_reach(slow, ["200"] * len(slow), rate=10) is None  # 5/s never reaches 9 in a second
    assert seconds_to_reach(arrivals, ["429"] * len(arrivals), rate=10) is None  # refusals do not count


@requires_redis
@pytest.mark.slow
def test_a_killed_queue_worker_loses_nothing_and_duplicates_nothing() -> None:
    figures = run_kill(items=90, rate=60, latency=0.1)
    assert figures.exported == 90 and figures.lost == 0 and figures.duplicated == 0
    assert figures.requests >= 90
