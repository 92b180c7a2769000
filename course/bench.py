"""Benchmark of the client framework: ``python -m course.bench``.

Prints three tables, against one mock-API process started for the run:

1. per rate R in {100, 500, 2000}/s (a strict sliding-window limit of R on
   the server): for each client of ``course.compare`` the achieved rate / R
   (from the server's arrival times), the number of 429s, and client CPU per
   request relative to the bare aiohttp + semaphore loop (e) on the same
   items;
2. the framework's own overhead: CPU per request of the worker pool with no
   limiter next to the bare loop, both at full speed on the same items;
3. peak client memory for 1k / 10k / 100k items, one coroutine per request
   against the worker pool: traced Python allocations (tracemalloc) and
   process RSS (memory_profiler), each run in a fresh process.

Targets (issue 5): rate/R >= 0.99 at 100 and 500/s, >= 0.98 at 2000/s,
zero 429s; CPU per request <= 1.10 x the bare loop; worker-pool peak
memory at 100k items <= 1/20 of one coroutine per request.
Figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from course.client import fetch_each
from course.compare import ComparisonRow, compare, format_table, run_bare
from course.limiters import RateLimiter
from course.records import Outcome, Result
from course.servers import start_mock_api
from course.workers import WorkerPool

__all__ = ["main", "MemoryFigure"]


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
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each rate run (items = R x seconds)")
    parser.add_argument("--sizes", default="1000,10000,100000", help="item counts for the memory table")
    parser.add_argument("--workers", type=int, default=64, help="workers / connections per client")
    parser.add_argument("--approaches", default="abcde", help="which clients of course.compare to run")
    parser.add_argument("--memory-rate", type=float, default=2000.0, help="request rate of the memory runs")
    parser.add_argument(
        "--memory-stop-after", type=int, default=2000,
        help="end a memory run once this many items are fetched (both peaks are reached by then)",
    )
    parser.add_argument("--memory-child", nargs=3, metavar=("APPROACH", "N", "URL"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- memory, measured in a child process -----------------------------------------


async def _memory_workload(approach: str, n: int, url: str, workers: int, rate: float, stop_after: int) -> int:
    """Fetch ``n`` items at ``rate``; stop (cancel) once ``stop_after`` have completed."""
    fetched = [0]
    enough = asyncio.Event()

    def count(outcome: Outcome) -> None:
        if isinstance(outcome, Result):
            fetched[0] += 1
            if fetched[0] >= stop_after:
                enough.set()

    limiter = RateLimiter(rate)  # the same limiter for both: only the approach differs
    if approach == "coroutines":
        work = fetch_each(range(n), url + "/items/{item}", limiter=limiter, connections=workers, on_outcome=count)
    else:
        work = WorkerPool(url + "/items/{item}", workers=workers, limiter=limiter).run(range(n), on_outcome=count)
    run = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(enough.wait())
    await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
    for task in (run, stop):
        task.cancel()
    await asyncio.gather(run, stop, return_exceptions=True)
    return fetched[0]


def _memory_child(approach: str, n: int, url: str, workers: int, rate: float, stop_after: int) -> None:
    from memory_profiler import memory_usage

    result: dict[str, Any] = {}

    def work() -> None:
        tracemalloc.start()
        started = time.perf_counter()
        result["fetched"] = asyncio.run(_memory_workload(approach, n, url, workers, rate, stop_after))
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
        )
    )


def measure_memory(approach: str, n: int, url: str, workers: int, rate: float, stop_after: int) -> MemoryFigure:
    """Run one memory measurement in a fresh Python process (clean RSS baseline)."""
    command = [
        sys.executable, "-m", "course.bench", "--workers", str(workers), "--memory-rate", str(rate),
        "--memory-stop-after", str(stop_after), "--memory-child", approach, str(n), url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"memory run {approach} n={n} failed:\n{done.stderr[-2000:]}")
    return MemoryFigure(**json.loads(done.stdout.strip().splitlines()[-1]))


def _call(method: str, url: str, body: Any) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


# -- the run ------------------------------------------------------------------------


async def _overhead(url: str, n: int, workers: int, rounds: int = 3) -> tuple[float, float]:
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
    cpu = "" if ours.cpu_vs_bare is None else f", CPU vs bare {ours.cpu_vs_bare:.2f} (target <= 1.10)"
    return (
        f"worker pool at R={rate:g}/s: rate/R {ours.rate_ratio:.3f} (target >= {target}), "
        f"429s {ours.status_429} (target 0){cpu}"
    )


async def _run(args: argparse.Namespace, url: str, control: Any) -> None:
    rates = [float(r) for r in args.rates.split(",") if r]
    for rate in rates:
        n = int(rate * args.seconds)
        # The bare loop gets the same items as the others: each run's fixed costs
        # (session, workers) are then spread over the same number of requests.
        rows = await compare(url, range(n), rate, workers=args.workers, approaches=args.approaches)
        print(f"\n== R = {rate:g} requests/s, {n} items, strict sliding window on the server ==")
        print(format_table(rows))
        print(_rate_verdict(rows, rate))
        sys.stdout.flush()
    control({})
    pool_us, bare_us = await _overhead(url, 5000, args.workers)
    print("\n== framework overhead at full speed (no limiter), 5000 items, median of 3 ==")
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

    def control(scenario: dict[str, Any]) -> None:
        _call("PUT", api.url + "/_scenario", scenario)
        _call("POST", api.url + "/_reset", {})

    try:
        print(f"mock API {api.url} ({items} items); client workers {args.workers}")
        asyncio.run(_run(args, api.url, control))
        control({})
        print(
            f"\n== peak client memory: one coroutine per request vs worker pool, both at "
            f"{args.memory_rate:g}/s through RateLimiter; fresh process each; a run ends after "
            f"{args.memory_stop_after} items are fetched (all N coroutines exist from the start, "
            f"the pool's memory is flat: both peaks are reached by then) =="
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
