"""Serving: one gateway process on a bound socket, or several under a supervisor.

Each worker process runs its own event loop, database pool and ``LISTEN``
connection, and listens on the same port (``SO_REUSEPORT``: the kernel
spreads new connections among the workers). The supervisor only starts the
workers, starts a worker that dies again, and passes SIGTERM/SIGINT on.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time

from aiohttp import web

from server.cli import bind_error, raise_open_file_limit

from .app import Gateway
from .settings import Settings

__all__ = ["BindError", "bind", "run_worker", "serve", "supervise"]

log = logging.getLogger("server.push")

#: Descriptors kept free beyond the streams: listening socket, database connections, logs.
FILE_RESERVE = 64
#: The cyclic garbage collector's thresholds in a worker. A collection of the oldest
#: generation walks every object of every open stream (at 5,000 streams a process,
#: 0.1-0.4 s of CPU, stretched several times over on a busy machine, while no stream is
#: served): it runs ten times less often than with Python's default (700, 10, 10).
GC_THRESHOLDS = (700, 10, 100)
#: A worker that dies sooner than this after its start is not started again (it would only die again).
MIN_WORKER_LIFE = 5.0
LOG_FORMAT = "%(levelname)s %(name)s[%(process)d]: %(message)s"


class BindError(OSError):
    """The address cannot be listened on; the message says why and what to do."""


def bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A socket bound to ``host:port`` (BindError with the reason if it cannot be)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, protocol, _, address = infos[0]
        sock = socket.socket(family, kind, protocol)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
        except BaseException:
            sock.close()
            raise
    except OSError as exc:
        raise BindError(bind_error(host, port, exc)) from None
    return sock


def run_worker(settings: Settings, sock: socket.socket | None = None) -> int:
    """Serve until SIGTERM/SIGINT; ``sock``: a bound socket to listen on (else bind anew)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    wanted = settings.max_connections + FILE_RESERVE
    if (soft := raise_open_file_limit(wanted)) < wanted:
        log.warning("the open-file limit (%d) is below %d: raise it (ulimit -n) to hold more streams", soft, wanted)
    if sock is None:
        sock = bind(settings.host, settings.port, reuse_port=settings.workers > 1)
    gc.freeze()  # what the worker imported lives as long as it does: never walk it again
    gc.set_threshold(*GC_THRESHOLDS)
    asyncio.run(serve(settings, sock))
    return 0


async def serve(settings: Settings, sock: socket.socket) -> None:
    gateway = Gateway(settings)
    runner = web.AppRunner(gateway.make_app(), handler_cancellation=True, access_log=None)
    await runner.setup()
    sock.listen(1024)
    site = web.SockSite(runner, sock)
    await site.start()
    host, port = sock.getsockname()[:2]
    log.info(
        "push gateway on http://%s:%s (pid %d): at most %d streams, %s per user",
        f"[{host}]" if ":" in str(host) else host,
        port,
        os.getpid(),
        settings.max_connections,
        settings.max_per_user or "unlimited",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("stopping: telling %d open streams to reconnect", gateway.fanout.connections())
        await site.stop()  # no new connections
        await gateway.close_streams(settings.shutdown_grace)
    finally:
        await runner.cleanup()


# -- several processes -----------------------------------------------------------------------


def _worker_main(settings: Settings) -> None:  # pragma: no cover - runs in a child
    _die_with_parent()
    sys.exit(run_worker(settings))


def _die_with_parent() -> None:  # pragma: no cover - runs in a child
    """Linux: have the kernel SIGTERM this worker if the supervisor dies."""
    if sys.platform != "linux":
        return
    import ctypes

    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def supervise(settings: Settings) -> int:
    """Run ``settings.workers`` worker processes; restart one that dies; pass SIGTERM on."""
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker_main, args=(settings,), name="push-worker")
        process.start()
        return process

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    workers = [start() for _ in range(settings.workers)]
    log.info("push gateway: %d workers on port %d", settings.workers, settings.port)
    started = [time.monotonic()] * len(workers)
    status = 0
    while not stopping:
        multiprocessing.connection.wait([w.sentinel for w in workers], timeout=0.5)
        for index, worker in enumerate(workers):
            if worker.is_alive() or stopping:
                continue
            if time.monotonic() - started[index] < MIN_WORKER_LIFE:
                log.error("worker %s exited with %s right after it started; stopping", worker.pid, worker.exitcode)
                stopping, status = True, 1
                break
            log.warning("worker %s exited with %s; starting another", worker.pid, worker.exitcode)
            workers[index] = start()
            started[index] = time.monotonic()
    for worker in workers:
        if worker.is_alive() and worker.pid is not None:
            os.kill(worker.pid, signal.SIGTERM)
    for worker in workers:
        worker.join(settings.shutdown_grace + 10)
        if worker.is_alive():
            worker.kill()
            worker.join()
    return status
