"""Load check of the three transports: ``python -m course.benchmarks.messaging [--users 100]``.

Starts the messaging app in its own process (a new SQLite database in a
temporary folder), signs ``--users`` simulated readers and one sender in
with ``course.notify``, and for each transport runs lesson 03's experiment
(``course.lesson03_delivery.measure``): every reader follows its
notifications with that transport, the sender sends each reader one message
at ``--send-rate`` per second, and the run waits for every notification.
It prints per transport how long a notification took to arrive (median and
95th percentile, nearest rank, from the start of the send:
``course.delivery``) and how many requests the readers made per delivered
message, their first requests (connections, for SSE) included. Figures vary
with the machine; the ratios are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course import notify
from course.lesson03_delivery import TransportRun, close_all, measure, sign_in
from course.servers import FAST_HASH, start_messaging_app
from server.messaging.seed import DEMO_PASSWORD, seed_database

__all__ = ["TransportFigures", "main", "measure_transports"]

TRANSPORTS: tuple[notify.Transport, ...] = ("poll", "longpoll", "sse")


@dataclass(frozen=True)
class TransportFigures:
    """One transport's line of the report."""

    transport: str
    users: int
    delivered: int
    median_delay_s: float
    p95_delay_s: float
    requests_per_delivery: float

    @classmethod
    def of(cls, run: TransportRun) -> TransportFigures:
        return cls(run.transport, run.users, run.delivered, run.median, run.p95, run.requests_per_delivery)

    def row(self) -> str:
        return (
            f"{self.transport:9} users={self.users:4} delivered={self.delivered:4} "
            f"delay median={self.median_delay_s:6.3f} s  p95={self.p95_delay_s:6.3f} s  "
            f"requests/delivery={self.requests_per_delivery:6.1f}"
        )


async def measure_transports(
    url: str,
    readers: Sequence[str],
    sender: str,
    *,
    interval: float,
    send_rate: float,
    transports: Sequence[notify.Transport] = TRANSPORTS,
) -> list[TransportRun]:
    """Lesson 03's experiment once per transport, one message per reader each time."""
    options: dict[str, dict[str, Any]] = {"poll": {"interval": interval}, "longpoll": {}, "sse": {}}
    group = await sign_in(url, list(readers), DEMO_PASSWORD)
    sending = notify.client_session()
    try:
        await notify.login(sending, url, sender, DEMO_PASSWORD)
        return [
            await measure(
                url, transport, group, sending, messages=len(group), rate=send_rate, drain_timeout=60.0,
                **options[transport],
            )
            for transport in transports
        ]
    finally:
        await close_all(group)
        await sending.close()


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m course.benchmarks.messaging", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--users", type=int, default=100, help="simulated readers (default 100)")
    parser.add_argument("--interval", type=float, default=2.0, help="poll interval, seconds (default 2)")
    parser.add_argument("--send-rate", type=float, default=20.0, help="messages per second (default 20)")
    args = parser.parse_args(argv)
    if args.users < 1 or args.interval <= 0 or args.send_rate <= 0:
        parser.error("--users must be at least 1, --interval and --send-rate above 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    names = [f"user{i}" for i in range(1, args.users + 2)]  # the readers, then the sender
    with tempfile.TemporaryDirectory(prefix="messaging-bench-") as folder:
        database = f"sqlite:///{Path(folder) / 'messaging.db'}"
        seed_database(database, users=len(names), messages=0, PASSWORD_HASH_METHOD=FAST_HASH)
        # A thread for every reader twice over: one run's long polls, still held
        # until the server notices their reader hung up (within a second), never
        # crowd out the next run's.
        server = start_messaging_app(
            port=None,
            folder=folder,
            config={"MESSAGING_THREADS": str(2 * args.users + 32), "PASSWORD_HASH_METHOD": FAST_HASH},
            reuse=False,
        )
        try:
            runs = asyncio.run(
                measure_transports(
                    server.url, names[:-1], names[-1], interval=args.interval, send_rate=args.send_rate
                )
            )
        finally:
            server.stop()
    for run in runs:
        sys.stdout.write(TransportFigures.of(run).row() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
