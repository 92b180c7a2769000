"""Lesson 04 (the synchronous baseline): exercises.

``sequential_seconds`` is arithmetic; ``fetch_emails`` is judged from the other
end of the wire: the checker puts a small relay in front of its own mock API
and counts the TCP connections the learner's loop opened.
"""

from __future__ import annotations

import inspect
import math
import selectors
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import requests

from course.checks import Exercise, Incorrect, Mistake, checker_mock_api
from course.mockapi_control import MockAPIControl

__all__ = ["fetch_emails", "sequential_seconds"]

# (requests, latency per request, client + server overhead per request)
_CASES = [(1, 0.05, 0.002), (1000, 0.05, 0.002), (250, 0.0, 0.001), (40, 0.1, 0.0), (7, 0.02, 0.003)]


def _sequential_seconds(n_requests: int, latency: float, overhead: float) -> float:
    """Seconds a one-request-at-a-time loop needs: every request waits its full round trip."""
    return n_requests * (latency + overhead)


def _check_sequential_seconds(answer: Callable[[int, float, float], Any]) -> None:
    for n, latency, overhead in _CASES:
        expected = _sequential_seconds(n, latency, overhead)
        got = answer(n, latency, overhead)
        Incorrect.unless(
            isinstance(got, (int, float)) and not isinstance(got, bool),
            f"sequential_seconds({n}, {latency}, {overhead}) returned {got!r}; return a number of seconds.",
        )
        Incorrect.unless(
            math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12),
            f"sequential_seconds({n}, {latency}, {overhead}) returned {got:g}, expected {expected:g}. "
            "In a loop each request starts only when the previous one has finished: "
            "how long does one take, and how many are there?",
        )


sequential_seconds = Exercise(
    "sequential_seconds",
    checker=_check_sequential_seconds,
    hint_text=(
        "One request costs the network round trip (`latency`) plus the time both programs "
        "spend working on it (`overhead`). Nothing overlaps in a loop."
    ),
    answer=_sequential_seconds,
    wrong_answers=(
        # forgets the work done per request
        Mistake(lambda n, latency, overhead: n * latency, "returned 0.05, expected 0.052"),
        # forgets that there are n of them
        Mistake(lambda n, latency, overhead: latency + overhead, "returned 0.052, expected 52"),
        # overhead counted once
        Mistake(lambda n, latency, overhead: n * latency + overhead, "returned 50.002, expected 52"),
        # as if waiting and working overlapped
        Mistake(lambda n, latency, overhead: max(latency, overhead) * n, "returned 0.05, expected 0.052"),
    ),
    solution_code=(
        "def sequential_seconds(n_requests, latency, overhead):\n"
        "    # one after another: n round trips, each latency + overhead long\n"
        "    return n_requests * (latency + overhead)\n"
    ),
    success="a loop pays the whole round trip once per request.",
)


# -- fetch_emails: one Session, one connection ---------------------------------------------------


class ConnectionCountingRelay:
    """A TCP relay on a free loopback port in front of ``target_url``; counts the connections
    clients open through it (what the server's side of the wire sees as new connections).

    Use it as a context manager: ``with ConnectionCountingRelay(url) as relay: ... relay.url``.
    """

    def __init__(self, target_url: str, *, idle_timeout: float = 30.0) -> None:
        target = urlsplit(target_url)
        if target.hostname is None or target.port is None:
            raise ValueError(f"the relay needs a URL with a host and a port, not {target_url!r}")
        self._target = (target.hostname, target.port)
        self._idle_timeout = idle_timeout
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._opened = 0
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._opened

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                self._opened += 1
            threading.Thread(target=self._relay, args=(client,), name="relay-pipe", daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client, socket.create_connection(self._target) as upstream, selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ, (client, upstream))
            selector.register(upstream, selectors.EVENT_READ, (upstream, client))
            while True:
                ready = selector.select(timeout=self._idle_timeout)
                if not ready:
                    return
                for key, _ in ready:
                    source, destination = key.data
                    try:
                        data = source.recv(65536)
                        if not data:
                            return
                        destination.sendall(data)
                    except OSError:
                        return

    def close(self) -> None:
        """Stop accepting; open relays end when either side closes."""
        self._listener.close()

    def __enter__(self) -> ConnectionCountingRelay:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


_EMAIL_IDS = [3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26]


def _fetch_emails(base_url: str, ids: list[int]) -> list[str]:
    """The email of each item in ``ids``, in that order, over one kept-alive connection."""
    found = []
    with requests.Session() as session:  # one pool, kept for the whole loop
        for item in ids:
            answer = session.get(f"{base_url}/items/{item}", timeout=10)
            answer.raise_for_status()
            found.append(answer.json()["email"])
    return found


def _check_fetch_emails(answer: Callable[[str, list[int]], Any]) -> None:
    base = checker_mock_api({})
    with requests.Session() as mine:
        expected = [mine.get(f"{base}/items/{item}", timeout=10).json()["email"] for item in _EMAIL_IDS]
    control = MockAPIControl(base)
    control.reset()
    with ConnectionCountingRelay(base) as relay:
        got = answer(relay.url, list(_EMAIL_IDS))
        opened = relay.connections
    served = control.stats(detail=True)["served"]
    Incorrect.unless(
        isinstance(got, list) and len(got) == len(_EMAIL_IDS),
        f"fetch_emails(base_url, <{len(_EMAIL_IDS)} ids>) returned {got!r:.80}; "
        f"expected a list of {len(_EMAIL_IDS)} email addresses.",
    )
    for item in _EMAIL_IDS:
        times = served.get(str(item), 0)
        Incorrect.unless(times == 1, f"item {item} was served {times} times; fetch each id exactly once.")
    for index, (mine_email, right) in enumerate(zip(got, expected, strict=True)):
        Incorrect.unless(
            mine_email == right,
            f"result {index} is {mine_email!r}, expected {right!r} (the email of item {_EMAIL_IDS[index]}): "
            "return the emails in the order of ids.",
        )
    Incorrect.unless(
        opened <= 2,
        f"the server saw {opened} connections for {len(_EMAIL_IDS)} requests: every request paid for a new "
        "TCP connection. One requests.Session, kept for the whole loop, keeps one connection open for all of them.",
    )


def _fetch_emails_module_get(base_url: str, ids: list[int]) -> list[str]:
    found = []
    for item in ids:  # the mistake: requests.get makes (and drops) a session per call
        answer = requests.get(f"{base_url}/items/{item}", timeout=10)
        answer.raise_for_status()
        found.append(answer.json()["email"])
    return found


def _fetch_emails_session_per_request(base_url: str, ids: list[int]) -> list[str]:
    found = []
    for item in ids:
        with requests.Session() as session:  # the mistake: a new session (and connection) each time
            found.append(session.get(f"{base_url}/items/{item}", timeout=10).json()["email"])
    return found


def _fetch_emails_sorted(base_url: str, ids: list[int]) -> list[str]:
    with requests.Session() as session:  # the mistake: the order of ids is lost
        return [session.get(f"{base_url}/items/{item}", timeout=10).json()["email"] for item in sorted(ids)]


fetch_emails = Exercise(
    "fetch_emails",
    checker=_check_fetch_emails,
    hint_text=(
        "Open one `requests.Session()` (a `with` block closes it at the end) before the loop and call "
        "`session.get(...)` inside it; the session's connection pool keeps the connection alive between requests."
    ),
    answer=_fetch_emails,
    wrong_answers=(
        Mistake(_fetch_emails_module_get, "the server saw 12 connections for 12 requests"),
        Mistake(_fetch_emails_session_per_request, "the server saw 12 connections"),
        Mistake(_fetch_emails_sorted, "in the order of ids"),
    ),
    solution_code=inspect.getsource(_fetch_emails).replace("def _fetch_emails(", "def fetch_emails(", 1),
    success="twelve requests, one connection: no handshake after the first.",
)
