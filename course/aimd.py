"""A client that finds the limit by itself: ``AimdLimiter`` and ``aimd_policy``.

When nobody tells the client the API's limit, it can find it the way TCP
finds a network's capacity, and remember what it found:

1. **slow start** -- begin low (``start`` requests/s) and double the pace
   every ``window`` seconds (a little at each request) until the first
   refusal (a 429);
2. **multiplicative decrease** -- on a 429, note the **ceiling**: how many
   answers the server accepted in the last window (a strict server admits
   its limit and refuses the rest, so that count is the limit's best
   estimate). Cut the pace to ``decrease`` times the lower of the pace and
   the ceiling. At most ONE cut per window: the refusals of requests
   already on their way when the pace was cut say nothing new;
3. **settle** -- after a window with no refusal, a pace under ``settle``
   times the remembered ceiling goes straight back there (just under the
   limit, where the client spends most of its time);
4. **additive increase** -- above that, each window with no refusal adds a
   small step (``increase``, by default 1 % of the ceiling): a slow probe,
   so that a limit that was raised is found again, at the price of one
   refusal or two each time the probe reaches the old one.

The pace stays between ``settle`` and 1 times the limit nearly all the time
(the default 0.95 leaves a margin for requests that arrive bunched on a busy
machine), and is refused a few times each time the probe reaches the
limit, some seconds apart. A refused request waits for its ``Retry-After``
and is retried, not lost.

When the server *announces* its limit in the IETF httpapi draft's headers
(``RateLimit-Policy: "default";q=100;w=1`` -- a quota ``q`` per window of
``w`` seconds -- and ``RateLimit: "default";r=37;t=1`` -- ``r`` requests
remaining, ``t`` seconds until the window frees), there is nothing to find:
from the first such answer on, the limiter paces at the announced quota and
counts its own requests in the announced window exactly as
``course.limiters.RateLimiter`` does (the pace runs ``margin`` under it), so
it gets no 429 after that first answer. ``r=0`` holds every request back for
``t`` seconds. The draft's earlier form (``RateLimit-Policy: 100;w=1``,
``RateLimit: limit=100, remaining=37, reset=1``) is read too.

``aimd_policy()`` is the error policy that shows the limiter every answer
(a ``WorkerPool`` otherwise shows it only the 429s):

    >>> limiter = AimdLimiter()
    >>> pool = WorkerPool(url, limiter=limiter, policy=aimd_policy())
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from course.limiters import RateLimiter
from course.policies import Attempt, Decision, ErrorPolicy, slow_down_and_retry

__all__ = ["AimdLimiter", "AnnouncedLimit", "aimd_policy", "parse_rate_limit_headers"]

log = logging.getLogger(__name__)

#: A pace no higher than this is ever tried (requests per second).
MAX_RATE = 100_000.0

#: Lateness of a slot made up by the next ones (seconds): a late timer on a busy machine costs no
#: pace, and the burst that makes it up is at most ``CATCH_UP * pace`` requests.
CATCH_UP = 0.02


@dataclass(frozen=True)
class AnnouncedLimit:
    """What the ``RateLimit-Policy`` / ``RateLimit`` headers of one answer say."""

    quota: int  # requests per window
    window: float  # seconds
    remaining: int | None = None
    reset: float | None = None


_PARAM = re.compile(r";\s*([a-z][a-z0-9_.*-]*)\s*=\s*([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE)
_PAIR = re.compile(r"([a-z]+)\s*=\s*([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE)


def _first_member(value: str) -> str:
    """The first member of a structured-field list (the draft allows several policies)."""
    return value.split(",")[0]


def parse_rate_limit_headers(headers: Mapping[str, str]) -> AnnouncedLimit | None:
    """The limit announced by ``RateLimit-Policy`` (and ``RateLimit``), or None if absent or unreadable."""
    policy = headers.get("RateLimit-Policy")
    if not policy:
        return None
    member = _first_member(policy)
    params = {key.lower(): value for key, value in _PARAM.findall(member)}
    quota_text = params.get("q")
    if quota_text is None:  # the earlier draft: "100;w=1", the quota as the item itself
        head = member.split(";")[0].strip()
        quota_text = head if re.fullmatch(r"[0-9]+", head) else None
    window_text = params.get("w", "1")
    try:
        quota, window = int(float(quota_text or "")), float(window_text)
    except ValueError:
        return None
    if quota < 1 or not (math.isfinite(window) and window > 0):
        return None
    remaining = reset = None
    current = headers.get("RateLimit")
    if current:
        member = _first_member(current) if ";" in current else current
        found = {key.lower(): value for key, value in _PARAM.findall(member)}
        if not found:  # the earlier draft: "limit=100, remaining=37, reset=1"
            found = {key.lower(): value for key, value in _PAIR.findall(current)}
            found = {"r": found.get("remaining", ""), "t": found.get("reset", "")}
        try:
            remaining = int(float(found["r"])) if found.get("r") else None
            reset = float(found["t"]) if found.get("t") else None
        except ValueError:
            remaining = reset = None
    return AnnouncedLimit(quota, window, remaining, reset)


class AimdLimiter(RateLimiter):
    """A pace found by additive increase / multiplicative decrease, or read from the server's headers.

    ``start`` is the first pace (requests/s). On a 429, at most once per
    ``window``, the pace is cut to ``decrease`` times the lower of itself and
    the ceiling (the answers accepted in the last window, per second). After
    a window with no 429 it goes back up to ``settle`` times the ceiling if it
    is under that, and otherwise adds ``increase`` (default: 1 % of the
    ceiling). ``margin`` keeps an announced pace under the announced quota.
    """

    def __init__(
        self,
        start: float = 10.0,
        *,
        increase: float | None = None,
        decrease: float = 0.9,
        settle: float = 0.95,
        window: float = 1.0,
        margin: float = 0.02,
        max_rate: float = MAX_RATE,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not (math.isfinite(start) and 0 < start <= max_rate):
            raise ValueError(f"start is a pace in requests/s, > 0 and <= max_rate, got {start}")
        if increase is not None and not (math.isfinite(increase) and increase > 0):
            raise ValueError(f"increase is a pace step in requests/s > 0, got {increase}")
        if not 0 < decrease < 1:
            raise ValueError(f"decrease is a factor in (0, 1), got {decrease}")
        if not 0 < settle <= 1:
            raise ValueError(f"settle is a fraction of the ceiling in (0, 1], got {settle}")
        if not (math.isfinite(window) and window > 0):
            raise ValueError(f"window is a number of seconds > 0, got {window}")
        super().__init__(start, 1.0, margin=0.0, clock=clock)
        # The pace is kept here (see acquire); RateLimiter's own schedule is
        # switched off and only its count of the server's window is used, once
        # the headers announce the window (until then: no count, the pace alone).
        self._target = self._current = math.inf
        self._interval = 0.0
        self._limit = 2**62
        self.increase = increase
        self.decrease = decrease
        self.settle = settle
        self.window = window
        self.announced_margin = margin
        self.max_rate = max_rate
        self.pace = start
        self.slow_start = True
        self.ceiling: float | None = None  # answers/s the server accepted when it last refused
        self.announced: AnnouncedLimit | None = None
        self.cuts = 0
        self._changed = -math.inf  # when the pace last changed (-inf: not yet used)
        self._last_cut = -math.inf  # when the pace was last cut (a 429)
        self._last_refused = -math.inf  # when the last 429 came back
        self._hold_until = 0.0
        self._accepted: deque[float] = deque()  # when each answer of the last window was accepted
        self._last_slot = -math.inf
        self._pacing = asyncio.Lock()  # one caller at a time waits for the next slot

    # -- the pace --------------------------------------------------------------------

    def _set_pace(self, pace: float, now: float) -> None:
        self.pace = min(self.max_rate, max(pace, 0.1))
        self._changed = now

    def _grow(self, now: float) -> None:
        """Raise the pace if it has held, with no 429, long enough: the increase rules of the module doc."""
        if self.slow_start:  # doubling every window, a little at each request (idle time does not count)
            if now > self._changed:
                self._set_pace(self.pace * 2 ** (min(now - self._changed, self.window / 4) / self.window), now)
            return
        if now - max(self._changed, self._last_refused) < self.window:
            return
        ceiling = self.ceiling or self.pace
        if self.pace < self.settle * ceiling:
            self._set_pace(self.settle * ceiling, now)  # back to just under the ceiling remembered
        else:
            self._set_pace(self.pace + (self.increase or 0.01 * ceiling), now)  # probe, slowly

    async def acquire(self, *, hold: bool = False) -> None:
        """Wait for the next slot at the current pace (then, once a window is announced, for room in it).

        Callers queue on a lock and the one in front sleeps until its slot:
        no slot is promised ahead, so a new pace applies to the very next one
        (a schedule that handed out slots seconds ahead would carry on at the
        old pace for as long).
        """
        async with self._pacing:
            while True:
                now = self._now()
                if self._changed == -math.inf:
                    self._changed = now
                if self.announced is None:
                    self._grow(now)
                slot = max(self._last_slot + 1.0 / self.pace, self._hold_until)
                if slot <= now:
                    break
                await asyncio.sleep(min(slot - now, self.window / 4))  # wake to see a new pace
            # Lateness beyond a few ms is not made up (no burst after a stall).
            self._last_slot = slot if now - slot < CATCH_UP else now
        await super().acquire(hold=hold)  # the window count (announced), and hold/release

    def slow_down(self, factor: float | None = None) -> None:
        """A 429: note the ceiling and cut the pace to ``decrease`` (or ``factor``) times it, once per window."""
        if factor is not None and not 0 < factor < 1:
            raise ValueError(f"slow_down factor is in (0, 1), got {factor}")
        now = self._now()
        if self.announced is not None:
            return  # the headers set the pace; a 429 then is someone else's (Retry-After handles it)
        self._last_refused = now  # no increase for a window from now
        if now - self._last_cut < self.window:
            return  # the answers to requests sent before the last cut: nothing new
        self.slow_start = False
        self.ceiling = max(self.accepted_rate(now), 1.0 / self.window)
        self.cuts += 1
        self._last_cut = now
        self._set_pace(min(self.pace, self.ceiling) * (self.decrease if factor is None else factor), now)
        log.info("429: ceiling %.1f requests/s, pace cut to %.1f", self.ceiling, self.pace)

    def accepted_rate(self, now: float | None = None) -> float:
        """Answers accepted in the last ``window`` seconds, per second."""
        now = self._now() if now is None else now
        while self._accepted and self._accepted[0] <= now - self.window:
            self._accepted.popleft()
        return len(self._accepted) / self.window

    def accepted(self, announced: AnnouncedLimit | None = None) -> None:
        """An answer was accepted (2xx); ``announced``: what its rate-limit headers said, if anything."""
        self._accepted.append(self._now())
        if len(self._accepted) > 4 * self.pace * self.window + 16:  # keep the memory small
            self.accepted_rate()
        self.observe(announced)

    def observe(self, announced: AnnouncedLimit | None, *, refused: bool = False) -> None:
        """An answer came with the rate-limit headers (or without: then nothing changes).

        A refusal (``refused``) that says ``r=0`` holds every request back for ``t``
        seconds: someone else used the quota. (An accepted answer with ``r=0``
        only says this client took the last place; its own count handles that.)
        """
        if announced is None:
            return
        now = self._now()
        if announced != self.announced:
            if self.announced is None or (announced.quota, announced.window) != (
                self.announced.quota,
                self.announced.window,
            ):
                self.rate, self.per = announced.quota, announced.window
                self._limit = announced.quota  # count our own requests in the announced window
                self._set_pace(announced.quota * (1 - self.announced_margin) / announced.window, now)
                self.slow_start = False
            self.announced = announced
        if refused and announced.remaining == 0 and announced.reset:
            self._hold_until = max(self._hold_until, now + announced.reset)

    @property
    def current_rate(self) -> float:
        return self.pace

    def __repr__(self) -> str:
        source = "announced" if self.announced else ("slow start" if self.slow_start else "AIMD")
        ceiling = "" if self.ceiling is None else f", ceiling={self.ceiling:.1f}/s"
        return f"AimdLimiter(pace={self.pace:.1f}/s, {source}, cuts={self.cuts}{ceiling})"


def aimd_policy(handlers: Mapping[int, Callable[[Attempt], Decision]] | None = None) -> ErrorPolicy:
    """An ``ErrorPolicy`` that shows an ``AimdLimiter`` every 2xx and 429 answer's headers."""

    def accept(attempt: Attempt) -> Decision:
        if isinstance(attempt.limiter, AimdLimiter) and attempt.response is not None:
            attempt.limiter.accepted(parse_rate_limit_headers(attempt.response.headers))
        return Decision.accept()

    def refuse(attempt: Attempt) -> Decision:
        if isinstance(attempt.limiter, AimdLimiter) and attempt.response is not None:
            attempt.limiter.observe(parse_rate_limit_headers(attempt.response.headers), refused=True)
        return slow_down_and_retry(attempt)

    table: dict[int, Callable[[Attempt], Decision]] = {200: accept, 429: refuse}
    table.update(handlers or {})
    return ErrorPolicy(handlers=table)
