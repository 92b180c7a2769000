"""The push benchmark (course/benchmarks/push.py) runs end to end on a few streams.

It lives here rather than in tests/course because it needs this folder's
PostgreSQL server.
"""

from __future__ import annotations

import re

import pytest

from course.benchmarks import push

pytestmark = pytest.mark.timeout(300)


@pytest.mark.slow
def test_the_benchmark_delivers_everything_and_reports_both_servers(database_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", database_url)
    args = ["--connections", "40", "--users", "10", "--clients", "2", "--rate", "20", "--seconds", "1"]
    assert push.main([*args, "--flask-threads", "8", "--flask-streams", "10"]) == 0
    out = capsys.readouterr().out
    assert "40 streams (20 SSE, 20 WebSocket) on 2 processes" in out
    assert "20 notifications written, 80 of 80 deliveries arrived" in out  # 4 streams a user
    assert "0 streams ended early" in out
    held, refused = map(int, re.search(r"held (\d+) SSE streams, refused (\d+) \(503\)", out).groups())
    assert held + refused == 10 and refused > 0  # 8 threads seat fewer than 10 streams


def test_without_a_postgresql_database_it_says_so(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "sqlite:///x.db")
    assert push.main(["--connections", "10"]) == 2
    assert "PostgreSQL" in capsys.readouterr().err


def test_bad_arguments_are_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as info:
        push.main(["--connections", "0"])
    assert info.value.code == 2
    assert "--connections" in capsys.readouterr().err
