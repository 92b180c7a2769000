"""Stats: counts by status and error, retries, percentiles without storing every duration."""

from __future__ import annotations

import logging
import math

import pytest

from course.stats import LogHook, RequestEvent, Stats, quantile


def test_counts_by_status_errors_and_outcomes() -> None:
    stats = Stats()
    for _ in range(90):
        stats.record_request(200, None, 0.010)
    for _ in range(10):
        stats.record_request(None, TimeoutError(), 1.0)
    stats.record_retry()
    stats.record_outcome(True)
    stats.record_outcome(False)
    snap = stats.snapshot()
    assert snap.requests == 100 and snap.by_status == {"200": 90} and snap.errors == {"TimeoutError": 10}
    assert snap.retries == 1 and snap.results == 1 and snap.failures == 1
    assert sum(snap.per_second) == 100
    assert 0.009 <= snap.duration_p50 <= 0.0115  # within one histogram bucket
    assert snap.duration_p95 >= 0.9 and snap.duration_max == 1.0
    assert "1 results, 1 failures, 100 requests" in stats.summary()


def test_memory_does_not_grow_with_requests() -> None:
    stats = Stats()
    for i in range(50_000):
        stats.record_request(200, None, 0.001 + (i % 7) * 1e-3)
    assert len(stats._hist) < 200 and len(stats._per_second) < 100


def test_log_hook_logs_before_and_after(caplog) -> None:
    hook = LogHook(level=logging.INFO)
    event = RequestEvent(item=3, url="http://h/items/3", attempt=1)
    with caplog.at_level(logging.INFO, logger="course.requests"):
        hook.before_request(event)
        event.status, event.duration = 200, 0.002
        hook.after_request(event)
    assert [r.getMessage()[:2] for r in caplog.records] == ["->", "<-"]
    assert "200" in caplog.records[1].getMessage()


def test_quantile_is_nearest_rank_over_values_that_occurred() -> None:
    values = [float(v) for v in range(1, 101)]
    assert quantile(values, 0.5) == 50.0
    assert quantile(values, 0.95) == 95.0
    assert quantile([1.0, 2.0], 0.5) == 1.0  # a value that occurred, not the mean 1.5
    assert quantile([3.0], 0.95) == 3.0
    assert quantile(values, 1.0) == 100.0 and quantile(values, 0.0) == 1.0
    assert math.isnan(quantile([], 0.5))
    with pytest.raises(ValueError, match="between 0 and 1"):
        quantile(values, 95)
