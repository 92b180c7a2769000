"""A throwaway Redis server for a test or a notebook: ``start_redis()``.

Lesson 11 runs clients in several processes that share a rate limit and a
work queue through Redis. Each test session or notebook runs a server of its
own: Debian's ``redis-server`` (``make redis`` installs it), on a free port,
bound to 127.0.0.1, with nothing saved to disk (``--save '' --appendonly
no``) and its working folder in a temporary directory. It answers ``PING``
before ``start_redis`` returns, and it is stopped when the Python process
exits (or when its parent dies, on Linux).

    >>> redis = start_redis()
    >>> redis.url
    'redis://127.0.0.1:40123/0'
    >>> redis.stop()
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from course.servers import (
    DEFAULT_HOST,
    ServerStartError,
    _port_in_use,
    _spawn,
    _tail,
    _terminate,
    free_port,
)

__all__ = ["REDIS_SERVER", "RedisHandle", "RedisNotInstalled", "redis_available", "start_redis"]

log = logging.getLogger(__name__)

#: The server binary: ``$COURSE_REDIS_SERVER``, else ``redis-server`` on the PATH, else Debian's path.
REDIS_SERVER = os.environ.get("COURSE_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisNotInstalled(ServerStartError):
    """There is no ``redis-server`` to run."""


def redis_available() -> bool:
    """True if ``REDIS_SERVER`` is an executable file."""
    return os.access(REDIS_SERVER, os.X_OK)


@dataclass
class RedisHandle:
    """A Redis server this process started; ``url`` is what clients connect to."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    folder: Path
    log_path: Path
    db: int = 0
    _cleanup: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def output(self, last_lines: int = 40) -> str:
        """The tail of the server's log."""
        return _tail(self.log_path, last_lines)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server and remove its folder (twice is harmless)."""
        _terminate(self.process, timeout)
        _STARTED.pop(self.port, None)
        if self._cleanup is not None:
            self._cleanup.cleanup()
            self._cleanup = None

    def __enter__(self) -> RedisHandle:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# Servers this process started, stopped at exit.
_STARTED: dict[int, RedisHandle] = {}


def start_redis(port: int | None = None, *, host: str = DEFAULT_HOST, timeout: float = 10.0) -> RedisHandle:
    """Start ``redis-server`` on ``port`` (None: a free one) and wait until it answers PING.

    Raises ``RedisNotInstalled`` if there is no server binary, ``ServerStartError``
    if it does not come up (the message carries its log).
    """
    if not redis_available():
        raise RedisNotInstalled(
            f"{REDIS_SERVER} is not there: install Debian's redis-server (`make redis`, or "
            f"`apt-get install redis-server`), or set COURSE_REDIS_SERVER to a redis-server binary"
        )
    if port is not None and _port_in_use(host, port):
        raise ServerStartError(f"Port {port} on {host} is taken: stop what listens there, or pass port=None")
    attempts = 3 if port is None else 1
    last_error: ServerStartError | None = None
    for _ in range(attempts):
        chosen = port if port is not None else free_port(host)
        try:
            return _launch(host, chosen, timeout)
        except ServerStartError as exc:  # a free port can be taken before the server binds it
            last_error = exc
            if "address already in use" not in str(exc).lower():
                raise
    assert last_error is not None
    raise last_error


def _launch(host: str, port: int, timeout: float) -> RedisHandle:
    cleanup = tempfile.TemporaryDirectory(prefix=f"redis-{port}-")
    folder = Path(cleanup.name)
    log_path = folder / "redis.log"
    cmd = [
        REDIS_SERVER,
        "--port", str(port),
        "--bind", host,
        "--save", "",
        "--appendonly", "no",
        "--dir", str(folder),
        "--daemonize", "no",
        "--logfile", "",  # to stdout, i.e. the log file below
        "--protected-mode", "yes",
    ]  # fmt: skip
    with open(log_path, "wb") as log_file:
        process = _spawn(cmd, log_file)  # dies with this process, not with the starting thread
    handle = RedisHandle(host, port, process, folder, log_path, _cleanup=cleanup)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            output = handle.output()
            handle.stop()
            raise ServerStartError(
                f"redis-server exited with code {process.returncode} before answering on {host}:{port}.\n"
                f"Command: {' '.join(cmd)}\nIts output:\n{output}"
            )
        if _answers_ping(host, port, process.pid):
            _STARTED[port] = handle
            log.info("redis-server answering at %s", handle.url)
            return handle
        if time.monotonic() > deadline:
            output = handle.output()
            handle.stop()
            raise ServerStartError(
                f"redis-server did not answer PING on {host}:{port} within {timeout:.0f} s.\nIts output:\n{output}"
            )
        time.sleep(0.02)


def _answers_ping(host: str, port: int, pid: int) -> bool:
    """True if the Redis server of process ``pid`` answers ``PING`` there (the protocol's inline commands)."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\nINFO server\r\n")
            answer = b""
            while b"process_id:" not in answer or not answer.endswith(b"\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    return False
                answer += chunk
    except OSError:
        return False
    return answer.startswith(b"+PONG") and f"process_id:{pid}\r\n".encode() in answer


def _stop_all() -> None:
    for handle in list(_STARTED.values()):
        handle.stop()


atexit.register(_stop_all)
