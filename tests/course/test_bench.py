"""`python -m course.bench` runs end to end on a tiny workload and reports what it measured."""

from __future__ import annotations

import re
import subprocess
import sys


def test_bench_runs_and_the_pool_draws_no_429_under_a_strict_limit():
    run = subprocess.run(
        [
            sys.executable, "-m", "course.bench", "--rates", "50", "--seconds", "2", "--approaches", "def",
            "--cpu-rounds", "2", "--sizes", "300", "--memory-stop-after", "100",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    summary = re.search(r"worker pool at R=50/s: rate/R ([\d.]+) .*429s (\d+)", run.stdout)
    assert summary, run.stdout[-2000:]
    assert int(summary.group(2)) == 0
    assert 0.5 < float(summary.group(1)) < 1.02, "the pool keeps to the rate it was given"
    paced = re.search(r"paced at R: median ([\d.]+) \(target <= 1.10\) over 2 alternated rounds", run.stdout)
    assert paced and float(paced.group(1)) > 0, "the CPU line against the paced bare loop is missing"
    assert re.search(r"ratio [\d.]+ \(target <= 1.10\)", run.stdout), "full-speed overhead line missing"
    # The memory runs stop early (100 of 300 fetched) and the child leaves its run pending.
    rows = re.findall(r"^\s+300 (coroutines|pool)\s+(\d+)\s+([\d.]+)", run.stdout, re.M)
    assert [name for name, _, _ in rows] == ["coroutines", "pool"], run.stdout[-2000:]
    assert all(100 <= int(fetched) <= 300 and float(traced) > 0 for _, fetched, traced in rows)
    assert re.search(r"300 items: coroutines / pool = [\d.]+x traced", run.stdout)
