"""Run an aiohttp application until SIGTERM or SIGINT, logging where it listens."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable

from aiohttp import web

__all__ = ["serve"]

log = logging.getLogger(__name__)


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    access_log: bool = False,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Listen on ``host:port`` (0 = any free port) until SIGTERM/SIGINT, then stop cleanly.

    Logs ``serving on http://H:P`` once the socket is bound; ``on_ready`` gets the same URL.
    Raises ``OSError`` (e.g. "address already in use") if the port cannot be bound.
    """
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=logging.getLogger("aiohttp.access") if access_log else None,
        shutdown_timeout=2.0,
    )
    await runner.setup()
    # Everything made so far (Faker's data, cached bodies) lives as long as the
    # server: keep it out of the garbage collector's full passes.
    gc.freeze()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        url = f"http://{bound_host}:{bound_port}"
        log.info("serving on %s", url)
        if on_ready is not None:
            on_ready(url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        log.info("stopping (signal received)")
    finally:
        await runner.cleanup()
    log.info("stopped")
