"""Login throttling: a limit on failed sign-ins per user name and per address.

Without one, anybody may try passwords as fast as the server hashes them.
``LoginThrottle`` counts failed sign-ins in a sliding window
(``LOGIN_THROTTLE_SECONDS``) under two keys:

- the **user name** tried (``LOGIN_FAILURES_PER_ACCOUNT``): guessing one
  person's password from many addresses;
- the **client address** (``LOGIN_FAILURES_PER_ADDRESS``): one client
  trying many user names.

Past either limit the login answers 429 with ``Retry-After`` (the seconds
until the oldest failure leaves the window) without checking the password,
so a throttled guess costs no hashing either. An attempt on a user name is
counted from the moment it starts, so many guesses sent at once cannot all
slip in before the first one fails. A successful sign-in forgets its user
name's failures; it never counts against the address.

The price is the usual one: someone who knows a user name can keep its owner
out for the window by failing on purpose. Keep the window short (minutes).
Behind a reverse proxy every client has the proxy's address: count the real
one by applying werkzeug's ``ProxyFix`` (not done here).

Counts live in the server process's memory: several processes each count
their own, and a restart forgets them. Keys are bounded (``max_keys``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["LoginAttempt", "LoginThrottle", "LoginThrottled"]


class LoginThrottled(Exception):
    """Too many failed sign-ins for ``what``; retry after ``retry_after`` seconds."""

    def __init__(self, what: str, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins {what}; try again in {retry_after} s")
        self.retry_after = retry_after


class LoginAttempt:
    """One sign-in in progress; call ``succeeded()`` when the password was right."""

    def __init__(self) -> None:
        self.ok = False

    def succeeded(self) -> None:
        self.ok = True


class _Window:
    """Times of recent events under each key, at most ``limit`` per key."""

    def __init__(self, limit: int | None, seconds: float, max_keys: int) -> None:
        self.limit, self.seconds, self.max_keys = limit, seconds, max_keys
        self.events: dict[str, deque[float]] = {}

    def retry_after(self, key: str, now: float) -> float:
        """0 if ``key`` may have one more event now, else the seconds to wait."""
        times = self.events.get(key)
        if self.limit is None or times is None:
            return 0.0
        while times and times[0] <= now - self.seconds:
            times.popleft()
        if len(times) < self.limit:
            return 0.0
        return times[-self.limit] + self.seconds - now

    def add(self, key: str, when: float) -> None:
        if self.limit is None:
            return
        if key not in self.events and len(self.events) >= self.max_keys:
            self._prune(when)
        self.events.setdefault(key, deque(maxlen=self.limit)).append(when)

    def remove(self, key: str, when: float) -> None:
        times = self.events.get(key)
        if times is not None and when in times:
            times.remove(when)

    def forget(self, key: str) -> None:
        self.events.pop(key, None)

    def _prune(self, now: float) -> None:
        """Drop keys with nothing in the window; if still full, the oldest keys."""
        for key in [k for k, times in self.events.items() if not times or times[-1] <= now - self.seconds]:
            del self.events[key]
        while len(self.events) >= self.max_keys:
            del self.events[next(iter(self.events))]


class LoginThrottle:
    """Counts failed sign-ins per user name and per address (``None``: no limit)."""

    def __init__(
        self,
        *,
        per_account: int | None,
        per_address: int | None,
        window: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._accounts = _Window(per_account, window, max_keys)
        self._addresses = _Window(per_address, window, max_keys)
        self._clock = clock
        self._lock = threading.Lock()

    @contextmanager
    def attempt(self, username: str, address: str) -> Iterator[LoginAttempt]:
        """Run one sign-in: raises ``LoginThrottled`` before it if a limit is reached.

        The block checks the password and calls ``succeeded()`` on the attempt
        if it was right; if it ends otherwise (a wrong password) the attempt
        counts as a failure. If it raises, the attempt is not counted.
        """
        with self._lock:
            now = self._clock()
            for window, key, what in (
                (self._accounts, username, "for this user name"),
                (self._addresses, address, "from your address"),
            ):
                wait = window.retry_after(key, now)
                if wait > 0:
                    raise LoginThrottled(what, max(1, math.ceil(wait)))
            self._accounts.add(username, now)  # counted already while the password is checked
        attempt = LoginAttempt()
        try:
            yield attempt
        except BaseException:
            with self._lock:
                self._accounts.remove(username, now)
            raise
        with self._lock:
            if attempt.ok:
                self._accounts.forget(username)
            else:
                self._addresses.add(address, self._clock())
