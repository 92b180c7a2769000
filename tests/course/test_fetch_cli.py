"""`python -m course.fetch`: one JSON line per item, a summary on stderr, an honest exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_fetch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "course.fetch", *args], capture_output=True, text=True, timeout=timeout
    )


def test_every_item_is_written_once_and_the_exit_status_is_zero(small_api, tmp_path: Path) -> None:
    small_api.scenario({"rate_limit": {"requests": 1000, "per": 1.0}, "error_rate": 0.02, "seed": 9})
    out = tmp_path / "items.jsonl"
    done = run_fetch(small_api.url, "--rate", "1000", "--workers", "16", "--out", str(out), "--per-page", "200")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == list(range(500))
    assert all(line["status"] == 200 and "@" in line["data"]["email"] for line in lines)
    assert "500 fetched, 0 failed" in done.stderr
    stats = small_api.stats()
    assert stats["by_status"].get("429", 0) == 0 and stats["items"]["max_per_item"] == 1


def test_failed_items_are_written_as_errors_and_the_exit_status_is_one(small_api) -> None:
    small_api.scenario({"error_rate": 0.5, "seed": 3})
    # No retries for items: about half of them fail (the listing retries more).
    done = run_fetch(small_api.url, "--rate", "2000", "--workers", "16", "--retries", "0", "--quiet")
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 500 and len({line["id"] for line in lines}) == 500
    errors = [line for line in lines if "error" in line]
    assert errors and all(line["status"] == 500 and "HTTP 500" in line["error"] for line in errors)
    assert f"{len(errors)} failed" in done.stderr


def test_an_unreachable_list_exits_two_with_a_clear_message(small_api) -> None:
    done = run_fetch(small_api.url + "/not-an-api", "--rate", "100", "--quiet")
    assert done.returncode == 2
    assert "Could not list the items" in done.stderr and "404" in done.stderr
    assert done.stdout == ""


def test_bad_arguments_are_refused() -> None:
    done = run_fetch("http://127.0.0.1:9", "--rate", "0")
    assert done.returncode == 2 and "--rate" in done.stderr
