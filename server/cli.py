"""What the servers' command lines share (``python -m server.mockapi``, ``server.messaging``, ``server.push``).

Every one of them answers a bad argument with one line on stderr and exit
status 2 (``USAGE_ERROR``): ``OneLineParser`` does that for argparse's own
errors; ``whole_number`` is the argparse type of ports, counts and limits;
``bind_error`` words why an address cannot be listened on;
``raise_open_file_limit`` makes room for many sockets (each open connection
is a file descriptor; the usual soft limit, 1024, is far too low).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import socket
from collections.abc import Callable
from typing import NoReturn

__all__ = ["USAGE_ERROR", "OneLineParser", "bind_error", "raise_open_file_limit", "whole_number"]

#: Exit status of a command line the program cannot use.
USAGE_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")


def whole_number(low: int, high: int, meaning: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high`` (``meaning`` follows the range)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {low} to {high}{meaning}")
        return value

    return parse


def bind_error(host: str, port: int, exc: OSError) -> str:
    """Why ``host:port`` cannot be listened on, and what to do (one line)."""
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use: stop the program using it, or pick another --port"
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on port {port} of {host}: pick a port above 1023"
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on --host {host}: not an address of this machine ({exc.strerror or exc})"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def raise_open_file_limit(wanted: int) -> int:
    """Raise the soft ``RLIMIT_NOFILE`` towards ``wanted`` (as far as the hard limit allows).

    Returns the soft limit now in force (``wanted`` if it is at least that,
    or where there is no such limit); the caller says so when it is short.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows: no such limit
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return int(soft)
