"""Password hashing, a few at a time, on threads of its own.

werkzeug's default method, scrypt, is deliberately expensive: each hash or
check takes about 32 MiB of memory for some tens of milliseconds, so that
guessing passwords offline is slow. Online, it is what an attacker spends:
thirty-two wrong sign-ins at once are a gigabyte of server memory, and the
C allocator keeps much of it afterwards in the arenas of the threads that
ran them.

``PasswordHasher`` therefore runs every hash on a small pool of its own
threads (``workers``, ``PASSWORD_HASH_WORKERS``): at most that many hashes
use memory at a time, always in the same few threads, so the memory kept
stays that of ``workers`` hashes however many requests come. Up to
``queue`` more requests wait for a turn (``PASSWORD_HASH_QUEUE``: enough
for a class signing in at once; a waiting request holds only its server
thread); the next one is refused at once with ``HasherBusy`` (the routes
answer 503 with ``Retry-After``).

A check for a user who does not exist still runs a hash (against a dummy
one): otherwise the answer's speed would tell which user names exist.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from werkzeug.security import check_password_hash, generate_password_hash

__all__ = ["HasherBusy", "PasswordHasher"]

T = TypeVar("T")


class HasherBusy(RuntimeError):
    """Too many password hashes are running or waiting; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(f"too many sign-ins at once; retry in {retry_after} s")
        self.retry_after = retry_after


class PasswordHasher:
    """Hashes and checks passwords with ``method``, ``workers`` at a time."""

    def __init__(self, method: str, *, workers: int = 2, queue: int = 256) -> None:
        if workers < 1 or queue < 0:
            raise ValueError(f"workers must be >= 1 and queue >= 0, got {workers} and {queue}")
        self.method = method
        self.places = workers + queue
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="password-hash")
        self._lock = threading.Lock()
        self._taken = 0
        self._dummy: str | None = None
        self._dummy_lock = threading.Lock()

    def load(self) -> int:
        """How many hashes are running or waiting now."""
        with self._lock:
            return self._taken

    def hash(self, password: str) -> str:
        """A salted hash of ``password`` to store (raises ``HasherBusy``)."""
        return self._run(generate_password_hash, password, self.method)

    def check(self, stored_hash: str | None, password: str) -> bool:
        """Does ``password`` match ``stored_hash``? With no hash (no such user,
        or no password set) the answer is False, after the same work."""
        if stored_hash is None:
            self._run(check_password_hash, self._dummy_hash(), password)
            return False
        return self._run(check_password_hash, stored_hash, password)

    def close(self) -> None:
        """Let the pool's threads end (hashing afterwards raises RuntimeError)."""
        self._pool.shutdown(wait=False)

    def _run(self, function: Callable[[str, str], T], first: str, second: str) -> T:
        with self._lock:
            if self._taken >= self.places:
                raise HasherBusy()
            self._taken += 1
        try:
            return self._pool.submit(function, first, second).result()
        finally:
            with self._lock:
                self._taken -= 1

    def _dummy_hash(self) -> str:
        with self._dummy_lock:
            if self._dummy is None:
                self._dummy = self._run(generate_password_hash, secrets.token_hex(16), self.method)
            return self._dummy
