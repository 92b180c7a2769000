"""Run an aiohttp application until SIGTERM or SIGINT, logging where it listens.

A request aiohttp cannot even parse (a request line or header over 8190
bytes, a malformed request line...) is answered by aiohttp itself with a
plain-text 400; the log gets one line for it, not a traceback.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import signal
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .scenario import shorten

__all__ = ["serve"]

log = logging.getLogger(__name__)


class _OneLineForBadRequests(logging.Filter):
    """Turn aiohttp's "Error handling request" traceback for an unparseable request into one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            reason = shorten(" ".join(str(error.message).split()), 160)
            record.msg = "refused a request aiohttp could not parse (%s %s): %s"
            record.args = (error.code, type(error).__name__, reason)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


#: The logger given to aiohttp's connection handlers (its default is "aiohttp.server").
_http_log = logging.getLogger(__name__ + ".http")
_http_log.addFilter(_OneLineForBadRequests())


def _exposed(addresses: Sequence[Any]) -> list[str]:
    """The bound addresses other machines could reach (anything but loopback)."""
    exposed = []
    for address in addresses:
        host = address[0] if isinstance(address, tuple) else str(address)
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            exposed.append(host)
    return exposed


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
    Logs a warning when bound to an address other machines can reach (not loopback):
    the servers here have no authentication.
    Raises ``OSError`` (e.g. "address already in use") if the port cannot be bound.
    """
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=logging.getLogger("aiohttp.access") if access_log else None,
        shutdown_timeout=2.0,
        logger=_http_log,
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
        exposed = _exposed(runner.addresses)
        if exposed:
            log.warning(
                "listening on %s, which is not loopback: anyone who can reach this port can use every route "
                "(there is no authentication). Use --host 127.0.0.1 unless you mean it.",
                ", ".join(exposed),
            )
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
