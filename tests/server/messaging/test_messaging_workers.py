"""``python -m server.messaging --workers N``: gunicorn, N processes, PostgreSQL only."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from messaging_helpers import LIVE_CONFIG, WebUser, start_app_workers

from course.postgres_server import PostgreSQLServer
from course.servers import ServerHandle

ROOT = Path(__file__).resolve().parents[3]
SLOW_RECHECK = {"NOTIFY_RECHECK_SECONDS": "30", "SSE_HEARTBEAT_SECONDS": "30"}


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.messaging", *args],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


StartWorkers = Callable[..., ServerHandle]


@pytest.fixture
def start_workers(tmp_path: Path) -> Iterator[StartWorkers]:
    """``start_workers(database_url, workers=2, **settings)`` -> a gunicorn-served app."""
    started: list[ServerHandle] = []

    def start(database_url: str, workers: int = 2, **settings: str) -> ServerHandle:
        handle = start_app_workers(database_url, tmp_path / f"instance-{len(started)}", workers, **settings)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop(timeout=15)


@pytest.fixture
def pg_database(postgresql: PostgreSQLServer) -> Iterator[str]:
    name = f"workers_{uuid.uuid4().hex[:12]}"
    yield postgresql.create_database(name)
    postgresql.drop_database(name)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("workers", ["2", "8"])
def test_more_than_one_worker_on_sqlite_is_refused_in_one_line(tmp_path, workers):
    result = run_cli("--port", "0", "--workers", workers, MESSAGING_INSTANCE_PATH=str(tmp_path))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert f"--workers {workers} needs PostgreSQL" in line and "DATABASE_URL" in line
    assert not (tmp_path / "messaging.db").exists(), "refused before touching the database"


@pytest.mark.parametrize("workers", ["0", "65", "two"])
def test_a_worker_count_out_of_range_is_exit_2(tmp_path, workers):
    result = run_cli("--port", "0", "--workers", workers, MESSAGING_INSTANCE_PATH=str(tmp_path))
    assert result.returncode == 2
    assert "--workers" in result.stderr and "Traceback" not in result.stderr


def test_two_workers_on_postgresql_are_two_processes_serving_one_app(start_workers, pg_database):
    server = start_workers(pg_database, workers=2, **LIVE_CONFIG)
    assert server.process is not None
    deadline = time.monotonic() + 30  # the first worker may answer before the second is forked
    while len(children(server.process.pid)) < 2:
        assert time.monotonic() < deadline, f"gunicorn forked {children(server.process.pid)} only"
        time.sleep(0.1)
    assert len(children(server.process.pid)) == 2
    bob = WebUser(server.url, "bob").register_and_login()
    alice = WebUser(server.url, "alice").register_and_login()
    assert alice.send("bob", "hello").status_code == 302
    [note] = bob.get("/notifications?after=0").json()
    assert (note["name"], note["data"]) == ("unread_message_count", 1)


def test_a_stream_served_by_gunicorn_hears_a_send_through_another_gunicorn(start_workers, pg_database):
    """Every process of both servers LISTENs; the stream is answered well within the re-check."""
    first = start_workers(pg_database, **{**LIVE_CONFIG, **SLOW_RECHECK})
    second = start_workers(pg_database, **{**LIVE_CONFIG, **SLOW_RECHECK})
    bob = WebUser(first.url, "bob").register_and_login()
    alice = WebUser(second.url, "alice").register_and_login()
    heard: list[str] = []
    opened = threading.Event()

    def read() -> None:
        try:
            with bob.get("/notifications/stream?after=0", stream=True, timeout=(5, 5)) as response:
                for line in response.iter_lines(decode_unicode=True):
                    opened.set()
                    if line.startswith("data: "):
                        heard.append(line)
                        return
        except requests.exceptions.ConnectionError:
            pass
        finally:
            opened.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(15)
    assert alice.send("bob", "hello").status_code == 302
    reader.join(30)
    assert len(heard) == 1 and '"unread_message_count"' in heard[0]
