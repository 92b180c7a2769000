"""``python -m server.push``: every bad argument or setting is a one-line error and exit 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from push_helpers import SECRET_KEY

from server.push.settings import NOTIFY_CHANNEL

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.timeout(120)


def run(args: list[str], **env: str | None) -> subprocess.CompletedProcess[str]:
    child_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "ALLOWED_ORIGINS")}
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), child_env.get("PYTHONPATH", "")] if p)
    child_env.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run(
        [sys.executable, "-m", "server.push", *args],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    assert done.returncode == status, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("python -m server.push: error: ")
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--port", "abc"], ["--port", "whole number"]),
        (["--port", "70000"], ["--port", "out of range"]),
        (["--workers", "0"], ["--workers"]),
        (["--workers", "65"], ["--workers"]),
        (["--max-connections", "0"], ["--max-connections"]),
        (["--max-per-user", "-1"], ["--max-per-user"]),
        (["--heartbeat", "nan"], ["--heartbeat"]),
        (["--heartbeat", "0"], ["--heartbeat"]),
        (["--recheck", "inf"], ["--recheck"]),
        (["--retry-ms", "x"], ["--retry-ms"]),
        (["--shutdown-grace", "-1"], ["--shutdown-grace"]),
        (["--pool-size", "0"], ["--pool-size"]),
        (["--allow-origin", "ftp://example.com"], ["origin"]),
        (["--allow-origin", "http://example.com/page"], ["origin"]),
        (["--allow-origin", "http://example.com:99999"], ["origin"]),
        (["--host", ""], ["--host"]),
        (["--no-such-option"], ["--no-such-option"]),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, words, database_url):
    assert_one_line_error(run(args, DATABASE_URL=database_url, SECRET_KEY=SECRET_KEY), 2, *words)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"DATABASE_URL": None}, ["DATABASE_URL is not set"]),
        ({"DATABASE_URL": "sqlite:///messaging.db"}, ["PostgreSQL", "sqlite"]),
        ({"DATABASE_URL": "mysql://u:p@127.0.0.1/db"}, ["PostgreSQL"]),
        ({"DATABASE_URL": "not a url at all"}, ["DATABASE_URL"]),
        ({"SECRET_KEY": None}, ["SECRET_KEY is not set"]),
        ({"SECRET_KEY": "  "}, ["SECRET_KEY is not set"]),
        ({"ALLOWED_ORIGINS": "http://ok.example, javascript:alert(1)"}, ["origin"]),
    ],
)
def test_bad_settings_exit_2_with_one_line(env, words, database_url):
    settings: dict[str, str | None] = {"DATABASE_URL": database_url, "SECRET_KEY": SECRET_KEY, **env}
    assert_one_line_error(run(["--port", "0"], **settings), 2, *words)


def test_a_port_in_use_exits_2(database_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(["--port", str(port)], DATABASE_URL=database_url, SECRET_KEY=SECRET_KEY)
    assert_one_line_error(done, 2, "in use")


def test_a_database_without_the_app_s_tables_or_not_answering_exits_1(postgresql):
    name = f"empty_{uuid.uuid4().hex[:8]}"
    empty = postgresql.create_database(name)
    try:
        assert_one_line_error(run(["--port", "0"], DATABASE_URL=empty, SECRET_KEY=SECRET_KEY), 1, "no messaging tables")
    finally:
        postgresql.drop_database(name)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: connections are refused
        nobody = f"postgresql+psycopg://u:p@127.0.0.1:{port}/db"
        done = run(["--port", "0"], DATABASE_URL=nobody, SECRET_KEY=SECRET_KEY)
    assert_one_line_error(done, 1, "cannot use the database")


def test_help_exits_0():
    done = run(["--help"])
    assert done.returncode == 0
    assert "--max-connections" in done.stdout and "--allow-origin" in done.stdout


def test_the_channel_is_the_one_the_app_notifies():
    hub = pytest.importorskip("server.messaging.hub")
    if not hasattr(hub, "NOTIFY_CHANNEL"):
        pytest.skip("server.messaging.hub has no NOTIFY_CHANNEL yet (the app-side change of PUSH-CONTRACT.md)")
    assert hub.NOTIFY_CHANNEL == NOTIFY_CHANNEL
