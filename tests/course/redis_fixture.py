"""A real Redis for the fleet tests (lesson 11): Debian's redis-server on a free port, one per test module.

The tests that use it are skipped, with the reason, only where /usr/bin/redis-server
is not installed (``make redis`` installs it; ``make test`` does so first).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from course.redis_server import RedisHandle, start_redis

REDIS_BINARY = "/usr/bin/redis-server"

requires_redis = pytest.mark.skipif(
    not os.access(REDIS_BINARY, os.X_OK),
    reason=f"needs Debian's redis-server ({REDIS_BINARY}): run `make redis` or `apt-get install redis-server`",
)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisHandle]:
    handle = start_redis()
    yield handle
    handle.stop()


def fetch_process(*args: str) -> subprocess.Popen[str]:
    """``python -m course.fetch ARGS`` in a process of its own (stdout and stderr captured)."""
    return subprocess.Popen(
        [sys.executable, "-m", "course.fetch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def steady_rate(arrivals: list[float]) -> float:
    """Requests per second over the middle 80 % of the arrivals (start-up and the stragglers left out)."""
    cut = len(arrivals) // 10
    middle = sorted(arrivals)[cut : len(arrivals) - cut]
    return (len(middle) - 1) / (middle[-1] - middle[0])
