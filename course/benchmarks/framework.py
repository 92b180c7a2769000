"""Benchmark of the client framework: ``python -m course.bench`` (``course.benchmarks.framework``).

Prints three tables, against one mock-API process started for the run:

1. per rate R in {100, 500, 2000}/s (a strict sliding-window limit of R on
   the server): for each client of ``course.compare`` the achieved rate / R
   (from the server's arrival times), the number of 429s, and client CPU per
   request relative to the two bare aiohttp + semaphore loops on the same
   items: (e) flat out and (f) paced at R. Then the CPU per request of the
   worker pool against (f), the median of alternated runs;
2. the framework's own overhead: CPU per request of the worker pool with no
   limiter next to the bare loop, both at full speed on the same items;
3. peak client memory for 1k / 10k / 100k items, one coroutine per request
   against the worker pool: traced Python allocations (tracemalloc) and
   process RSS (memory_profiler), each run in a fresh process.

Targets (issue 5): rate/R >= 0.99 at 100 and 500/s, >= 0.98 at 2000/s,
zero 429s; CPU per request <= 1.10 x the bare loop; worker-pool peak
memory at 100k items <= 1/20 of one coroutine per request.

Which bare loop: a client held to R sends its requests one at a time, 1/R
apart, and each one costs an event-loop wake-up and its system calls on its
own; flat out, (e) shares those costs among the dozens of answers it finds
at each wake-up. So any paced client, however it paces, spends about twice
(e)'s CPU per request at R = 100-2000/s on loopback (``course.compare``
explains it). The CPU target is therefore read against (f), the bare loop
paced at the same R; the ratio to (e) is printed too, and so is the pool's
overhead at full speed against (e) (table 2).
Figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from course.client import fetch_each
from course.compare import ComparisonRow, compare, format_table, run_bare
from course.limiters import RateLimiter
from course.mockapi_control import AsyncMockAPIControl, MockAPIControl
from course.records import Outcome, Result
from course.servers import start_mock_api
from course.workers import WorkerPool

__all__ = ["MemoryFigure", "main"]


@dataclass(frozen=True)
class MemoryFigure:
    approach: str
    items: int
    fetched: int
    traced_peak_mb: float
    rss_peak_mb: float
    rss_start_mb: float
    seconds: float


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m course.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="100,500,2000", help="rates R to test, comma separated")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each rate run (items = R x seconds)")
    parser.add_argument("--sizes", default="1000,10000,100000", help="item counts for the memory table")
    parser.add_argument("--workers", type=int, default=64, help="workers / connections per client")
    parser.add_argument("--approaches", default="abcdef", help="which clients of course.compare to run")
    parser.add_argument(
        "--cpu-rounds", type=int, default=5,
        help="alternated runs of the pool (d) and the paced bare loop (f) behind each CPU ratio",
    )
    parser.add_argument("--memory-rate", type=float, default=2000.0, help="request rate of the memory runs")
    parser.add_argument(
        "--memory-stop-after", type=int, default=2000,
        help="end a memory run once this many items are fetched (both peaks are reached by then)",
    )
    parser.add_argument("--memory-child", nargs=3, metavar=("APPROACH", "N", "URL"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- memory, measured in a child process -----------------------------------------


async def _memory_workload(
    approach: str, n: int, url: str, workers: int, rate: float, stop_after: int
) -> tuple[int, asyncio.Future[Any]]:
    """Fetch ``n`` items at ``rate``; once ``stop_after`` have completed (or all have),
    return how many were fetched, and the run.

    The run is left as it is when this returns: its tasks are not cancelled.
    Unwinding 100k pending tasks would take longer than the run itself and
    would raise the traced peak with 100k exceptions, which is not what a
    real run pays (it lets them finish). The child process exits instead.
    """
    fetched = [0]
    enough = asyncio.Event()

    def count(outcome: Outcome) -> None:
        if isinstance(outcome, Result):
            fetched[0] += 1
            if fetched[0] >= stop_after:
                enough.set()

    limiter = RateLimiter(rate)  # the same limiter for both: only the approach differs
    work: Coroutine[Any, Any, object]
    if approach == "coroutines":
        work = fetch_each(range(n), url + "/items/{item}", limiter=limiter, connections=workers, on_outcome=count)
    else:
        work = WorkerPool(url + "/items/{item}", workers=workers, limiter=limiter).run(range(n), on_outcome=count)
    run = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(enough.wait())
    await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
    if run.done():
        stop.cancel()
        run.result()  # an error in the run is the benchmark's error
    return fetched[0], run  # the caller keeps the pending run referenced until it exits


def _memory_child(approach: str, n: int, url: str, workers: int, rate: float, stop_after: int) -> None:
    from memory_profiler import memory_usage

    result: dict[str, Any] = {}

    def work() -> None:
        loop = asyncio.new_event_loop()  # not asyncio.run: it would cancel the pending tasks on the way out
        tracemalloc.start()
        started = time.perf_counter()
        result["fetched"], result["run"] = loop.run_until_complete(
            _memory_workload(approach, n, url, workers, rate, stop_after)
        )
        result["seconds"] = time.perf_counter() - started
        result["traced_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

    start = memory_usage(-1, interval=0.05, timeout=0.1, max_usage=True)
    peak = memory_usage((work, (), {}), interval=0.02, max_usage=True)
    as_number = lambda v: float(max(v) if isinstance(v, list) else v)  # noqa: E731
    print(
        json.dumps(
            {
                "approach": approach,
                "items": n,
                "fetched": result["fetched"],
                "traced_peak_mb": result["traced_peak"] / 2**20,
                "rss_peak_mb": as_number(peak),
                "rss_start_mb": as_number(start),
                "seconds": result["seconds"],
            }
        ),
        flush=True,
    )
    os._exit(0)  # leave without unwinding the pending run (see _memory_workload)


def measure_memory(approach: str, n: int, url: str, workers: int, rate: float, stop_after: int) -> MemoryFigure:
    """Run one memory measurement in a fresh Python process (clean RSS baseline)."""
    command = [
        sys.executable, "-m", "course.benchmarks.framework", "--workers", str(workers), "--memory-rate", str(rate),
        "--memory-stop-after", str(stop_after), "--memory-child", approach, str(n), url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"memory run {approach} n={n} failed:\n{done.stderr[-2000:]}")
    return MemoryFigure(**json.loads(done.stdout.strip().splitlines()[-1]))


# -- the run ------------------------------------------------------------------------


async def _overhead(url: str, n: int, workers: int, rounds: int = 5) -> tuple[float, float]:
    """Median CPU per request (us) of the pool without limiter and of the bare loop, full speed."""
    figures: dict[str, list[float]] = {"pool": [], "bare": []}
    for _ in range(rounds):  # alternate, to even out what else the machine does
        for name in ("bare", "pool"):
            cpu = time.process_time()
            if name == "bare":
                await run_bare(url, range(n), 0, 1.0, workers)
            else:
                await WorkerPool(url + "/items/{item}", workers=workers).run(range(n), on_outcome=lambda o: None)
            figures[name].append((time.process_time() - cpu) / n * 1e6)
    return statistics.median(figures["pool"]), statistics.median(figures["bare"])


def _rate_verdict(rows: Sequence[ComparisonRow], rate: float) -> str:
    ours = next((row for row in rows if row.approach == "d"), None)
    if ours is None or ours.rate_ratio is None:
        return ""
    target = 0.98 if rate >= 2000 else 0.99
    return (
        f"worker pool at R={rate:g}/s: rate/R {ours.rate_ratio:.3f} (target >= {target}), "
        f"429s {ours.status_429} (target 0)"
    )


async def _paced_cpu(url: str, items: range, rate: float, workers: int, first: Sequence[ComparisonRow],
                     rounds: int) -> str:
    """CPU per request of the pool (d) against the bare loop paced at the same R (f).

    The two run in turn, ``rounds`` times (the table's run is the first); each
    round gives one ratio d/f from two runs close in time, so a slow patch of
    the machine weighs on both; the verdict is the median of those ratios.
    """
    runs = [list(first)]
    for _ in range(rounds - 1):
        runs.append(await compare(url, items, rate, workers=workers, approaches="fd"))
    pairs = []
    for run in runs:
        cpu = {row.approach: row.cpu_per_request_us for row in run}
        if "d" in cpu and cpu.get("f", 0) > 0:
            pairs.append((cpu["d"], cpu["f"]))
    if not pairs:
        return ""
    ratios = sorted(pool / paced for pool, paced in pairs)
    line = (
        f"CPU per request at R={rate:g}/s, worker pool / bare loop paced at R: "
        f"median {statistics.median(ratios):.2f} (target <= 1.10) over {len(ratios)} alternated rounds "
        f"(range {ratios[0]:.2f}-{ratios[-1]:.2f}; pool {statistics.median(p for p, _ in pairs):.0f} us, "
        f"paced loop {statistics.median(f for _, f in pairs):.0f} us)"
    )
    bare = [row.cpu_per_request_us for row in first if row.approach == "e"]
    if bare and bare[0] > 0:
        line += f"; pool / unpaced bare loop {pairs[0][0] / bare[0]:.2f}"
    return line


async def _run(args: argparse.Namespace, url: str, warm: int) -> None:
    rates = [float(r) for r in args.rates.split(",") if r]
    async with aiohttp.ClientSession() as session:
        await _measure_rates(args, url, AsyncMockAPIControl(url, session), rates, warm)


async def _measure_rates(
    args: argparse.Namespace, url: str, control: AsyncMockAPIControl, rates: Sequence[float], warm: int
) -> None:
    # The mock API makes an item's body (a Faker email, ~0.5 ms) the first time
    # it is asked for. Ask for every item the runs will use once, before any
    # run is measured: otherwise whichever client goes first pays for all, in
    # server latency, and a limiter that counts requests until their answer
    # (ours) loses rate to it.
    await control.use()
    await run_bare(url, range(warm), 0, 1.0, args.workers)
    for rate in rates:
        n = int(rate * args.seconds)
        # The bare loops get the same items as the others: each run's fixed costs
        # (session, workers) are then spread over the same number of requests.
        rows = await compare(url, range(n), rate, workers=args.workers, approaches=args.approaches)
        print(f"\n== R = {rate:g} requests/s, {n} items, strict sliding window on the server ==")
        print(format_table(rows))
        print(_rate_verdict(rows, rate))
        sys.stdout.flush()
        if "d" in args.approaches and "f" in args.approaches:
            print(await _paced_cpu(url, range(n), rate, args.workers, rows, args.cpu_rounds))
            sys.stdout.flush()
    await control.use()
    pool_us, bare_us = await _overhead(url, 5000, args.workers)
    print("\n== framework overhead at full speed (no limiter), 5000 items, median of 5 alternated runs ==")
    print(f"bare aiohttp + semaphore {bare_us:.0f} us/request; worker pool {pool_us:.0f} us/request; "
          f"ratio {pool_us / bare_us:.2f} (target <= 1.10)")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.memory_child:
        approach, n, url = args.memory_child
        _memory_child(approach, int(n), url, args.workers, args.memory_rate, args.memory_stop_after)
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rates = [float(r) for r in args.rates.split(",") if r]
    items = max([*sizes, *(int(r * args.seconds) for r in rates), 5000])
    started = time.perf_counter()
    api = start_mock_api(port=None, items=items)
    try:
        print(f"mock API {api.url} ({items} items); client workers {args.workers}")
        warm = max([5000, *(int(r * args.seconds) for r in rates)])  # the rate runs and the overhead runs
        asyncio.run(_run(args, api.url, warm))
        MockAPIControl(api.url).use()
        print(
            f"\n== peak client memory: one coroutine per request vs worker pool, both at "
            f"{args.memory_rate:g}/s through RateLimiter; fresh process each; a run ends after "
            f"{args.memory_stop_after} items are fetched (all N coroutines exist from the start, "
            f"the pool's memory is flat: both peaks are reached by then; "
            f"the child then exits without unwinding the run) =="
        )
        print(
            f"{'items':>8} {'approach':<12}{'fetched':>8}{'traced MB':>10}{'RSS peak MB':>12}"
            f"{'RSS start MB':>13}{'s':>7}"
        )
        by_size: dict[int, dict[str, MemoryFigure]] = {}
        for n in sizes:
            for approach in ("coroutines", "pool"):
                figure = measure_memory(
                    approach, n, api.url, args.workers, args.memory_rate, args.memory_stop_after
                )
                by_size.setdefault(n, {})[approach] = figure
                print(
                    f"{n:>8} {approach:<12}{figure.fetched:>8}{figure.traced_peak_mb:>10.1f}{figure.rss_peak_mb:>12.1f}"
                    f"{figure.rss_start_mb:>13.1f}{figure.seconds:>7.1f}"
                )
                sys.stdout.flush()
        for n, pair in by_size.items():
            if len(pair) == 2:
                ratio = pair["coroutines"].traced_peak_mb / max(pair["pool"].traced_peak_mb, 1e-9)
                rss = (pair["coroutines"].rss_peak_mb - pair["coroutines"].rss_start_mb) / max(
                    pair["pool"].rss_peak_mb - pair["pool"].rss_start_mb, 0.1
                )
                print(f"{n:>8} items: coroutines / pool = {ratio:.1f}x traced, {rss:.1f}x RSS growth"
                      + ("  (target >= 20x at 100k)" if n >= 100_000 else ""))
    finally:
        api.stop()
    print(f"\nbenchmark took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
