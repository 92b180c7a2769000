"""The push benchmark (course/benchmarks/push.py) runs end to end on a few streams.

It lives here rather than in tests/course because it belongs with the
gateway's other tests (PostgreSQL, the app, the gateway).
"""

from __future__ import annotations

import re
import socket

import pytest

from course.benchmarks import push

pytestmark = pytest.mark.timeout(420)

SMALL = ["--connections", "40", "--users", "10", "--clients", "2", "--rate", "10", "--seconds", "2"]


def table_row(out: str, server: str) -> list[str]:
    """The cells of the table's row for ``server`` (cells are 2+ spaces apart)."""
    (line,) = [line for line in out.splitlines() if line.startswith(server)]
    return re.split(r"\s{2,}", line.strip())


@pytest.mark.slow
def test_without_database_url_it_runs_on_its_own_postgresql_and_reports_both_servers(monkeypatch, capsys):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert push.main([*SMALL, "--flask-threads", "8", "--flask-streams", "10", "--flask-seconds", "2"]) == 0
    out = capsys.readouterr().out
    assert "POSTed to the app's form on 2 app processes" in out

    # server, procs, held, refused, 1st refused, memory, sent, deliveries, p50, p99, after the write, ended early
    for sender in ("via app", "via database"):
        gateway = table_row(out, f"push gateway (asyncio), {sender}")
        assert gateway[1] == "2" and gateway[2] == "40 (20 SSE + 20 WS)" and gateway[3] == "0"
        assert gateway[6].startswith("20 at ")  # 10 messages/s for 2 s
        assert gateway[7] == "80/80"  # 4 streams a user: every one got every message of its user
        assert gateway[8].endswith(" ms") and gateway[9].endswith(" ms") and gateway[11] == "0"

        flask = table_row(out, f"threaded Flask (a thread each), {sender}")
        held, refused = int(flask[2]), int(flask[3])
        assert held + refused == 10 and 0 < held < 10  # 8 threads a process seat fewer than 10 streams
        assert flask[4].startswith("#") and int(flask[4][1:]) <= held + 1  # opened one by one
        sent = int(flask[6].split()[0])
        assert sent > 0 and flask[7] == f"{sent}/{sent}"  # its held streams got every message sent to them
        assert flask[8].endswith(" ms") and flask[9].endswith(" ms")

    assert re.search(r"client event-loop lag .*: p99 [0-9.]+ ms, max [0-9.]+ ms", out)
    assert "CPU used in the" in out
    found = re.search(r"a throwaway PostgreSQL started for this run on port (\d+), stopped after", out)
    assert found is not None
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", int(found.group(1))), timeout=5):
        pass  # it was stopped


def test_with_a_database_url_that_is_not_postgresql_it_says_so(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "sqlite:///x.db")
    assert push.main(["--connections", "10"]) == 2
    assert "PostgreSQL" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--connections", "0"], ["--users", "5", "--flask-streams", "6"]])
def test_bad_arguments_are_a_one_line_error(args, capsys):
    with pytest.raises(SystemExit) as info:
        push.main(args)
    assert info.value.code == 2
    assert "--" in capsys.readouterr().err.splitlines()[-1]
