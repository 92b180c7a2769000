"""Fetch every item of an items API, politely: ``python -m course.fetch BASE_URL --rate R``.

Lists ``BASE_URL/items`` (following pages when the API paginates), fetches
each ``BASE_URL/items/{id}`` through the worker pool (rate limit, 429/503
handling, bounded retries), and writes one JSON line per item to ``--out``
(or stdout)::

    {"id": 7, "status": 200, "data": {"email": "..."}}
    {"id": 8, "status": 500, "error": "gave up after 6 attempts; last error: HTTP 500 ..."}

Progress and a summary go to stderr. The exit status is 0 when every item
was fetched, 1 when any failed, 2 when the items could not be listed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import TextIO

from course.limiters import RateLimiter
from course.listing import ListingError, list_items
from course.policies import RetryPolicy
from course.records import Outcome
from course.workers import RunReport, WorkerPool

__all__ = ["fetch_all", "main"]

log = logging.getLogger("course.fetch")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m course.fetch",
        description="Fetch BASE_URL/items/{id} for every id listed at BASE_URL/items, "
        "at a steady rate, retrying errors; one JSON line per item.",
    )
    parser.add_argument("base_url", metavar="BASE_URL", help="the API's root, e.g. http://127.0.0.1:8080")
    parser.add_argument("--rate", type=float, required=True, help="requests per --per seconds (the API's limit)")
    parser.add_argument("--per", type=float, default=1.0, help="the rate's period in seconds (default 1)")
    parser.add_argument("--workers", type=int, default=32, help="concurrent workers (default 32)")
    parser.add_argument("--out", metavar="FILE", help="write the JSON lines here (default: stdout)")
    parser.add_argument("--retries", type=int, default=5, help="retries per item for errors (default 5)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    parser.add_argument("--per-page", type=int, default=1000, help="page size when listing (default 1000)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.per <= 0:
        parser.error("--rate and --per must be positive")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8") as handle:
        yield handle


async def fetch_all(
    base_url: str,
    out: TextIO,
    *,
    rate: float,
    per: float = 1.0,
    workers: int = 32,
    retries: int = 5,
    timeout: float = 30.0,
    per_page: int = 1000,
    progress: bool = False,
) -> RunReport:
    """List and fetch every item of ``base_url``; write one JSON line per item to ``out``."""
    base = base_url.rstrip("/")

    def write(outcome: Outcome) -> None:
        out.write(json.dumps(outcome.to_json()) + "\n")

    pool = WorkerPool(
        base + "/items/{item}",
        workers=workers,
        limiter=RateLimiter(rate, per),
        retry=RetryPolicy(retries=retries),
        timeout=timeout,
        progress=progress,
    )
    async with pool:
        return await pool.run(list_items(pool, base, per_page=per_page), on_outcome=write)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        with _output(args.out) as out:
            report = asyncio.run(
                fetch_all(
                    args.base_url,
                    out,
                    rate=args.rate,
                    per=args.per,
                    workers=args.workers,
                    retries=args.retries,
                    timeout=args.timeout,
                    per_page=args.per_page,
                    progress=not args.quiet,
                )
            )
    except ListingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    stats = report.stats["fetch"]
    print(
        f"{report.succeeded} fetched, {report.failed} failed; {stats.requests} requests "
        f"({stats.retries} retries), status {stats.by_status}, errors {stats.errors}, "
        f"{stats.elapsed:.1f} s",
        file=sys.stderr,
    )
    for failure in report.failures[:10]:
        print(f"failed: item {failure.item!r}: {failure.error}", file=sys.stderr)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
