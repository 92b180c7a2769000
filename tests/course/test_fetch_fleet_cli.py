"""`python -m course.fetch`'s fleet flags: each refused in one line with exit 2 when wrong; Redis down is exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
from redis_fixture import redis_server, requires_redis

from course.fetch import parse_args
from course.servers import free_port

__all__ = ["redis_server"]  # the fixture, imported for the tests below

API = "http://127.0.0.1:9"
REDIS = "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rate", "fast"], "must be a number or 'auto'"),
        (["--rate", "10", "--shared-limit", "http://127.0.0.1:6379/0"], "--shared-limit must be a redis://"),
        (["--rate", "10", "--shared-limit", "redis://"], "--shared-limit must be a redis://"),
        (["--rate", "10", "--shared-limit", "redis://127.0.0.1:99999/0"], "invalid port"),
        (["--rate", "10", "--shared-limit", "redis://127.0.0.1:6379/zero"], "the database (the path) must be a number"),
        (["--rate", "10", "--limit-key", "k"], "--limit-key names a shared budget"),
        (["--rate", "10", "--shared-limit", REDIS, "--limit-key", " "], "--limit-key must not be empty"),
        (["--rate", "auto", "--shared-limit", REDIS], "--rate auto"),
        (["--rate", "10", "--queue", REDIS], "--queue needs --queue-name"),
        (["--rate", "10", "--queue", "ftp://h/0", "--queue-name", "q"], "--queue must be a redis://"),
        (["--rate", "10", "--queue-name", "q"], "--queue-name works with a queue"),
        (["--rate", "10", "--export"], "--export works with a queue"),
        (["--rate", "10", "--claim-after", "5"], "--claim-after works with a queue"),
        (["--rate", "10", "--queue", REDIS, "--queue-name", "q", "--claim-after", "0"], "--claim-after must be"),
        (["--rate", "10", "--queue", REDIS, "--queue-name", "q", "--claim-after", "nan"], "--claim-after must be"),
        (["--rate", "10", "--queue", REDIS, "--queue-name", "q", "--out", "x.jsonl"], "add --export"),
        (
            ["--rate", "10", "--queue", REDIS, "--queue-name", "q", "--export", "--out", "x", "--resume"],
            "--resume does not go with --queue",
        ),
    ],
)
def test_a_bad_fleet_flag_is_one_line_and_exit_two(args, message, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_args([API, *args])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "args",
    [
        ["--rate", "auto"],
        ["--rate", "AUTO"],
        ["--rate", "10", "--shared-limit", REDIS],
        ["--rate", "10", "--shared-limit", "rediss://cache.example:6380/3", "--limit-key", "api"],
        ["--rate", "10", "--queue", REDIS, "--queue-name", "q", "--export", "--claim-after", "2.5"],
    ],
)
def test_good_fleet_flags_are_accepted(args) -> None:
    parsed = parse_args([API, *args])
    assert parsed.rate in ("auto", 10.0)


@requires_redis
@pytest.mark.parametrize("flag", ["--shared-limit", "--queue"])
def test_a_redis_that_does_not_answer_is_exit_two_with_a_clear_message(flag, small_api) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    extra = ["--queue-name", "q"] if flag == "--queue" else []
    done = subprocess.run(
        [sys.executable, "-m", "course.fetch", small_api.url, "--rate", "100", flag, url, *extra, "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert url in done.stderr and "Traceback" not in done.stderr
