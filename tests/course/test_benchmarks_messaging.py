"""The messaging benchmark runs end to end on a few users and prints a line per transport."""

from __future__ import annotations

import re

import pytest

from course.benchmarks import messaging


@pytest.mark.slow
def test_the_benchmark_reports_every_transport_with_every_message_delivered(capsys) -> None:
    assert messaging.main(["--users", "3", "--interval", "0.5", "--send-rate", "20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["poll", "longpoll", "sse"]
    for line in lines:
        figures = dict(re.findall(r"(\w+(?:/\w+)?)=\s*([\d.]+)", line))
        assert figures["users"] == "3" and figures["delivered"] == "3", line
        assert float(figures["median"]) <= float(figures["p95"]), line
    # SSE: one stream per reader and one message each -> one request per delivery.
    assert re.search(r"requests/delivery=\s*1\.0$", lines[-1]), lines[-1]


def test_bad_arguments_are_a_one_line_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        messaging.main(["--users", "0"])
    assert info.value.code == 2
    assert "--users must be at least 1" in capsys.readouterr().err
