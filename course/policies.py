"""What to do with each answer: accept it, retry it (when, and does it count), or give up.

Two small strategy objects, passed to a worker pool separately:

- ``RetryPolicy`` -- the budget for *errors* (5xx, timeouts, dropped
  connections): how many retries, and the jittered exponential wait before
  each. An exhausted budget turns the item into a ``Failure`` carrying the
  last error.
- ``ErrorPolicy`` -- maps a status code (or an exception) to a handler that
  returns a ``Decision``. The defaults:

  ======================  =================================================
  2xx                     accept
  429 Too Many Requests   slow the shared limiter, retry after Retry-After
                          (flow control: not counted against the budget)
  503 Unavailable         pause *every* worker (the gate) until Retry-After,
                          then retry (not counted)
  other 5xx, timeouts,    retry after a jittered backoff (counted)
  dropped connections
  other 4xx (404 ...)     fail at once: asking again will not help
  ======================  =================================================

Custom handlers plug in per status: ``ErrorPolicy(handlers={418: teapot})``
where ``teapot(attempt) -> Decision`` (a plain or an async function).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import aiohttp

from course.limiters import Gate, RateLimiter
from course.records import Request, Response

__all__ = ["Attempt", "Decision", "ErrorPolicy", "RetryPolicy", "Verdict", "retry_after"]


class Verdict(Enum):
    ACCEPT = "accept"
    RETRY = "retry"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Decision:
    """A handler's answer. ``counted`` retries use up the item's error budget."""

    verdict: Verdict
    delay: float = 0.0
    counted: bool = True
    reason: str = ""

    @classmethod
    def accept(cls) -> Decision:
        return _ACCEPT

    @classmethod
    def retry(cls, delay: float = 0.0, *, counted: bool = True, reason: str = "") -> Decision:
        return cls(Verdict.RETRY, delay, counted, reason)

    @classmethod
    def fail(cls, reason: str) -> Decision:
        return cls(Verdict.FAIL, 0.0, True, reason)


_ACCEPT = Decision(Verdict.ACCEPT)


@dataclass(slots=True)
class Attempt:
    """Everything a handler may look at (and the shared pieces it may act on)."""

    item: Any
    request: Request
    number: int  # 1 for the first try
    errors: int  # counted retries used so far
    response: Response | None
    error: BaseException | None
    limiter: RateLimiter | None
    gate: Gate | None
    retry: RetryPolicy

    @property
    def status(self) -> int | None:
        return None if self.response is None else self.response.status

    def describe(self) -> str:
        """The error in one line, for a ``Failure``."""
        if self.error is not None:
            text = str(self.error)
            return f"{type(self.error).__name__}: {text}" if text else type(self.error).__name__
        assert self.response is not None
        body = self.response.text()[:200].strip()
        return f"HTTP {self.response.status}" + (f": {body}" if body else "")


def retry_after(response: Response | None, default: float = 1.0) -> float:
    """Seconds from a ``Retry-After`` header (delta-seconds form), else ``default``."""
    if response is None:
        return default
    value = response.headers.get("Retry-After")
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:  # an HTTP-date: rare for APIs; fall back rather than guess
        return default
    return seconds if math.isfinite(seconds) and seconds >= 0 else default


@dataclass
class RetryPolicy:
    """``retries`` counted retries per item, waiting ``uniform(0, min(cap, base * 2**n))``.

    Full jitter spreads the retries of many workers apart. ``seed`` makes the
    waits repeatable (a notebook run gives the same figures).
    """

    retries: int = 5
    base: float = 0.05
    cap: float = 2.0
    max_throttled: int = 100  # uncounted (429/503) retries before giving up anyway
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.retries < 0 or self.base < 0 or self.cap < 0:
            raise ValueError("RetryPolicy needs retries >= 0, base >= 0 and cap >= 0")
        self._rng = random.Random(self.seed)

    def backoff(self, errors: int) -> float:
        """The wait before counted retry number ``errors`` (1 for the first)."""
        return self._rng.uniform(0.0, min(self.cap, self.base * 2 ** max(0, errors - 1)))

    def exhausted(self, errors: int) -> bool:
        return errors > self.retries


Handler = Callable[[Attempt], "Decision | Awaitable[Decision]"]


def _accept(attempt: Attempt) -> Decision:
    return _ACCEPT


def _backoff(attempt: Attempt) -> Decision:
    return Decision.retry(attempt.retry.backoff(attempt.errors + 1), reason=attempt.describe())


def slow_down_and_retry(attempt: Attempt) -> Decision:
    """429: the shared limiter slows down; this item waits ``Retry-After``."""
    if attempt.limiter is not None:
        attempt.limiter.slow_down()
    return Decision.retry(retry_after(attempt.response), counted=False, reason=attempt.describe())


def pause_everyone(attempt: Attempt) -> Decision:
    """503: close the shared gate until ``Retry-After``; retry when it reopens."""
    delay = retry_after(attempt.response)
    if attempt.gate is not None:
        attempt.gate.pause(delay)
        delay = 0.0
    return Decision.retry(delay, counted=False, reason=attempt.describe())


def give_up(attempt: Attempt) -> Decision:
    return Decision.fail(attempt.describe())


RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError)


@dataclass
class ErrorPolicy:
    """Status code -> handler, plus handlers for exceptions; see the module doc."""

    handlers: Mapping[int, Handler] = field(default_factory=dict)
    on_error: Handler = _backoff
    retryable: tuple[type[BaseException], ...] = RETRYABLE_ERRORS
    _table: dict[int, Handler] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        table: dict[int, Handler] = {429: slow_down_and_retry, 503: pause_everyone}
        table.update(self.handlers)
        self._table = table

    def plain_success(self, status: int) -> bool:
        """True for a 2xx no custom handler claims: accepted without calling a handler."""
        return 200 <= status < 300 and status not in self._table

    def handler_for(self, status: int) -> Handler:
        found = self._table.get(status)
        if found is not None:
            return found
        if 200 <= status < 300:
            return _accept
        if status >= 500:
            return _backoff
        return give_up

    async def decide(self, attempt: Attempt) -> Decision:
        if attempt.response is not None:
            handler = self.handler_for(attempt.response.status)
        elif isinstance(attempt.error, self.retryable):
            handler = self.on_error
        else:
            handler = give_up
        decision = handler(attempt)
        if inspect.isawaitable(decision):
            decision = await decision
        return decision  # type: ignore[return-value]
