"""The buggy throttled queue of notebook 06 really has the defects its exercise's answer names.

The code is taken from the notebook cell itself, so the answer key and the
code the learner reads cannot drift apart. Each test removes the defects
before the one it demonstrates, as a learner fixing them in order would.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import types
import warnings
from pathlib import Path
from typing import Any

import aiohttp
import nbformat
import pytest

from course.exercises.lesson06 import DEFECTS

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "06_workers_and_queues.ipynb"

FIX_LOOP = ("super().__init__(maxsize, loop=loop)", "super().__init__(maxsize)")
FIX_LOCK = [
    ("self.wait_for_slot = asyncio.Lock()", "self._lock = asyncio.Lock()"),
    ("async with self.wait_for_slot:", "async with self._lock:"),
]
FIX_CLOCK = ("time.monotonic_ns()", "time.monotonic()")


def _cell_source() -> str:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code" and c.source.startswith("class LeakyThrottledQueue")]
    assert len(cells) == 1, "notebook 06 should have exactly one LeakyThrottledQueue cell"
    return cells[0]


def _load(*fixes: tuple[str, str], url: str = "http://127.0.0.1:9") -> dict[str, Any]:
    source = _cell_source()
    for old, new in fixes:
        assert old in source, f"the notebook's buggy code changed: {old!r} not found"
        source = source.replace(old, new)
    namespace: dict[str, Any] = {
        "asyncio": asyncio, "time": time, "aiohttp": aiohttp, "logging": logging,
        "api": types.SimpleNamespace(url=url),
    }
    exec(compile(source, "<notebook 06 cell>", "exec"), namespace)
    return namespace


def test_the_answer_key_names_six_defects() -> None:
    assert len(DEFECTS) == 6


def test_loop_argument_fails_on_creation() -> None:
    with pytest.raises(TypeError, match="loop"):
        _load()["LeakyThrottledQueue"](rate=100)


async def test_lock_stored_under_the_method_name_breaks_get() -> None:
    queue = _load(FIX_LOOP)["LeakyThrottledQueue"](rate=100)
    assert isinstance(queue.wait_for_slot, asyncio.Lock)  # the method is hidden
    await queue.put(1)
    with pytest.raises(TypeError, match="not callable"):
        await asyncio.wait_for(queue.get(), timeout=10)


async def test_nanosecond_timestamp_makes_the_first_get_wait_for_ages() -> None:
    queue = _load(FIX_LOOP, *FIX_LOCK)["LeakyThrottledQueue"](rate=100)
    await queue.put(1)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(queue.get(), timeout=1.0)
    fixed = _load(FIX_LOOP, *FIX_LOCK, FIX_CLOCK)["LeakyThrottledQueue"](rate=100)
    await fixed.put(1)
    assert await asyncio.wait_for(fixed.get(), timeout=30) == 1


async def test_failed_item_is_dropped_and_the_handler_never_runs(mock_api, caplog) -> None:
    mock_api.scenario({"error_rate": 1.0})  # every request answers 500
    ns = _load(FIX_LOOP, *FIX_LOCK, FIX_CLOCK, url=mock_api.url)
    queue: asyncio.Queue = asyncio.Queue()
    for item in (1, None):
        queue.put_nowait(item)
    results: list[Any] = []
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, "lesson06"):
        warnings.simplefilter("always")
        async with aiohttp.ClientSession() as session:
            await asyncio.wait_for(ns["leaky_worker"](queue, session, results), timeout=30)
        gc.collect()
    assert results == [] and queue.empty()  # item 1 failed and is gone: not retried, not kept
    assert mock_api.stats()["requests"] == 1
    assert any("never awaited" in str(w.message) for w in caught)
    assert not caplog.records  # report_error's log line never happened


async def test_handler_uses_a_response_that_does_not_exist_when_the_connection_failed(mock_api) -> None:
    mock_api.scenario({"drop_rate": 1.0})  # every connection closes without an answer
    ns = _load(FIX_LOOP, *FIX_LOCK, FIX_CLOCK, url=mock_api.url)
    queue: asyncio.Queue = asyncio.Queue()
    for item in (1, None):
        queue.put_nowait(item)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(UnboundLocalError, match="response"):
            await asyncio.wait_for(ns["leaky_worker"](queue, session, []), timeout=30)
