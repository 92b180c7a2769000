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

Then, unless ``--only-contenders``, three more sections (lesson 11):

- the fleet: ``--processes`` processes sharing ``--fleet-rate`` R (default
  1000/s) through Redis, beside private ``RateLimiter``s at R and at R/N each,
  and the same with one process dead (N-1 shared at R; N-1 private at R/N,
  the static split): the steady admitted rate as a share of R, the 429s and
  the Redis round trips per request (the limiter's script calls; the
  ``release`` one is sent without waiting for it);
- a work queue: three ``python -m course.fetch --queue`` workers, one killed
  with SIGKILL once the server has seen a third of the items: items lost and
  duplicated in the export, items the server served twice;
- ``--rate auto`` against an unannounced strict limit of 100/s and against
  one announced in ``RateLimit`` headers: seconds until a second admitted 0.9
  of the limit, and the share of 429s, over runs of ``--auto-seconds``
  (default 30 s, the issue's measure) of items; ``--only-auto`` runs this
  section alone.

Every request a client sends goes through ``async with gate():``, as
``course.fetch`` does: a limiter that counts requests in flight hears when
each answer is in.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis

from course.mockapi_control import MockAPIControl
from course.redis_server import start_redis
from course.servers import start_mock_api

__all__ = [
    "CONTENDERS",
    "AutoFigures",
    "Figures",
    "FleetRow",
    "KillFigures",
    "run_auto",
    "run_benchmark",
    "run_fleet_table",
    "run_kill",
    "seconds_to_reach",
]

CONTENDERS = ("shared", "shared-gcra", "limits")
#: Contenders the fleet section also runs: a private ``RateLimiter`` in each process, no Redis.
ALL_KINDS = (*CONTENDERS, "private")


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


async def _limiter_for(
    kind: str, redis_url: str, key: str, rate: float
) -> Callable[[], contextlib.AbstractAsyncContextManager[Any]]:
    """A gate around one request: ``async with gate():`` returns when the request may go, and
    (for the limiters that count requests in flight) tells the limiter when its answer is in."""
    if kind in ("shared", "shared-gcra"):
        from course.shared_limit import SharedRateLimiter

        shared = SharedRateLimiter(redis_url, key, rate, window=kind == "shared")
        return lambda: shared  # acquire(hold=True) on entry, release() when the answer is in
    if kind == "private":
        from course.limiters import RateLimiter

        private = RateLimiter(rate)
        return lambda: private
    if kind == "limits":
        from limits import RateLimitItemPerSecond
        from limits.aio.strategies import MovingWindowRateLimiter
        from limits.storage import storage_from_string

        storage: Any = storage_from_string("async+" + redis_url, implementation="redispy")
        library = MovingWindowRateLimiter(storage)
        item = RateLimitItemPerSecond(int(rate))

        @contextlib.asynccontextmanager
        async def go_limits() -> AsyncIterator[None]:
            while not await library.hit(item, key):
                stats = await library.get_window_stats(item, key)
                await asyncio.sleep(max(0.001, stats.reset_time - time.time()))
            yield

        return go_limits
    raise ValueError(f"unknown contender {kind!r}; one of {ALL_KINDS}")


async def _client(kind: str, redis_url: str, api_url: str, key: str, rate: float, requests: int, workers: int) -> None:
    gate = await _limiter_for(kind, redis_url, key, rate)
    left = iter(range(requests))
    async with aiohttp.ClientSession() as session:

        async def work() -> None:
            for item in left:
                async with gate(), session.get(f"{api_url}/items/{item % 100}") as response:
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


def _script_calls(client: redis.Redis) -> int:
    """Round trips the limiters made to Redis: their script calls (each script is one round trip)."""
    stats: dict[str, Any] = client.info("commandstats")
    return sum(int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval"))


def _run_fleet(
    client: redis.Redis,
    control: MockAPIControl,
    redis_url: str,
    api_url: str,
    contender: str,
    key: str,
    *,
    processes: int,
    server_rate: float,
    client_rate: float,
    requests: int,
    workers: int,
) -> tuple[Figures, float, float]:
    """``processes`` client processes of one kind against a strict limit of ``server_rate``;
    the figures, the Redis round trips per request, and the requests offered per second."""
    control.use({"rate_limit": {"requests": int(server_rate), "per": 1.0}})
    before = int(client.info("stats")["total_commands_processed"])
    calls_before = _script_calls(client)
    started = time.perf_counter()
    share = requests // processes
    command = [
        sys.executable, "-m", "course.benchmarks.fleet", "--child", contender, "--redis", redis_url,
        "--api", api_url, "--key", key, "--rate", str(client_rate), "--requests", str(share),
        "--workers", str(workers),
    ]  # fmt: skip
    fleet = [subprocess.Popen(command) for _ in range(processes)]
    for process in fleet:
        if process.wait(600) != 0:
            raise RuntimeError(f"a {contender} client process failed (exit {process.returncode})")
    seconds = time.perf_counter() - started
    commands = int(client.info("stats")["total_commands_processed"]) - before
    stats = control.stats(detail=True)
    arrivals = stats["arrivals"]
    trips = (_script_calls(client) - calls_before) / max(1, len(arrivals))
    span = max(arrivals) - min(arrivals) if len(arrivals) > 1 else 0.0
    offered = len(arrivals) / span if span else 0.0
    return _figures(contender, stats, commands, seconds, server_rate), trips, offered


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
            figures, _trips, _offered = _run_fleet(
                client, control, server.url, api.url, contender, f"bench-{number}", processes=processes,
                server_rate=rate, client_rate=rate, requests=requests, workers=workers,
            )  # fmt: skip
            results.append(figures)
        client.close()
    finally:
        api.stop()
        server.stop()
    return results


# -- the fleet at a high rate: shared, private at R, private at R/N, a static split missing one ------


@dataclass(frozen=True)
class FleetRow:
    """One line of the fleet table: who ran, and what the server saw."""

    label: str
    figures: Figures
    redis_round_trips_per_request: float
    offered_rate: float  # every request the server saw, over the span of their arrivals


def run_fleet_table(
    *, processes: int = 4, rate: float = 1000, seconds: float = 4.0, workers: int = 32
) -> list[FleetRow]:
    """``processes`` processes sharing ``rate`` (Redis) beside private limiters at ``rate`` and at
    ``rate / processes``, and the static split with one process dead (``processes - 1`` at ``rate / processes``)."""
    server = start_redis()
    api = start_mock_api(port=None, items=100)
    control = MockAPIControl(api.url)
    requests = int(rate * seconds)
    split = rate / processes
    plans = [
        (f"{processes} shared, R", "shared", processes, rate, requests),
        (f"{processes} private, R each", "private", processes, rate, requests),
        (f"{processes} private, R/{processes} each", "private", processes, split, requests),
        (f"{processes - 1} shared, R (1 dead)", "shared", processes - 1, rate, requests * (processes - 1) // processes),
        (f"{processes - 1} private, R/{processes} (1 dead)", "private", processes - 1, split,
         requests * (processes - 1) // processes),
    ]  # fmt: skip
    rows = []
    try:
        client = redis.Redis.from_url(server.url)
        for number, (label, kind, count, client_rate, total) in enumerate(plans):
            figures, trips, offered = _run_fleet(
                client, control, server.url, api.url, kind, f"fleet-{number}", processes=count,
                server_rate=rate, client_rate=client_rate, requests=total, workers=workers,
            )  # fmt: skip
            rows.append(FleetRow(label, figures, trips, offered))
        client.close()
    finally:
        api.stop()
        server.stop()
    return rows


def _fleet_report(rows: list[FleetRow], rate: float) -> str:
    lines = [
        f"Fleet against a strict limit R = {rate:g}/s (steady: admitted per second over the middle 80 % of the "
        "admitted arrivals; a private client does not retry its 429s, so 'R each' ends in a burst)",
        f"{'who':<26} {'offered/s':>9} {'admitted':>8} {'429s':>6} {'steady/s':>9} {'of R':>6} {'Redis trips/req':>15}",
    ]
    for row in rows:
        f = row.figures
        lines.append(
            f"{row.label:<26} {row.offered_rate:>9.0f} {f.admitted:>8} {f.refused:>6} {f.steady_rate:>9.1f} "
            f"{f.steady_rate / rate:>6.1%} {row.redis_round_trips_per_request:>15.2f}"
        )
    return "\n".join(lines)


# -- a queue worker killed with SIGKILL ---------------------------------------------------------------


@dataclass(frozen=True)
class KillFigures:
    """A queue run in which one of the workers was killed with SIGKILL."""

    items: int
    exported: int
    lost: int  # items without a line in the export
    duplicated: int  # items with more than one line in the export
    fetched_twice: int  # items the server served more than once
    requests: int
    seconds: float


def run_kill(*, items: int = 600, rate: float = 200, workers: int = 3, latency: float = 0.1) -> KillFigures:
    """``workers`` ``python -m course.fetch --queue`` processes share ``items`` at ``rate``; the last
    is SIGKILLed once the server has seen a third of the items."""
    server = start_redis()
    api = start_mock_api(port=None, items=items)
    control = MockAPIControl(api.url)
    control.use({"latency": {"mean": latency, "jitter": 0.0}})
    folder = Path(tempfile.mkdtemp(prefix="fleet-kill-"))
    export = folder / "export.jsonl"
    flags = [
        "--rate", str(rate), "--workers", "8", "--shared-limit", server.url, "--limit-key", "kill",
        "--queue", server.url, "--queue-name", "kill", "--claim-after", "2", "--quiet",
    ]  # fmt: skip
    base = [sys.executable, "-m", "course.fetch", api.url, *flags]
    started = time.perf_counter()
    try:
        fleet = [subprocess.Popen([*base, "--export", "--out", str(export)], stderr=subprocess.DEVNULL)]
        fleet += [subprocess.Popen(base, stderr=subprocess.DEVNULL) for _ in range(workers - 1)]
        while control.stats()["requests"] < items // 3:
            time.sleep(0.02)
        fleet[-1].send_signal(signal.SIGKILL)
        for process in fleet[:-1]:
            if process.wait(600) != 0:
                raise RuntimeError(f"a queue worker failed (exit {process.returncode})")
        fleet[-1].wait()
        seconds = time.perf_counter() - started
        stats = control.stats(detail=True)
        ids = [json.loads(line)["id"] for line in export.read_text().splitlines() if line.strip()]
    finally:
        api.stop()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    counts = Counter(ids)
    return KillFigures(
        items=items,
        exported=len(ids),
        lost=sum(1 for item in range(items) if counts[item] == 0),
        duplicated=sum(1 for count in counts.values() if count > 1),
        fetched_twice=sum(1 for count in stats["served"].values() if count > 1),
        requests=stats["requests"],
        seconds=seconds,
    )


# -- --rate auto: finding an unannounced limit, or reading it ------------------------------------------


@dataclass(frozen=True)
class AutoFigures:
    """One ``--rate auto`` run against a strict limit, announced or not."""

    headers: bool
    limit: int
    seconds_to_90: float | None  # from the first arrival until a second admitted 0.9 x the limit
    refused_share: float
    requests: int
    seconds: float


def seconds_to_reach(arrivals: list[float], statuses: list[str], rate: float, fraction: float = 0.9) -> float | None:
    """Seconds from the first arrival until the admitted requests of the last second reach ``fraction * rate``."""
    admitted = sorted(t for t, s in zip(arrivals, statuses, strict=True) if s == "200")
    if not admitted:
        return None
    start, need = min(arrivals), math.ceil(fraction * rate)
    for index in range(need - 1, len(admitted)):
        if admitted[index] - admitted[index - need + 1] <= 1.0:
            return admitted[index] - start
    return None


def run_auto(*, limit: int = 100, seconds: float = 10.0, headers: bool = False) -> AutoFigures:
    """One ``python -m course.fetch --rate auto`` against a strict limit of ``limit``/s, with about
    ``seconds`` of items (``limit * seconds`` of them)."""
    items = int(limit * seconds)
    api = start_mock_api(port=None, items=items)
    control = MockAPIControl(api.url)
    control.use({"rate_limit": {"requests": limit, "per": 1.0, "headers": headers}})
    folder = Path(tempfile.mkdtemp(prefix="fleet-auto-"))
    started = time.perf_counter()
    try:
        command = [sys.executable, "-m", "course.fetch", api.url, "--rate", "auto", "--quiet", "--out",
                   str(folder / "out.jsonl")]  # fmt: skip
        if subprocess.run(command, stderr=subprocess.DEVNULL, check=False, timeout=600).returncode != 0:
            raise RuntimeError("the --rate auto run failed")
        took = time.perf_counter() - started
        stats = control.stats(detail=True)
    finally:
        api.stop()
        shutil.rmtree(folder, ignore_errors=True)
    refused = sum(1 for status in stats["statuses"] if status == "429")
    return AutoFigures(
        headers=headers,
        limit=limit,
        seconds_to_90=seconds_to_reach(stats["arrivals"], stats["statuses"], limit),
        refused_share=refused / max(1, len(stats["statuses"])),
        requests=len(stats["statuses"]),
        seconds=took,
    )


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


def _report_auto(seconds: float) -> list[AutoFigures]:
    """Run and print the ``--rate auto`` section: an unannounced limit, then an announced one."""
    print(f"--rate auto against a strict limit of 100/s, runs of about {seconds:g} s:")
    autos = [run_auto(seconds=seconds, headers=headers) for headers in (False, True)]
    for auto in autos:
        reach = "never" if auto.seconds_to_90 is None else f"{auto.seconds_to_90:.1f} s"
        print(
            f"  {'with RateLimit headers' if auto.headers else 'unannounced limit':<24} 0.9 of the limit after "
            f"{reach:>7}; 429s {auto.refused_share:.1%} of {auto.requests} requests"
        )
    return autos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.benchmarks.fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--requests", type=int, default=400, help="in all, shared between the processes")
    parser.add_argument("--workers", type=int, default=16, help="concurrent workers per process")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--fleet-rate", type=float, default=1000, help="R of the fleet section (default 1000/s)")
    parser.add_argument("--auto-seconds", type=float, default=30, help="length of each --rate auto run (default 30)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument(
        "--only-contenders", action="store_true", help="only the contenders' table (no fleet, kill, auto sections)"
    )
    only.add_argument("--only-auto", action="store_true", help="only the --rate auto section")
    parser.add_argument("--child", choices=ALL_KINDS, help=argparse.SUPPRESS)
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
    if not (math.isfinite(args.auto_seconds) and args.auto_seconds >= 1):
        parser.error(f"--auto-seconds is a number of seconds >= 1, not {args.auto_seconds:g}")
    if args.only_auto:
        autos = _report_auto(args.auto_seconds)
        print(json.dumps({"auto": [asdict(a) for a in autos]}))
        return 0
    results = run_benchmark(
        processes=args.processes, rate=args.rate, requests=args.requests, workers=args.workers, contenders=contenders
    )
    print(_report(results, args.rate))
    print(json.dumps([f.__dict__ for f in results]))
    if args.only_contenders:
        return 0
    rows = run_fleet_table(processes=args.processes, rate=args.fleet_rate)
    print()
    print(_fleet_report(rows, args.fleet_rate))
    shared_dead, split_dead = rows[3].figures.steady_rate, rows[4].figures.steady_rate
    print(
        f"a static split loses {1 - split_dead / args.fleet_rate:.0%} of R while one of {args.processes} is dead; "
        f"the shared limit keeps {shared_dead / args.fleet_rate:.0%} of R"
    )
    kill = run_kill()
    print()
    print(
        f"Queue, 3 workers, one killed with SIGKILL after a third: {kill.items} items, {kill.exported} exported, "
        f"{kill.lost} lost, {kill.duplicated} duplicated in the output, {kill.fetched_twice} fetched twice at the "
        f"server ({kill.requests} requests, {kill.seconds:.1f} s)"
    )
    print()
    autos = _report_auto(args.auto_seconds)
    print(
        json.dumps({"fleet": [asdict(row) for row in rows], "kill": asdict(kill), "auto": [asdict(a) for a in autos]})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
