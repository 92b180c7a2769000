"""The mock API benchmark runs end to end on a small load (its figures are printed, never asserted)."""

from __future__ import annotations

from course.benchmarks.mockapi import _report, run_benchmark


async def test_benchmark_drives_both_servers_and_reports_a_ratio():
    results = await run_benchmark(requests=300, concurrency=4, seconds=30.0, rounds=1)
    assert set(results) == {"bare aiohttp  GET /", "mock API      GET /", "mock API      GET /items/{id}"}
    for runs in results.values():
        (run,) = runs
        assert run.requests == 300 and run.failures == 0
        assert run.seconds > 0 and run.server_cpu_seconds >= 0
    report = _report(results)
    assert "ratio mock /items/{id} : bare /" in report and "target >= 0.80" in report
