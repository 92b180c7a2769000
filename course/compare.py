"""Run one workload through six clients against the same mock-server scenario.

=====  ================================================================
``a``  one coroutine per request + ``throttler.Throttler`` + tenacity
``b``  one coroutine per request + ``aiolimiter.AsyncLimiter`` + tenacity
``c``  ``aiometer.run_on_each`` (max_per_second, max_at_once) + tenacity
``d``  our ``WorkerPool`` (RateLimiter, Gate, error policies)
``e``  bare aiohttp + ``asyncio.Semaphore``: no limit, no retries -- the speed
       baseline, run against the scenario *without* its rate limit
``f``  the same bare loop with each request started at its slot of an even
       schedule at R (a plain ``asyncio.sleep``; no window accounting, no
       retries) -- the CPU baseline for a client that keeps to a rate, also
       run without the server's rate limit
=====  ================================================================

Why two baselines: flat out, (e) finds dozens of answers waiting each time
the event loop looks, so its per-request costs (a wake-up, a system call)
are shared. A client held to R sends requests one by one, a 1/R apart, and
pays them for each request -- about twice the CPU per request at a few
hundred requests per second, whoever does the pacing. ``cpu_vs_bare``
compares with (e): what keeping to a rate costs in all. ``cpu_vs_paced``
compares with (f): what a client's machinery costs beyond the pacing itself.

Before each client the scenario is put back (its clock restarts) and the
server's counters are reset; afterwards the server's own ``/_stats`` says
how many requests arrived, how many were 429, and when. The achieved rate is
measured from the server's arrival times: (items served - 1) / (last
arrival - first arrival) (``course.timeline.achieved_rate``).

    >>> rows = await compare(api.url, items=range(1500), rate=500)
    >>> print(format_table(rows))
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import aiohttp
import aiometer
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt
from throttler import Throttler

from course.client import RETRY_ON, RetryableStatus, fetch_each, send_request, wait_retry_after
from course.limiters import RateLimiter
from course.mockapi_control import AsyncMockAPIControl
from course.records import Outcome, Request, Result
from course.timeline import achieved_rate
from course.workers import WorkerPool, new_session

__all__ = [
    "APPROACHES",
    "ComparisonRow",
    "compare",
    "format_table",
    "relative_cpu",
    "run_bare_paced",
    "run_worker_pool",
    "to_frame",
]

Runner = Callable[[str, Sequence[Any], float, float, int], Awaitable[int]]


@dataclass(frozen=True)
class ComparisonRow:
    """One client's run: what it achieved, as the server saw it."""

    approach: str
    label: str
    items: int
    fetched: int
    failed: int
    seconds: float
    requests: int
    status_429: int
    achieved_rate: float  # items per second, from the server's arrival times
    rate_ratio: float | None  # achieved / configured rate (None when unlimited)
    cpu_per_request_us: float
    cpu_vs_bare: float | None = None  # against (e), the unpaced bare loop
    cpu_vs_paced: float | None = None  # against (f), the bare loop paced at R


def _counting() -> tuple[list[int], Callable[[Outcome], None]]:
    counts = [0]

    def count(outcome: Outcome) -> None:
        if isinstance(outcome, Result):
            counts[0] += 1

    return counts, count


async def _coroutines(limiter: Any, url: str, items: Sequence[Any], workers: int) -> int:
    counts, count = _counting()
    await fetch_each(items, url + "/items/{item}", limiter=limiter, connections=workers, on_outcome=count)
    return counts[0]


async def run_throttler(url: str, items: Sequence[Any], rate: float, per: float, workers: int) -> int:
    return await _coroutines(Throttler(rate_limit=int(rate), period=per), url, items, workers)


async def run_aiolimiter(url: str, items: Sequence[Any], rate: float, per: float, workers: int) -> int:
    return await _coroutines(AsyncLimiter(rate, per), url, items, workers)


async def run_aiometer(url: str, items: Sequence[Any], rate: float, per: float, workers: int) -> int:
    counts = [0]
    async with new_session(workers, 30.0) as session:

        async def one(item: Any) -> None:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(6), wait=wait_retry_after, retry=retry_if_exception_type(RETRY_ON), reraise=True
            ):
                with attempt:
                    response = await send_request(session, Request(f"{url}/items/{item}"))
                    if response.status == 429 or response.status >= 500:
                        raise RetryableStatus(response)
            response.json()
            counts[0] += 1

        # aiometer stops at the first exception; the count says how far it got
        with contextlib.suppress(TimeoutError, RetryableStatus, aiohttp.ClientError):
            await aiometer.run_on_each(one, items, max_at_once=workers, max_per_second=rate / per)
    return counts[0]


async def run_worker_pool(url: str, items: Sequence[Any], rate: float, per: float, workers: int) -> int:
    async with WorkerPool(url + "/items/{item}", limiter=RateLimiter(rate, per), workers=workers) as pool:
        report = await pool.run(items, on_outcome=lambda outcome: None)
    return report.succeeded


async def run_bare(url: str, items: Sequence[Any], rate: float, per: float, workers: int) -> int:
    semaphore = asyncio.Semaphore(workers)
    async with new_session(workers, 30.0) as session:

        async def one(item: Any) -> int:
            async with semaphore, session.get(f"{url}/items/{item}") as response:
                await response.json()
                return 1 if response.status == 200 else 0

        return sum(await asyncio.gather(*(one(item) for item in items)))


async def run_bare_paced(url: str, items: Sequence[Any], rate: float, per: float, workers: int) -> int:
    """The bare loop, each request started at its slot ``start + i / rate`` (0.5 % under ``rate``)."""
    if rate <= 0 or per <= 0:
        raise ValueError(f"a paced loop needs rate > 0 and per > 0, got rate={rate}, per={per}")
    interval = per / (rate * 0.995)  # the same margin as RateLimiter's default
    semaphore = asyncio.Semaphore(workers)
    async with new_session(workers, 30.0) as session:
        start = time.monotonic()

        async def one(index: int, item: Any) -> int:
            delay = start + index * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            async with semaphore, session.get(f"{url}/items/{item}") as response:
                await response.json()
                return 1 if response.status == 200 else 0

        return sum(await asyncio.gather(*(one(index, item) for index, item in enumerate(items))))


APPROACHES: dict[str, tuple[str, Runner]] = {
    "a": ("coroutines + throttler", run_throttler),
    "b": ("coroutines + aiolimiter", run_aiolimiter),
    "c": ("aiometer", run_aiometer),
    "d": ("worker pool (ours)", run_worker_pool),
    "e": ("bare aiohttp + semaphore", run_bare),
    "f": ("bare loop, paced at R", run_bare_paced),
}
UNLIMITED = frozenset("ef")  # baselines: run without the server's rate limit


async def compare(
    api_url: str,
    items: Sequence[Any],
    rate: float,
    *,
    per: float = 1.0,
    workers: int = 64,
    approaches: str = "abcdef",
    scenario: Mapping[str, Any] | None = None,
    bare_items: Sequence[Any] | None = None,
) -> list[ComparisonRow]:
    """Run each approach in turn on ``items``; return one row per approach.

    ``scenario`` defaults to a strict rate limit of ``rate`` per ``per`` s.
    ``bare_items`` (default ``items``) is the workload of the bare baseline.
    The baselines (e) and (f) run against the scenario without its rate limit.
    """
    unknown = set(approaches) - set(APPROACHES)
    if unknown:
        raise ValueError(f"unknown approaches {sorted(unknown)}; choose from {sorted(APPROACHES)}")
    chosen = dict(scenario) if scenario is not None else {"rate_limit": {"requests": int(rate), "per": per}}
    unlimited = {key: value for key, value in chosen.items() if key != "rate_limit"}
    rows: list[ComparisonRow] = []
    async with aiohttp.ClientSession() as session:
        control = AsyncMockAPIControl(api_url, session)
        for key in approaches:
            label, runner = APPROACHES[key]
            workload = bare_items if key == "e" and bare_items is not None else items
            await control.use(unlimited if key in UNLIMITED else chosen)
            cpu, wall = time.process_time(), time.perf_counter()
            fetched = await runner(api_url, workload, rate, per, workers)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            stats = await control.stats(detail=True)
            rows.append(_row(key, label, len(workload), fetched, wall, cpu, stats, None if key == "e" else rate / per))
    return relative_cpu(rows)


def relative_cpu(rows: Sequence[ComparisonRow]) -> list[ComparisonRow]:
    """The rows with ``cpu_vs_bare`` (against e) and ``cpu_vs_paced`` (against f) filled in where possible."""
    by_key = {row.approach: row.cpu_per_request_us for row in rows}
    bare, paced = by_key.get("e", 0.0), by_key.get("f", 0.0)
    return [
        replace(
            row,
            cpu_vs_bare=row.cpu_per_request_us / bare if bare > 0 else None,
            cpu_vs_paced=row.cpu_per_request_us / paced if paced > 0 else None,
        )
        for row in rows
    ]


def _row(
    key: str, label: str, n: int, fetched: int, wall: float, cpu: float, stats: dict[str, Any], rate: float | None
) -> ComparisonRow:
    achieved = achieved_rate(stats)
    requests = stats["requests"]
    return ComparisonRow(
        approach=key,
        label=label,
        items=n,
        fetched=fetched,
        failed=n - fetched,
        seconds=wall,
        requests=requests,
        status_429=stats["by_status"].get("429", 0),
        achieved_rate=achieved,
        rate_ratio=None if rate is None else achieved / rate,
        cpu_per_request_us=cpu / max(1, requests) * 1e6,
    )


def format_table(rows: Sequence[ComparisonRow]) -> str:
    """A plain-text table of the rows (for a notebook or a terminal)."""
    header = (
        f"{'':2}{'client':<26}{'fetched':>9}{'429s':>7}{'rate/R':>8}{'s':>7}{'CPU us/req':>11}"
        f"{'vs e':>7}{'vs f':>7}"
    )
    lines = [header]
    for row in rows:
        ratio = "-" if row.rate_ratio is None else f"{row.rate_ratio:.3f}"
        vs_bare = "-" if row.cpu_vs_bare is None else f"{row.cpu_vs_bare:.2f}"
        vs_paced = "-" if row.cpu_vs_paced is None else f"{row.cpu_vs_paced:.2f}"
        lines.append(
            f"{row.approach:2}{row.label:<26}{row.fetched:>9}{row.status_429:>7}{ratio:>8}"
            f"{row.seconds:>7.1f}{row.cpu_per_request_us:>11.0f}{vs_bare:>7}{vs_paced:>7}"
        )
    return "\n".join(lines)


def to_frame(rows: Sequence[ComparisonRow]) -> Any:
    """The rows as a pandas DataFrame (for plotting)."""
    import pandas as pd

    return pd.DataFrame([asdict(row) for row in rows]).set_index("approach")
