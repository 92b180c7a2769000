"""`python -m course.fetch`: one JSON line per item, a summary on stderr, an honest exit status."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from course.fetch import cli_retry_policy
from course.mockapi_control import MockAPIControl
from course.servers import start_mock_api


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


# -- hardening (issue 15, findings 9-12) -------------------------------------------------------------

WAIT = 120.0  # seconds a command may take before a test calls it hung (generous: the machine is shared)


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def served_ids(api: Any) -> set[int]:
    """The item ids the mock API answered (with their data) since its counters were last cleared."""
    return {int(item) for item in api.stats(detail=True)["served"]}


def wait_until(condition: Any, what: str, limit: float = WAIT) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"waited {limit:g} s for {what}"
        time.sleep(0.05)


async def run_fetch_async(*args: str) -> subprocess.CompletedProcess[str]:
    """``run_fetch`` for tests whose server runs in this process's event loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "course.fetch", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), WAIT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"course.fetch {' '.join(args)} did not finish in {WAIT:g} s") from None
    assert process.returncode is not None
    return subprocess.CompletedProcess(list(args), process.returncode, out.decode(), err.decode())


def items_app(ids: list[Any], answer: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.Application:
    """``GET /items`` lists ``ids``; ``GET /items/...`` is ``answer``."""

    async def listing(request: web.Request) -> web.Response:
        return web.json_response(ids)

    app = web.Application()
    app.router.add_get("/items", listing)
    app.router.add_get("/items/{id}", answer)
    return app


def one_line(stderr: str) -> bool:
    return len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


# Finding 9: Retry-After ------------------------------------------------------------------------


async def test_a_429_asking_to_wait_a_day_fails_its_item_and_the_rest_are_fetched(serve, tmp_path: Path) -> None:
    asked: Counter[str] = Counter()

    async def answer(request: web.Request) -> web.Response:
        item = request.match_info["id"]
        asked[item] += 1
        if item == "b":
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "86400"})
        return web.json_response({"id": item})

    url = await serve(items_app(["a", "b", "c"], answer))
    out = tmp_path / "items.jsonl"
    done = await run_fetch_async(url, "--rate", "100", "--workers", "2", "--out", str(out), "--quiet")
    assert done.returncode == 1, done.stderr
    by_id = {line["id"]: line for line in lines_of(out)}
    assert by_id["a"]["status"] == by_id["c"]["status"] == 200
    assert by_id["b"]["status"] == 429 and "86400 s is over max_retry_after=60 s" in by_id["b"]["error"]
    assert asked["b"] == 1  # not retried


async def test_a_503_asking_to_wait_a_day_stops_the_run_in_one_line_and_keeps_the_old_file(
    serve, tmp_path: Path
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"error": "down"}, status=503, headers={"Retry-After": "86400"})

    url = await serve(items_app(list(range(20)), answer))
    out = tmp_path / "items.jsonl"
    out.write_text('{"id": 0, "status": 200, "data": "from an earlier run"}\n')
    done = await run_fetch_async(url, "--rate", "100", "--workers", "4", "--out", str(out), "--quiet")
    assert done.returncode == 2
    assert one_line(done.stderr) and "unavailable (503)" in done.stderr and "86400 s" in done.stderr
    assert "--max-retry-after" in done.stderr
    assert out.read_text() == '{"id": 0, "status": 200, "data": "from an earlier run"}\n'
    assert os.listdir(tmp_path) == ["items.jsonl"]  # no temporary file left behind


async def test_a_run_stopped_by_an_outage_keeps_its_lines_apart_from_the_old_file(serve, tmp_path: Path) -> None:
    async def answer(request: web.Request) -> web.Response:
        if request.match_info["id"] == "c":
            return web.json_response({"error": "down"}, status=503, headers={"Retry-After": "86400"})
        return web.json_response({"id": request.match_info["id"]})

    url = await serve(items_app(["a", "b", "c", "d"], answer))
    out = tmp_path / "items.jsonl"
    out.write_text("an earlier run\n")
    done = await run_fetch_async(url, "--rate", "100", "--workers", "1", "--out", str(out), "--quiet")
    assert done.returncode == 2 and "unavailable (503)" in done.stderr
    assert out.read_text() == "an earlier run\n"
    kept = [tmp_path / name for name in os.listdir(tmp_path) if name != "items.jsonl"]
    assert len(kept) == 1 and str(kept[0]) in done.stderr
    assert [line["id"] for line in lines_of(kept[0])] == ["a", "b"]


async def test_max_retry_after_raises_the_cap(serve, tmp_path: Path) -> None:
    calls: Counter[str] = Counter()

    async def answer(request: web.Request) -> web.Response:
        item = request.match_info["id"]
        calls[item] += 1
        if calls[item] == 1:
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "2"})
        return web.json_response({"id": item})

    url = await serve(items_app(["a"], answer))
    refused = await run_fetch_async(url, "--rate", "100", "--max-retry-after", "1", "--quiet")
    assert refused.returncode == 1 and "max_retry_after=1 s" in refused.stdout
    waited = await run_fetch_async(url, "--rate", "100", "--max-retry-after", "2", "--quiet")
    assert waited.returncode == 0 and json.loads(waited.stdout)["data"] == {"id": "a"}


# Finding 10: the listing and the item URLs ----------------------------------------------------------


async def test_a_next_link_to_its_own_page_stops_the_run_instead_of_looping(serve, tmp_path: Path) -> None:
    pages = 0

    async def looping(request: web.Request) -> web.Response:
        nonlocal pages
        pages += 1  # after 50 pages the loop ends, so that a client that follows it finishes
        return web.json_response({"items": [7], "next": request.path_qs if pages < 50 else None})

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["id"]})

    app = web.Application()
    app.router.add_get("/items", looping)
    app.router.add_get("/items/{id}", answer)
    url = await serve(app)
    out = tmp_path / "items.jsonl"
    done = await run_fetch_async(url, "--rate", "1000", "--out", str(out), "--quiet")
    assert done.returncode == 2 and "the pages loop" in done.stderr
    assert pages == 1 and not out.exists()


async def test_listed_ids_reach_the_server_as_one_escaped_path_segment(serve, tmp_path: Path) -> None:
    paths: list[str] = []
    ids = ["../../_reset", "a/b", "50%", "x?y", "#frag", "caf\u00e9", 7]

    async def listing(request: web.Request) -> web.Response:
        return web.json_response(ids)

    async def anything(request: web.Request) -> web.Response:
        paths.append(request.raw_path)
        return web.json_response({"path": request.raw_path})

    app = web.Application()
    app.router.add_get("/items", listing)
    app.router.add_route("GET", "/{tail:.*}", anything)
    url = await serve(app)
    out = tmp_path / "items.jsonl"
    done = await run_fetch_async(url, "--rate", "1000", "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    assert sorted(paths) == sorted(f"/items/{quote(str(item), safe='')}" for item in ids)
    assert {line["id"] for line in lines_of(out)} == set(ids)


async def test_a_body_over_max_body_fails_its_item(serve, tmp_path: Path) -> None:
    async def answer(request: web.Request) -> web.Response:
        size = 2_000_000 if request.match_info["id"] == "big" else 10
        return web.json_response({"pad": "x" * size})

    url = await serve(items_app(["small", "big"], answer))
    out = tmp_path / "items.jsonl"
    done = await run_fetch_async(url, "--rate", "100", "--max-body", "1000000", "--out", str(out), "--quiet")
    assert done.returncode == 1
    by_id = {line["id"]: line for line in lines_of(out)}
    assert "data" in by_id["small"] and "error" in by_id["big"]


# Finding 11: signals, the output file, resuming, argument errors --------------------------------------


def test_sigterm_writes_every_answered_item_exits_143_and_resume_fetches_the_rest(small_api, tmp_path: Path) -> None:
    small_api.scenario({"latency": {"mean": 0.3}})
    out = tmp_path / "items.jsonl"
    command = [sys.executable, "-m", "course.fetch", small_api.url, "--rate", "40", "--workers", "8"]
    fetching = subprocess.Popen([*command, "--out", str(out), "--quiet"], stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: small_api.stats()["items"]["served"] >= 10, "10 items served")
        fetching.send_signal(signal.SIGTERM)
        _, err = fetching.communicate(timeout=WAIT)
    finally:
        if fetching.poll() is None:
            fetching.kill()
            fetching.wait()
    assert fetching.returncode == 143, err
    answered = served_ids(small_api)
    written = {line["id"] for line in lines_of(out) if line["status"] == 200}
    assert answered and written == answered
    assert len(answered) < 500 and "--resume" in err

    MockAPIControl(small_api.url).set_scenario({})  # fast again; the counters go on
    resumed = run_fetch(small_api.url, "--rate", "1000", "--workers", "16", "--out", str(out), "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(line["id"] for line in lines_of(out)) == list(range(500))
    assert small_api.stats()["items"]["max_per_item"] == 1  # nothing was fetched twice


def test_sigint_writes_every_answered_item_to_stdout_and_exits_130(small_api) -> None:
    small_api.scenario({"latency": {"mean": 0.3}})
    command = [sys.executable, "-m", "course.fetch", small_api.url, "--rate", "40", "--workers", "8", "--quiet"]
    fetching = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: small_api.stats()["items"]["served"] >= 10, "10 items served")
        fetching.send_signal(signal.SIGINT)
        out, err = fetching.communicate(timeout=WAIT)
    finally:
        if fetching.poll() is None:
            fetching.kill()
            fetching.wait()
    assert fetching.returncode == 130, err
    assert {json.loads(line)["id"] for line in out.splitlines()} == served_ids(small_api)
    assert "Traceback" not in err


def test_a_failed_listing_leaves_an_earlier_output_file_as_it_was(small_api, tmp_path: Path) -> None:
    out = tmp_path / "items.jsonl"
    earlier = "".join(json.dumps({"id": n, "status": 200, "data": {"n": n}}) + "\n" for n in range(1000))
    out.write_text(earlier)
    done = run_fetch(small_api.url + "/not-an-api", "--rate", "100", "--out", str(out), "--quiet")
    assert done.returncode == 2 and "Could not list" in done.stderr
    assert out.read_text() == earlier
    assert sorted(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_a_finished_run_replaces_the_output_file_whole(small_api, tmp_path: Path) -> None:
    small_api.scenario({})
    out = tmp_path / "items.jsonl"
    out.write_text("an earlier run's line\n" * 2000)
    done = run_fetch(small_api.url, "--rate", "2000", "--workers", "16", "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    assert sorted(line["id"] for line in lines_of(out)) == list(range(500))
    assert sorted(tmp_path.iterdir()) == [out]


def test_resume_fetches_only_the_missing_and_the_failed_items(small_api, tmp_path: Path) -> None:
    small_api.scenario({"error_rate": 0.3, "seed": 4})
    out = tmp_path / "items.jsonl"
    first = run_fetch(small_api.url, "--rate", "2000", "--workers", "16", "--retries", "0", "--out", str(out))
    assert first.returncode == 1
    lines = lines_of(out)
    failed = {line["id"] for line in lines if "error" in line}
    dropped = {line["id"] for line in lines if "error" not in line and line["id"] < 100}  # as if never fetched
    assert failed and dropped
    out.write_text("".join(json.dumps(line) + "\n" for line in lines if line["id"] not in dropped))

    small_api.scenario({})
    second = run_fetch(small_api.url, "--rate", "2000", "--workers", "16", "--out", str(out), "--resume", "--quiet")
    assert second.returncode == 0, second.stderr
    assert served_ids(small_api) == failed | dropped
    final = lines_of(out)
    assert sorted(line["id"] for line in final) == list(range(500))  # one line per item: the latest
    assert all(line["status"] == 200 for line in final)


def test_resume_cuts_an_unfinished_last_line_and_refuses_a_file_it_did_not_write(small_api, tmp_path: Path) -> None:
    small_api.scenario({})
    out = tmp_path / "items.jsonl"
    out.write_text(json.dumps({"id": 0, "status": 200, "data": {"email": "kept"}}) + '\n{"id": 1, "sta')
    done = run_fetch(small_api.url, "--rate", "2000", "--workers", "16", "--out", str(out), "--resume", "--quiet")
    assert done.returncode == 0, done.stderr
    final = lines_of(out)
    assert sorted(line["id"] for line in final) == list(range(500))
    assert final[0]["data"] == {"email": "kept"} and served_ids(small_api) == set(range(1, 500))

    for text in ("my notes\n", "my notes, with no newline at the end"):
        notes = tmp_path / "notes.txt"
        notes.write_text(text)
        refused = run_fetch(small_api.url, "--rate", "2000", "--out", str(notes), "--resume", "--quiet")
        assert refused.returncode == 2 and one_line(refused.stderr) and "refusing to resume" in refused.stderr
        assert notes.read_text() == text


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--retries", "-1"], "--retries"),
        (["--rate", "0"], "--rate"),
        (["--rate", "-5"], "--rate"),
        (["--rate", "nan"], "--rate"),
        (["--per", "inf"], "--per"),
        (["--timeout", "0"], "--timeout"),
        (["--workers", "0"], "--workers"),
        (["--per-page", "0"], "--per-page"),
        (["--max-body", "0"], "--max-body"),
        (["--max-retry-after", "-1"], "--max-retry-after"),
        (["--out", "{tmp}/missing/items.jsonl"], "does not exist"),
        (["--out", "{tmp}/a-file/items.jsonl"], "is not a folder"),
        (["--out", "{tmp}"], "is a folder"),
        (["--resume"], "--resume needs --out"),
        (["--url", "ftp://127.0.0.1:9"], "http:// or https://"),
        (["--url", "127.0.0.1:9"], "http:// or https://"),
        (["--url", "http://"], "http:// or https://"),
        (["--url", "http://127.0.0.1:99999"], "invalid port"),
    ],
)
def test_bad_arguments_exit_two_with_one_line(args: list[str], complaint: str, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    base = "http://127.0.0.1:9"  # nothing listens there: arguments are checked before any request
    if args[0] == "--url":
        base, args = args[1], []
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    done = run_fetch(base, "--rate", "10", *args, "--quiet", timeout=60)
    assert done.returncode == 2, done.stderr
    assert one_line(done.stderr) and complaint in done.stderr, done.stderr


# Finding 12: a retry budget that outlasts a short restart ---------------------------------------------


def test_the_retry_budget_spans_a_server_restart() -> None:
    least, most = cli_retry_policy().total_wait()
    assert least >= 10.0 and most <= 60.0


@pytest.mark.slow
def test_a_server_restart_of_two_seconds_costs_no_item(tmp_path: Path) -> None:
    api = start_mock_api(port=None, items=300)
    port = api.port
    out = tmp_path / "items.jsonl"
    command = [sys.executable, "-m", "course.fetch", api.url, "--rate", "100", "--workers", "8", "--out", str(out)]
    fetching = subprocess.Popen([*command, "--quiet"], stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: MockAPIControl(api.url).stats()["items"]["served"] >= 50, "50 items served")
        api.stop()  # connections refused from now on
        time.sleep(2.0)
        api = start_mock_api(port=port, items=300)
        _, err = fetching.communicate(timeout=WAIT)
    finally:
        if fetching.poll() is None:
            fetching.kill()
            fetching.wait()
        api.stop()
    assert fetching.returncode == 0, err
    lines = lines_of(out)
    assert sorted(line["id"] for line in lines) == list(range(300))
    assert all(line["status"] == 200 for line in lines)
