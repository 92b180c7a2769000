"""How much the mock API costs per request, next to a bare aiohttp server.

    python -m course.benchmarks.mockapi [--requests 15000] [--concurrency 32] [--seconds 20] [--rounds 3]

Starts two servers, each in its own process on a free loopback port: the mock
API (default scenario: no limits, no faults) and a bare aiohttp hello-world
(``server.mockapi.hello``).
One aiohttp client with a fixed number of concurrent workers sends the same
bounded number of requests (and stops early at a time bound) to each, in
alternating rounds, after a warm-up. For each target it reports requests per
second of wall time, and requests per CPU-second *of the server process*
(read with psutil). On a small shared machine the client is often the
bottleneck, which hides the server's cost in the wall-clock rate; the
CPU-second figure shows it. The ratio "mock /items/{id} vs bare /" is the
figure to watch (target: >= 0.8).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import psutil

from course.servers import ServerHandle, start_mock_api, start_server

__all__ = ["Measurement", "drive", "measure", "run_benchmark"]


@dataclass(frozen=True)
class Measurement:
    """One timed run of the load generator against one target."""

    target: str
    requests: int
    seconds: float
    server_cpu_seconds: float
    failures: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def per_server_cpu_second(self) -> float:
        return self.requests / self.server_cpu_seconds if self.server_cpu_seconds else float("inf")


async def drive(
    base_url: str, paths: Callable[[int], str], *, requests: int, concurrency: int, seconds: float
) -> tuple[int, int, float]:
    """Send up to ``requests`` GETs with ``concurrency`` workers, for at most ``seconds``.

    Returns ``(answered, failures, wall seconds)``; a failure is any status other than 200.
    """
    counter = itertools.count()
    answered = failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url, connector=connector) as session:
        started = time.monotonic()
        deadline = started + seconds

        async def worker() -> None:
            nonlocal answered, failures
            while (n := next(counter)) < requests and time.monotonic() < deadline:
                async with session.get(paths(n)) as response:
                    await response.read()
                    answered += 1
                    failures += response.status != 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return answered, failures, time.monotonic() - started


async def measure(
    target: str,
    handle: ServerHandle,
    paths: Callable[[int], str],
    *,
    requests: int,
    concurrency: int,
    seconds: float,
) -> Measurement:
    """Warm up, then time one run against ``handle``, reading the server's CPU time around it."""
    await drive(handle.url, paths, requests=min(1000, requests), concurrency=concurrency, seconds=seconds)
    server = psutil.Process(handle.process.pid if handle.process else handle.info["pid"])
    before = sum(server.cpu_times()[:2])
    answered, failures, wall = await drive(
        handle.url, paths, requests=requests, concurrency=concurrency, seconds=seconds
    )
    cpu = sum(server.cpu_times()[:2]) - before
    return Measurement(target, answered, wall, cpu, failures)


def _identify_hello(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url + "/", timeout=1.0) as response:
            text = response.read().decode()
    except OSError:
        return None
    return {"server": "hello"} if text == "Hello, world" else None


async def run_benchmark(
    *, requests: int = 15_000, concurrency: int = 32, seconds: float = 20.0, rounds: int = 3
) -> dict[str, list[Measurement]]:
    """Measure the bare server and the mock API in alternating rounds; returns every run by target."""
    hello = start_server("bare aiohttp", "server.mockapi.hello", port=None, identify=_identify_hello, reuse=False)
    mock = start_mock_api(port=None, reuse=False)
    targets: list[tuple[str, ServerHandle, Callable[[int], str]]] = [
        ("bare aiohttp  GET /", hello, lambda n: "/"),
        ("mock API      GET /", mock, lambda n: "/"),
        ("mock API      GET /items/{id}", mock, lambda n: f"/items/{n % 1000}"),
    ]
    results: dict[str, list[Measurement]] = {name: [] for name, _, _ in targets}
    try:
        for _ in range(rounds):
            for name, handle, paths in targets:
                results[name].append(
                    await measure(name, handle, paths, requests=requests, concurrency=concurrency, seconds=seconds)
                )
    finally:
        hello.stop()
        mock.stop()
    return results


def _report(results: dict[str, list[Measurement]]) -> str:
    def best(name: str, key: Callable[[Measurement], float]) -> float:
        return max(key(m) for m in results[name])

    lines = [f"{'target':32} {'requests':>9} {'req/s (wall)':>13} {'req per server CPU-s':>21} {'non-200':>8}"]
    for name, runs in results.items():
        lines.append(
            f"{name:32} {sum(m.requests for m in runs):9d} "
            f"{best(name, lambda m: m.per_second):13.0f} "
            f"{best(name, lambda m: m.per_server_cpu_second):21.0f} "
            f"{sum(m.failures for m in runs):8d}"
        )
    bare, items = "bare aiohttp  GET /", "mock API      GET /items/{id}"
    wall = best(items, lambda m: m.per_second) / best(bare, lambda m: m.per_second)
    cpu = best(items, lambda m: m.per_server_cpu_second) / best(bare, lambda m: m.per_server_cpu_second)
    spread = [
        statistics.pstdev([m.per_second for m in runs]) / statistics.mean([m.per_second for m in runs])
        for runs in results.values()
        if len(runs) > 1
    ]
    lines += [
        "",
        f"ratio mock /items/{{id}} : bare /   wall-clock {wall:.2f}   server CPU {cpu:.2f}   (target >= 0.80)",
        f"best of {len(next(iter(results.values())))} rounds per target"
        + (f"; run-to-run spread of req/s up to {max(spread):.0%}" if spread else ""),
        f"load: {psutil.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in psutil.getloadavg())}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.benchmarks.mockapi", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=15_000, help="requests per timed run (default 15000)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent client workers (default 32)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time bound per run (default 20 s)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per target (default 3)")
    args = parser.parse_args(argv)
    results = asyncio.run(
        run_benchmark(requests=args.requests, concurrency=args.concurrency, seconds=args.seconds, rounds=args.rounds)
    )
    print(_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
