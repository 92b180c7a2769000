"""``python -m server.mockapi`` as a real process: one-line errors with exit 2, loopback by default.

Each test runs the module in a subprocess with this checkout on PYTHONPATH.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def _run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.mockapi", *args], env=ENV, capture_output=True, text=True, timeout=60
    )


def _assert_one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("python -m server.mockapi: error: "), lines[0]
    assert len(lines[0]) < 400, lines[0]
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--port", "99999"], ["--port", "0 to 65535", "99999"]),
        (["--port", "-1"], ["--port", "0 to 65535"]),
        (["--port", "eighty"], ["--port", "'eighty'"]),
        (["--port", "9" * 5000], ["--port", "5000 characters"]),
        (["--items", "-1"], ["--items", "0 to 1000000"]),
        (["--items", "99999999999999999999"], ["--items", "0 to 1000000"]),
        (["--items", "1000001"], ["--items", "0 to 1000000"]),
        (["--seed", "1.5"], ["--seed"]),
        (["--bogus"], ["unrecognized arguments: --bogus"]),
        (["--port"], ["--port", "expected one argument"]),
        (["--scenario", "{bad"], ["--scenario", "not valid JSON"]),
        (["--scenario", '{"x": 1}'], ["--scenario", "unknown key(s) ['x']"]),
        (["--scenario", '{"outages": [{"start": 0, "duration": 1, "retry_after": 86401}]}'], ["retry_after"]),
        (["--scenario", '{"seed": 1, "seed": 1}'], ["twice"]),
        (["--scenario", "[" * 10_000 + "]" * 10_000], ["more than 32 levels deep"]),
        (["--scenario", '{"seed": ' + "1" * 5000 + "}"], ["seed must be an integer"]),
        (["--host", "a" * 300, "--port", "0"], ["cannot listen on"]),
    ],
)
def test_a_bad_argument_is_one_line_on_stderr_and_exit_2(args, words):
    _assert_one_line_error(_run(args), *words)


def test_a_missing_scenario_file_is_one_line_and_exit_2(tmp_path):
    _assert_one_line_error(_run(["--scenario", f"@{tmp_path / 'missing.json'}"]), "missing.json", "No such file")


def test_a_scenario_directory_is_one_line_and_exit_2(tmp_path):
    _assert_one_line_error(_run(["--scenario", f"@{tmp_path}"]), "Is a directory")


@pytest.mark.parametrize(
    "content, words",
    [
        (b"{not json", ["not valid JSON"]),
        (b'{"error_rate": "high"}', ["error_rate must be a number"]),
        (b'{"seed": 1, "x": "\xff"}', ["not UTF-8"]),
        (b"[" * 100_000 + b"]" * 100_000, ["more than 32 levels deep"]),
        (b" " * (1_048_576 + 1), ["at most 1048576"]),
    ],
)
def test_a_bad_scenario_file_is_one_line_and_exit_2(tmp_path, content, words):
    path = tmp_path / "scenario.json"
    path.write_bytes(content)
    _assert_one_line_error(_run(["--scenario", f"@{path}"]), *words)


def test_a_port_in_use_is_one_line_and_exit_2():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        done = _run(["--port", str(squatter.getsockname()[1])])
    _assert_one_line_error(done, "cannot listen on 127.0.0.1:", "address already in use")


# -- a running server ---------------------------------------------------------------


@contextmanager
def _server(args: Sequence[str], tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, str]]:
    """Run the server, wait for its ``serving on`` line; yield (process, log path, URL); SIGTERM it after."""
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.mockapi", *args], env=ENV, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60  # generous: the machine may be busy
        while "serving on " not in log_path.read_text():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        url = log_path.read_text().split("serving on ", 1)[1].split()[0]
        yield process, log_path, url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def test_it_binds_to_loopback_by_default_without_a_warning(tmp_path):
    with _server(["--port", "0", "--items", "5"], tmp_path) as (_, log_path, url):
        assert url.startswith("http://127.0.0.1:"), url
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass
    assert "WARNING" not in log_path.read_text()


def test_it_warns_when_bound_beyond_loopback(tmp_path):
    with _server(["--host", "0.0.0.0", "--port", "0", "--items", "5"], tmp_path):
        pass
    output = (tmp_path / "server.log").read_text()
    assert "WARNING" in output and "not loopback" in output and "no authentication" in output, output


def test_a_request_aiohttp_cannot_parse_is_one_warning_line_not_a_traceback(tmp_path):
    with _server(["--port", "0", "--items", "5"], tmp_path) as (_, log_path, url):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /items?" + b"a=1&" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.") and answer.split()[1] == b"400", answer[:200]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # still serving
            sock.sendall(b"GET /items/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert sock.recv(4096).split()[1] == b"200"
    output = log_path.read_text()
    assert "Traceback" not in output, output
    [line] = [line for line in output.splitlines() if "could not parse" in line]
    assert "WARNING" in line and "LineTooLong" in line and len(line) < 400, line
