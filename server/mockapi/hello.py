"""A bare aiohttp hello-world server, the benchmark's yardstick: ``python -m server.mockapi.hello``.

No middleware, no stats, no scenario: what aiohttp itself costs per request.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from aiohttp import web

from .serve import serve

__all__ = ["make_hello_app"]


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="Hello, world")


def make_hello_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", _hello)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.mockapi.hello", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(make_hello_app(), args.host, args.port))
    except OSError as exc:
        logging.getLogger(__name__).error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
