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
                          (flow control: not counted against the budget);
                          fail the item if Retry-After is over the cap
  503 Unavailable         pause *every* worker (the gate) until Retry-After,
                          then retry (not counted); stop the whole run
                          (``OutageTooLong``) if Retry-After is over the cap
  other 5xx, timeouts,    retry after a jittered backoff (counted)
  dropped connections
  other 4xx (404 ...)     fail at once: asking again will not help
  ======================  =================================================

Custom handlers plug in per status: ``ErrorPolicy(handlers={418: teapot})``
where ``teapot(attempt) -> Decision`` (a plain or an async function).

``parse_retry_after`` is the one ``Retry-After`` parser of the package (the
worker pool's policies, ``course.client`` and ``course.notify`` use it).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from course.limiters import Gate, RateLimiter
from course.records import Request, Response

__all__ = [
    "MAX_RETRY_AFTER",
    "Attempt",
    "Decision",
    "ErrorPolicy",
    "OutageTooLong",
    "RetryPolicy",
    "Verdict",
    "parse_retry_after",
    "pause_everyone",
    "retry_after",
    "slow_down_and_retry",
]

MAX_RETRY_AFTER = 60.0  # seconds: the longest Retry-After a client waits, by default


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


def parse_retry_after(
    value: str | None, default: float = 1.0, *, cap: float = MAX_RETRY_AFTER, now: datetime | None = None
) -> float:
    """Seconds to wait from a ``Retry-After`` value, at most ``cap``.

    RFC 9110 allows delta-seconds (``"120"``) or an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``: a date in the past means 0).
    A missing, negative or unreadable value gives ``default``.
    """
    if value is None:
        return default
    seconds: float | None
    try:
        seconds = float(value)
    except ValueError:
        seconds = _seconds_until(value, now or datetime.now(UTC))
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return default
    return min(seconds, cap)


def _seconds_until(http_date: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": a time in UTC with no zone given
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def retry_after(response: Response | None, default: float = 1.0, cap: float = MAX_RETRY_AFTER) -> float:
    """Seconds from a response's ``Retry-After`` header (see ``parse_retry_after``), else ``default``."""
    if response is None:
        return default
    return parse_retry_after(response.headers.get("Retry-After"), default, cap=cap)


class OutageTooLong(RuntimeError):
    """A 503 asked every worker to wait longer than ``RetryPolicy.max_retry_after``: the run stops."""

    def __init__(self, url: str, delay: float, limit: float) -> None:
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
        super().__init__(
            f"{origin} is unavailable (503) and asks to retry after {delay:.0f} s, "
            f"more than max_retry_after={limit:g} s: try again later"
        )
        self.delay = delay


@dataclass
class RetryPolicy:
    """``retries`` counted retries per item, waiting ``uniform(0, min(cap, base * 2**n))``.

    Full jitter spreads the retries of many workers apart; ``jitter=0.5``
    draws from the upper half of that range instead, so that the waits add
    up to at least half their bounds. ``seed`` makes the waits repeatable (a
    notebook run gives the same figures). A 429 or 503 whose ``Retry-After``
    asks for more than ``max_retry_after`` seconds is not waited for.
    """

    retries: int = 5
    base: float = 0.05
    cap: float = 2.0
    jitter: float = 1.0  # the random fraction of each wait: 1 = full jitter, 0 = none
    max_throttled: int = 100  # uncounted (429/503) retries before giving up anyway
    max_retry_after: float = MAX_RETRY_AFTER
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.retries < 0 or self.base < 0 or self.cap < 0 or not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy needs retries >= 0, base >= 0, cap >= 0 and 0 <= jitter <= 1")
        if not self.max_retry_after >= 0:
            raise ValueError(f"max_retry_after is a number of seconds >= 0, not {self.max_retry_after}")
        self._rng = random.Random(self.seed)

    def bound(self, errors: int) -> float:
        """The longest wait before counted retry number ``errors`` (1 for the first)."""
        return min(self.cap, self.base * 2 ** max(0, errors - 1))

    def backoff(self, errors: int) -> float:
        """The wait before counted retry number ``errors``: random in the top ``jitter`` of its bound."""
        bound = self.bound(errors)
        return self._rng.uniform(bound * (1.0 - self.jitter), bound)

    def total_wait(self) -> tuple[float, float]:
        """The least and the most an item waits in all before its budget runs out."""
        most = sum(self.bound(n) for n in range(1, self.retries + 1))
        return most * (1.0 - self.jitter), most

    def exhausted(self, errors: int) -> bool:
        return errors > self.retries


Handler = Callable[[Attempt], "Decision | Awaitable[Decision]"]


def _accept(attempt: Attempt) -> Decision:
    return _ACCEPT


def _backoff(attempt: Attempt) -> Decision:
    return Decision.retry(attempt.retry.backoff(attempt.errors + 1), reason=attempt.describe())


def slow_down_and_retry(attempt: Attempt) -> Decision:
    """429: the shared limiter slows down; this item waits ``Retry-After`` (unless that is too long)."""
    if attempt.limiter is not None:
        attempt.limiter.slow_down()
    delay, limit = retry_after(attempt.response, cap=math.inf), attempt.retry.max_retry_after
    if delay > limit:
        return Decision.fail(f"{attempt.describe()} (Retry-After {delay:.0f} s is over max_retry_after={limit:g} s)")
    return Decision.retry(delay, counted=False, reason=attempt.describe())


def pause_everyone(attempt: Attempt) -> Decision:
    """503: close the shared gate until ``Retry-After``; retry when it reopens (or stop, if that is too long)."""
    delay, limit = retry_after(attempt.response, cap=math.inf), attempt.retry.max_retry_after
    if delay > limit:
        raise OutageTooLong(attempt.request.url, delay, limit)
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
            return await decision
        return decision
