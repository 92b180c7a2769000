"""course.servers starts, finds again, reuses and stops the mock API as a real process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from course.servers import ServerHandle, ServerStartError, free_port, start_mock_api

ROOT = Path(__file__).resolve().parents[2]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _refuses(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5)
    except urllib.error.URLError as exc:
        return isinstance(exc.reason, ConnectionRefusedError)
    return False


@pytest.fixture
def api() -> Iterator[ServerHandle]:
    handle = start_mock_api(port=None, items=50, seed=2)
    yield handle
    handle.stop()


def test_starts_on_a_free_port_and_answers(api):
    assert api.owned and api.running and api.port != 8080
    info = _get(api.url + "/_info")
    assert (info["server"], info["items"], info["seed"]) == ("mockapi", 50, 2)
    assert info["pid"] == api.process.pid
    assert api.info["pid"] == api.process.pid


def test_second_start_in_the_same_process_returns_the_same_server(api):
    assert start_mock_api(port=api.port, items=50, seed=2) is api


def test_second_start_applies_its_scenario_and_resets_the_counters(api):
    start_mock_api(port=api.port, items=50, seed=2, scenario={"error_rate": 1.0})
    assert _get(api.url + "/_scenario")["error_rate"] == 1.0
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(api.url + "/items/1", timeout=10)
    start_mock_api(port=api.port, items=50, seed=2)  # back to no faults, counters cleared
    assert _get(api.url + "/_scenario")["error_rate"] == 0.0
    assert _get(api.url + "/_stats")["requests"] == 0


def test_a_scenario_given_at_start_is_in_force(tmp_path):
    handle = start_mock_api(port=None, items=5, scenario={"rate_limit": {"requests": 7, "per": 2.0}})
    try:
        assert _get(handle.url + "/_scenario")["rate_limit"] == {"requests": 7, "per": 2.0, "headers": False}
    finally:
        handle.stop()


def test_reuses_a_server_started_elsewhere_and_leaves_it_running():
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    outside = subprocess.Popen(
        [sys.executable, "-m", "server.mockapi", "--port", str(port), "--items", "30"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(f"http://127.0.0.1:{port}/_info")
                break
            except OSError:
                assert time.monotonic() < deadline and outside.poll() is None, "outside server did not start"
                time.sleep(0.1)
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
        handle = start_mock_api(port=port, items=30, scenario={"drop_rate": 1.0})
        assert not handle.owned and handle.running  # asks a control route: never dropped...
        assert _get(handle.url + "/_stats")["requests"] == 0  # ...nor counted; and reset on reuse
        assert _get(handle.url + "/_scenario")["drop_rate"] == 1.0
        assert handle.info["pid"] == outside.pid
        handle.stop()
        assert outside.poll() is None and handle.running  # not ours to stop
    finally:
        outside.terminate()
        outside.wait(10)


def test_mismatched_items_is_a_start_error(api):
    with pytest.raises(ServerStartError, match="items=50, seed=2, not items=1000, seed=2"):
        start_mock_api(port=api.port, items=1000, seed=2)


def test_mismatched_seed_is_a_start_error(api):
    with pytest.raises(ServerStartError, match="port=None"):
        start_mock_api(port=api.port, items=50, seed=3)


def test_server_that_crashes_on_start_reports_its_output():
    with pytest.raises(ServerStartError) as info:
        start_mock_api(port=None, scenario={"error_rate": 7})
    message = str(info.value)
    assert "exited with code 2" in message
    assert "error_rate must be >= 0 and <= 1" in message  # the server's own words


def test_stop_really_stops(api):
    url = api.url
    api.stop(timeout=60)  # generous, so a busy machine does not turn SIGTERM into SIGKILL
    assert not api.running and api.process.returncode == 0, api.output()
    assert _refuses(url + "/_info")
    api.stop()  # stopping twice is harmless


def test_stopped_port_can_be_started_again(api):
    port = api.port
    api.stop()
    again = start_mock_api(port=port, items=50, seed=2)
    try:
        assert again is not api and again.running and again.port == port
    finally:
        again.stop()


def test_port_taken_by_something_else_is_a_clear_error():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(ServerStartError, match=f"Port {port} .* is taken by something that is not a mock API"):
            start_mock_api(port=port)


def test_server_exits_with_a_message_when_its_port_is_taken():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "server.mockapi", "--port", str(port)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert "address already in use" in done.stderr.lower()


def test_messaging_app_keeps_its_database_in_the_folder_it_is_given(tmp_path):
    from course.servers import start_messaging_app

    handle = start_messaging_app(port=None, folder=tmp_path, reuse=False)
    try:
        assert (tmp_path / "messaging.db").is_file(), "the app's SQLite file belongs in folder/"
    finally:
        handle.stop()
    assert not handle.running


def test_a_scenario_the_server_refuses_is_a_start_error(api):
    with pytest.raises(ServerStartError, match=r"refused its set-up: .*error_rate"):
        start_mock_api(port=api.port, items=50, seed=2, scenario={"error_rate": -1})
    start_mock_api(port=api.port, items=50, seed=2)  # the server itself is fine


def test_a_server_started_from_a_short_lived_thread_outlives_the_thread():
    # Linux's parent-death signal is tied to the thread that forked: a check()
    # runs in a worker thread, and its server must survive that thread.
    started: list[ServerHandle] = []
    thread = threading.Thread(target=lambda: started.append(start_mock_api(port=None, items=10)))
    thread.start()
    thread.join()
    handle = started[0]
    try:
        time.sleep(1.0)
        assert handle.running, "the server died with the thread that started it"
        with urllib.request.urlopen(handle.url + "/items/3", timeout=5) as response:
            assert response.status == 200
    finally:
        handle.stop()
