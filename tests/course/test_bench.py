"""`python -m course.bench` runs end to end on a tiny workload and reports what it measured."""

from __future__ import annotations

import re
import subprocess
import sys


def test_bench_runs_and_the_pool_draws_no_429_under_a_strict_limit():
    run = subprocess.run(
        [sys.executable, "-m", "course.bench", "--rates", "50", "--seconds", "2", "--sizes", "", "--approaches", "de"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    summary = re.search(r"worker pool at R=50/s: rate/R ([\d.]+) .*429s (\d+)", run.stdout)
    assert summary, run.stdout[-2000:]
    assert int(summary.group(2)) == 0
    assert 0.5 < float(summary.group(1)) < 1.02, "the pool keeps to the rate it was given"
    assert re.search(r"ratio [\d.]+ \(target <= 1.10\)", run.stdout), "full-speed overhead line missing"
