"""Load check of the three transports: ``python -m server.messaging.bench [--users 100]``.

Starts the app in its own process, logs ``--users`` simulated users in with
``course.notify``, lets each follow its notifications with one transport,
sends each of them one message, and prints per transport: how long a
notification took to arrive (median and 95th percentile, from the start of
the send) and how many requests the server answered per delivered
notification. Figures vary with the machine; the ratios are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from course import notify
from course.servers import start_messaging_app

from . import create_app
from .seed import DEMO_PASSWORD, seed_demo

FAST_HASH = "pbkdf2:sha256:1000"


@dataclass(frozen=True)
class TransportFigures:
    transport: str
    users: int
    delivered: int
    median_delay_s: float
    p95_delay_s: float
    requests_per_delivery: float

    def row(self) -> str:
        return (
            f"{self.transport:9} users={self.users:4} delivered={self.delivered:4} "
            f"delay median={self.median_delay_s:6.3f} s  p95={self.p95_delay_s:6.3f} s  "
            f"requests/delivery={self.requests_per_delivery:6.1f}"
        )


async def measure(url: str, transport: str, users: int, interval: float, send_rate: float) -> TransportFigures:
    names = [f"user{i}" for i in range(1, users + 1)]
    sessions = [notify.client_session() for _ in names]
    sender = notify.client_session()
    sent_at: dict[str, float] = {}
    delays: list[float] = []
    counters = [notify.Counters() for _ in names]
    done = asyncio.Event()
    try:
        await asyncio.gather(*(notify.login(s, url, n, DEMO_PASSWORD) for s, n in zip(sessions, names)))
        await notify.login(sender, url, "sender", DEMO_PASSWORD)
        baseline = []
        for session, counter in zip(sessions, counters):  # start after what exists
            async with session.get(f"{url}/notifications") as response:
                items = await response.json()
            counter.cursor = max((item["id"] for item in items), default=0)
            baseline.append(counter.cursor)

        def on_notification(name: str):  # type: ignore[no-untyped-def]
            def record(note: notify.Notification) -> None:
                if note.data and name in sent_at:
                    delays.append(time.monotonic() - sent_at.pop(name))
                    if len(delays) == users:
                        done.set()

            return record

        options = {"poll": {"interval": interval}, "longpoll": {}, "sse": {}}[transport]
        tasks = [
            asyncio.create_task(
                notify.follow(s, url, on_notification(n), transport, after=c.cursor, counters=c, **options)
            )
            for s, n, c in zip(sessions, names, counters)
        ]
        await asyncio.sleep(1.0)  # let every client connect
        requests_before = sum(c.requests for c in counters)
        for name in names:
            sent_at[name] = time.monotonic()
            await notify.send_message(sender, url, name, f"load test via {transport}")
            await asyncio.sleep(1 / send_rate)
        try:
            await asyncio.wait_for(done.wait(), timeout=60)
        except TimeoutError:
            pass
        requests = sum(c.requests for c in counters) - requests_before
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for session in [*sessions, sender]:
            await session.close()
    ordered = sorted(delays) or [float("nan")]
    return TransportFigures(
        transport,
        users,
        len(delays),
        statistics.median(ordered),
        ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        requests / max(len(delays), 1),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.messaging.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--interval", type=float, default=2.0, help="poll interval, seconds")
    parser.add_argument("--send-rate", type=float, default=20.0, help="messages per second")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="messaging-bench-"))
    database = f"sqlite:///{folder / 'messaging.db'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": database, "INSTANCE_PATH": str(folder), "PASSWORD_HASH_METHOD": FAST_HASH})
    seed_demo(app, users=args.users, messages=0)
    with app.app_context():
        from .extensions import db
        from .models import User

        if db.session.scalar(db.select(User).where(User.username == "sender")) is None:
            sender = User(username="sender", email="sender@example.com")
            sender.set_password(DEMO_PASSWORD)
            db.session.add(sender)
            db.session.commit()
        db.engine.dispose()
    server = start_messaging_app(
        port=None,
        database_url=database,
        config={
            "MESSAGING_INSTANCE_PATH": str(folder),
            "MESSAGING_THREADS": str(args.users + 32),
            "PASSWORD_HASH_METHOD": FAST_HASH,
        },
        reuse=False,
    )
    try:
        for transport in ("poll", "longpoll", "sse"):
            figures = asyncio.run(measure(server.url, transport, args.users, args.interval, args.send_rate))
            sys.stdout.write(figures.row() + "\n")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
