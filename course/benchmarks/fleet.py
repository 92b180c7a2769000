"""A fleet of processes sharing one rate limit through Redis: ours next to the ``limits`` library.

    python -m course.benchmarks.fleet [--processes 4] [--rate 50] [--requests 400] [--workers 16]

Starts a Redis (``course.redis_server``) and the mock API with a strict
sliding-window limit of ``--rate`` requests per second, then, for each
contender, ``--processes`` client processes that share ``--requests``
requests between them (each sends its share as fast as its limiter lets it,
through ``--workers`` concurrent workers). The contenders:

- ``shared``: ``course.shared_limit.SharedRateLimiter`` (GCRA schedule plus the
  fleet's count of the server's window: two round trips a request, and one
  not awaited);
- ``shared-gcra``: the same with ``window=False`` (plain GCRA: one round trip);
- ``limits``: the ``limits`` library's ``MovingWindowRateLimiter`` on its async
  Redis storage (redis-py), at the same rate: a worker calls ``hit``; when it
  is refused it reads ``get_window_stats`` and sleeps until the oldest hit
  leaves the window, then tries again (the library says yes or no; waiting is
  the caller's business).

For each it reports the requests the server admitted per second in the
steady part of the run (the middle 80 % of arrivals), the 429s, the
evenness of the arrivals (the busiest 100 ms, as a multiple of an even
share, and the spread of the gaps between arrivals: standard deviation over
mean), and the Redis commands per request (as Redis counts them: each call
a Lua script makes counts, and so does a new connection's handshake).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis

from course.mockapi_control import MockAPIControl
from course.redis_server import start_redis
from course.servers import start_mock_api

__all__ = ["CONTENDERS", "Figures", "run_benchmark"]

CONTENDERS = ("shared", "shared-gcra", "limits")


@dataclass(frozen=True)
class Figures:
    """What one contender's run looked like from the server (and from Redis)."""

    contender: str
    admitted: int
    refused: int
    steady_rate: float
    busiest_100ms: float  # the most arrivals in any 100 ms, as a multiple of an even share
    gap_spread: float  # standard deviation / mean of the gaps between arrivals
    redis_commands_per_request: float
    seconds: float


# -- one client process -----------------------------------------------------------------


async def _limiter_for(kind: str, redis_url: str, key: str, rate: float) -> Callable[[], Awaitable[None]]:
    """A coroutine function that returns when one request may go."""
    if kind in ("shared", "shared-gcra"):
        from course.shared_limit import SharedRateLimiter

        shared = SharedRateLimiter(redis_url, key, rate, window=kind == "shared")

        async def go_shared() -> None:
            await shared.acquire()

        return go_shared
    if kind == "limits":
        from limits import RateLimitItemPerSecond
        from limits.aio.strategies import MovingWindowRateLimiter
        from limits.storage import storage_from_string

        storage: Any = storage_from_string("async+" + redis_url, implementation="redispy")
        library = MovingWindowRateLimiter(storage)
        item = RateLimitItemPerSecond(int(rate))

        async def go_limits() -> None:
            while not await library.hit(item, key):
                stats = await library.get_window_stats(item, key)
                await asyncio.sleep(max(0.001, stats.reset_time - time.time()))

        return go_limits
    raise ValueError(f"unknown contender {kind!r}; one of {CONTENDERS}")


async def _client(kind: str, redis_url: str, api_url: str, key: str, rate: float, requests: int, workers: int) -> None:
    go = await _limiter_for(kind, redis_url, key, rate)
    left = iter(range(requests))
    async with aiohttp.ClientSession() as session:

        async def work() -> None:
            for item in left:
                await go()
                async with session.get(f"{api_url}/items/{item % 100}") as response:
                    await response.read()

        await asyncio.gather(*(work() for _ in range(workers)))


# -- the run ----------------------------------------------------------------------------


def _figures(contender: str, stats: dict[str, Any], commands: int, seconds: float, rate: float) -> Figures:
    arrivals = sorted(t for t, s in zip(stats["arrivals"], stats["statuses"], strict=True) if s == "200")
    refused = sum(1 for s in stats["statuses"] if s == "429")
    cut = len(arrivals) // 10
    middle = arrivals[cut : len(arrivals) - cut]
    steady = (len(middle) - 1) / (middle[-1] - middle[0]) if len(middle) > 1 else 0.0
    busiest, j = 0, 0
    for i, start in enumerate(middle):
        while j < len(middle) and middle[j] < start + 0.1:
            j += 1
        busiest = max(busiest, j - i)
    gaps = [b - a for a, b in itertools.pairwise(middle)]
    spread = statistics.pstdev(gaps) / statistics.fmean(gaps) if len(gaps) > 1 and statistics.fmean(gaps) else 0.0
    total = len(stats["arrivals"])
    return Figures(
        contender,
        admitted=len(arrivals),
        refused=refused,
        steady_rate=steady,
        busiest_100ms=busiest / (rate * 0.1),
        gap_spread=spread,
        redis_commands_per_request=commands / total if total else 0.0,
        seconds=seconds,
    )


def run_benchmark(
    *,
    processes: int = 4,
    rate: float = 50,
    requests: int = 400,
    workers: int = 16,
    contenders: tuple[str, ...] = CONTENDERS,
) -> list[Figures]:
    """Run every contender once; the figures, in the order given."""
    server = start_redis()
    api = start_mock_api(port=None, items=100)
    control = MockAPIControl(api.url)
    results = []
    try:
        client = redis.Redis.from_url(server.url)
        for number, contender in enumerate(contenders):
            control.use({"rate_limit": {"requests": int(rate), "per": 1.0}})
            before = int(client.info("stats")["total_commands_processed"])
            started = time.perf_counter()
            share = requests // processes
            command = [
                sys.executable, "-m", "course.benchmarks.fleet", "--child", contender, "--redis", server.url,
                "--api", api.url, "--key", f"bench-{number}", "--rate", str(rate), "--requests", str(share),
                "--workers", str(workers),
            ]  # fmt: skip
            fleet = [subprocess.Popen(command) for _ in range(processes)]
            for process in fleet:
                if process.wait(600) != 0:
                    raise RuntimeError(f"a {contender} client process failed (exit {process.returncode})")
            seconds = time.perf_counter() - started
            commands = int(client.info("stats")["total_commands_processed"]) - before
            results.append(_figures(contender, control.stats(detail=True), commands, seconds, rate))
        client.close()
    finally:
        api.stop()
        server.stop()
    return results


def _report(results: list[Figures], rate: float) -> str:
    lines = [
        f"{'contender':<12} {'admitted':>8} {'429s':>5} {'steady/s':>9} {'of R':>6} {'busiest 100ms':>14} "
        f"{'gap spread':>10} {'Redis cmds/req':>14}"
    ]
    for f in results:
        lines.append(
            f"{f.contender:<12} {f.admitted:>8} {f.refused:>5} {f.steady_rate:>9.1f} {f.steady_rate / rate:>6.0%} "
            f"{f.busiest_100ms:>13.1f}x {f.gap_spread:>10.2f} {f.redis_commands_per_request:>14.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.benchmarks.fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--requests", type=int, default=400, help="in all, shared between the processes")
    parser.add_argument("--workers", type=int, default=16, help="concurrent workers per process")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--api", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        asyncio.run(_client(args.child, args.redis, args.api, args.key, args.rate, args.requests, args.workers))
        return 0
    contenders = tuple(name.strip() for name in args.contenders.split(",") if name.strip())
    unknown = [name for name in contenders if name not in CONTENDERS]
    if unknown or args.processes < 1 or args.rate < 1 or args.requests < 1 or args.workers < 1:
        parser.error(f"contenders are {CONTENDERS}; --processes, --rate, --requests, --workers at least 1")
    results = run_benchmark(
        processes=args.processes, rate=args.rate, requests=args.requests, workers=args.workers, contenders=contenders
    )
    print(_report(results, args.rate))
    print(json.dumps([f.__dict__ for f in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
