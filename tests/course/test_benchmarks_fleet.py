"""course.benchmarks.fleet runs, and its figures read the server's arrivals right."""

from __future__ import annotations

import pytest
from redis_fixture import requires_redis

from course.benchmarks.fleet import _figures, run_benchmark


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
