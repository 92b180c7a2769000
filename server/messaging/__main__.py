"""Command line: serve the app, or create demo data.

    python -m server.messaging [--host 127.0.0.1] [--port 5000] [--threads 64]
    python -m server.messaging seed-demo [--users 5] [--messages 20]

The server is waitress, a production WSGI server with a pool of threads:
each long poll or event stream holds one thread while it waits, so
``--threads`` must exceed the number of clients that hold one at a time.
Past ``--threads`` minus a reserve (``MAX_WAITING_REQUESTS``), waiting
requests are refused with 503 so pages and sends still get a thread.
Waitress sends streamed output as soon as it is written (``send_bytes=1``),
so Server-Sent Events reach the browser at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from . import create_app
from .seed import seed_demo

log = logging.getLogger("server.messaging")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.messaging", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("MESSAGING_THREADS", "64")),
        help="worker threads; each open long poll or stream holds one (default 64, or $MESSAGING_THREADS)",
    )
    commands = parser.add_subparsers(dest="command")
    seed = commands.add_parser("seed-demo", help="create users user1..userN (password 'password') and messages")
    seed.add_argument("--users", type=int, default=5)
    seed.add_argument("--messages", type=int, default=20)
    seed.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = {}
    if "MAX_WAITING_REQUESTS" not in os.environ:
        # Keep threads free for pages and sends however many clients wait.
        overrides["MAX_WAITING_REQUESTS"] = max(1, args.threads - max(4, args.threads // 8))
    app = create_app(overrides)

    if args.command == "seed-demo":
        report = seed_demo(app, users=args.users, messages=args.messages, seed=args.seed)
        sys.stdout.write(
            f"users: {', '.join(report.usernames)} (password: {report.password!r}); "
            f"{report.users_created} created, {report.messages_sent} messages sent\n"
        )
        return 0

    from waitress import serve

    log.info(
        "messaging app on http://%s:%s with %d threads, at most %s waiting requests",
        args.host,
        args.port,
        args.threads,
        app.config["MAX_WAITING_REQUESTS"] or "unlimited",
    )
    serve(
        app,
        host=args.host,
        port=args.port,
        threads=args.threads,
        connection_limit=max(1000, 4 * args.threads),
        asyncore_use_poll=True,  # select() stops at 1024 descriptors
        channel_timeout=300,
        # Keep reading while a request runs, so a waiting long poll or stream
        # notices its client hung up (environ["waitress.client_disconnected"]).
        channel_request_lookahead=4,
        ident="messaging",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
