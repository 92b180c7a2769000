"""The comparison harness: five clients, one table, figures from the server's own view."""

from __future__ import annotations

import asyncio

from course.compare import ComparisonRow, compare, format_table, to_frame


async def test_compare_runs_each_client_and_reads_the_servers_counts(mock_api) -> None:
    rows = await asyncio.wait_for(compare(mock_api.url, range(200), rate=400, workers=16), timeout=120)
    assert [row.approach for row in rows] == list("abcde")
    by_key = {row.approach: row for row in rows}
    for row in rows:
        assert isinstance(row, ComparisonRow) and row.items == 200
        assert row.requests >= row.fetched  # the server saw at least every fetched item
    assert by_key["d"].fetched == 200 and by_key["d"].status_429 == 0
    assert by_key["e"].rate_ratio is None and by_key["e"].cpu_vs_bare == 1.0
    assert by_key["d"].rate_ratio is not None and by_key["d"].rate_ratio > 0
    table = format_table(rows)
    assert "worker pool (ours)" in table and len(table.splitlines()) == 6
    assert list(to_frame(rows).index) == list("abcde")
