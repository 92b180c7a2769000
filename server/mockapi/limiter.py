"""A strict sliding-window rate limit, as the mock API enforces it.

The limiter remembers when it admitted each of the last ``requests`` requests.
A new arrival at time ``now`` is admitted only if fewer than ``requests``
admissions happened in ``(now - per, now]``; so no window of ``per`` seconds,
wherever it is placed, ever holds more than ``requests`` admissions.
Rejected arrivals leave no trace: they do not use up a slot.
"""

from __future__ import annotations

from collections import deque

__all__ = ["SlidingWindowLimiter"]


class SlidingWindowLimiter:
    """Admit at most ``requests`` arrivals in any ``per``-second window."""

    def __init__(self, requests: int, per: float) -> None:
        if requests < 1 or per <= 0:
            raise ValueError("a rate limit needs requests >= 1 and per > 0 seconds")
        self.requests = requests
        self.per = per
        self._admitted: deque[float] = deque()

    def _forget_old(self, now: float) -> None:
        admitted = self._admitted
        horizon = now - self.per
        while admitted and admitted[0] <= horizon:
            admitted.popleft()

    def try_acquire(self, now: float) -> float:
        """Admit an arrival at ``now`` and return 0.0, or return the seconds until a slot frees."""
        self._forget_old(now)
        if len(self._admitted) < self.requests:
            self._admitted.append(now)
            return 0.0
        return max(self._admitted[0] + self.per - now, 1e-9)

    def remaining(self, now: float) -> int:
        """How many more arrivals would be admitted at ``now``."""
        self._forget_old(now)
        return self.requests - len(self._admitted)

    def reset_in(self, now: float) -> float:
        """Seconds until the oldest admission leaves the window (0.0 if none is held)."""
        self._forget_old(now)
        return self._admitted[0] + self.per - now if self._admitted else 0.0
