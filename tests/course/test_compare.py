"""The comparison harness: six clients, one table, figures from the server's own view."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from course.compare import ComparisonRow, compare, format_table, relative_cpu, run_bare_paced, to_frame


async def test_compare_runs_each_client_and_reads_the_servers_counts(mock_api) -> None:
    rows = await asyncio.wait_for(compare(mock_api.url, range(200), rate=400, workers=16), timeout=120)
    assert [row.approach for row in rows] == list("abcdef")
    by_key = {row.approach: row for row in rows}
    for row in rows:
        assert isinstance(row, ComparisonRow) and row.items == 200
        assert row.requests >= row.fetched  # the server saw at least every fetched item
    assert by_key["d"].fetched == 200 and by_key["d"].status_429 == 0
    assert by_key["e"].rate_ratio is None and by_key["e"].cpu_vs_bare == 1.0
    assert by_key["f"].cpu_vs_paced == 1.0 and by_key["f"].fetched == 200
    assert by_key["d"].rate_ratio is not None and by_key["d"].rate_ratio > 0
    # The paced baseline keeps to the rate (it ran without the server's limit,
    # so nothing but its own schedule held it back); the unpaced one did not.
    # (Lower bounds only: a stall of a loaded machine can slow any run down.)
    assert by_key["f"].rate_ratio < 1.15
    assert by_key["f"].seconds > 0.4 and by_key["e"].seconds < by_key["f"].seconds
    table = format_table(rows)
    assert "worker pool (ours)" in table and "paced at R" in table and len(table.splitlines()) == 7
    assert list(to_frame(rows).index) == list("abcdef")


async def test_the_paced_bare_loop_spaces_its_requests_evenly(mock_api) -> None:
    fetched = await asyncio.wait_for(run_bare_paced(mock_api.url, range(150), 300, 1.0, 16), timeout=30)
    assert fetched == 150
    arrivals = mock_api.stats(detail=True)["arrivals"]
    assert len(arrivals) == 150
    # At least 149 intervals of 1/300 s: the schedule held it back (flat out it takes ~0.05 s).
    assert arrivals[-1] - arrivals[0] > 149 / 300 * 0.95
    # Evenly spaced: the typical gap is one interval. (The median, because after a
    # stall of a loaded machine this bare loop sends its overdue requests together.)
    gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
    assert 0.5 / 300 < gaps[len(gaps) // 2] < 2 / 300


async def test_the_paced_bare_loop_refuses_a_rate_it_cannot_keep(mock_api) -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        await run_bare_paced(mock_api.url, range(3), 0, 1.0, 4)


def test_relative_cpu_uses_each_baseline_that_ran() -> None:
    def row(key: str, cpu: float) -> ComparisonRow:
        return ComparisonRow(key, key, 10, 10, 0, 1.0, 10, 0, 10.0, None, cpu)

    both = {r.approach: r for r in relative_cpu([row("d", 300.0), row("e", 150.0), row("f", 250.0)])}
    assert both["d"].cpu_vs_bare == pytest.approx(2.0) and both["d"].cpu_vs_paced == pytest.approx(1.2)
    only_bare = relative_cpu([row("d", 300.0), row("e", 150.0)])
    assert only_bare[0].cpu_vs_bare == pytest.approx(2.0) and only_bare[0].cpu_vs_paced is None
    assert relative_cpu([row("d", 300.0)])[0].cpu_vs_bare is None
