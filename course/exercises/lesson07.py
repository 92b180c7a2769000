"""Lesson 07 — when the server says no: exercises.

- ``pause_gate`` (async): ``PauseGate``, the pause-everyone switch with one
  probe; the checker runs workers through it (``fetch_through_gate``) against
  an outage of its own mock API and counts the 503s the server answered in
  each pause period.
- ``next_wait`` (sync): the wait before the next attempt: the server's
  ``Retry-After`` (delta-seconds *or* an HTTP-date, capped) when it sent one,
  else full jitter over an exponentially growing, capped bound.
- ``get_with_retries`` (async): the retry loop around one GET, with a budget:
  which answers to retry, which to return at once, and what to hand
  ``next_wait``; judged from the requests the checker's server saw.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from statistics import mean
from typing import Any

import aiohttp

from course.checks import Exercise, Incorrect, Mistake, checker_mock_api
from course.exercises.lesson06 import await_or_explain, run_on_own_loop, source_as
from course.mockapi_control import MockAPIControl
from course.policies import parse_retry_after

__all__ = [
    "BASE",
    "CAP",
    "MAX_RETRY_AFTER",
    "fetch_through_gate",
    "get_with_retries",
    "next_wait",
    "pause_gate",
]


# -- Exercise: PauseGate ------------------------------------------------------------------------------


class _PauseGate:
    """Pause every worker at once; after the pause, one probe goes first."""

    def __init__(self) -> None:
        self.paused_until = 0.0  # loop time before which nobody may send
        self.closed = False  # paused, and no probe has succeeded since
        self.probe_out = False  # a probe is on its way
        self.news = asyncio.Event()  # set (and replaced) whenever the state changes

    def pause(self, seconds: float) -> None:
        """A 503 said "come back in `seconds`": close the gate (a pause is extended, never shortened)."""
        now = asyncio.get_running_loop().time()
        self.paused_until = max(self.paused_until, now + seconds)
        self.closed, self.probe_out = True, False
        self._announce()

    def resume(self) -> None:
        """The probe got an ordinary answer: open the gate for everyone."""
        self.closed, self.probe_out = False, False
        self._announce()

    async def wait(self) -> bool:
        """Return when this caller may send; True if it is the probe (it must report back)."""
        loop = asyncio.get_running_loop()
        while self.closed:
            still = self.paused_until - loop.time()
            if still > 0:
                await asyncio.sleep(still)
            elif not self.probe_out:
                self.probe_out = True
                return True
            else:
                await self.news.wait()
        return False

    def _announce(self) -> None:
        self.news.set()
        self.news = asyncio.Event()


async def fetch_through_gate(
    gate: Any, session: aiohttp.ClientSession, base_url: str, ids: Iterable[int], workers: int
) -> dict[int, int]:
    """``workers`` workers fetch every id, each request after ``await gate.wait()``; a 503
    calls ``gate.pause(Retry-After)`` and the item is tried again; the probe reports an
    ordinary answer with ``gate.resume()``. Returns ``{id: final status}``."""
    todo, statuses = deque(ids), {}

    async def worker() -> None:
        while todo:
            item = todo.popleft()
            while True:
                probe = await gate.wait()
                async with session.get(f"{base_url}/items/{item}") as response:
                    await response.read()
                if response.status == 503:
                    gate.pause(parse_retry_after(response.headers.get("Retry-After")))
                    continue
                if probe:
                    gate.resume()
                statuses[item] = response.status
                break

    await asyncio.gather(*(worker() for _ in range(workers)))
    return statuses


GATE_WORKERS, GATE_ITEMS = 8, 40
OUTAGE = {"outages": [{"start": 0.0, "duration": 1.5, "retry_after": 1}], "latency": {"mean": 0.02, "jitter": 0.0}}


async def _run_pause_gate(answer: Any) -> None:
    url = checker_mock_api(OUTAGE)
    async with aiohttp.ClientSession() as session:
        gate = answer()
        run = fetch_through_gate(gate, session, url, range(GATE_ITEMS), GATE_WORKERS)
        await await_or_explain(
            run,
            12.0,
            f"{GATE_WORKERS} workers going through your PauseGate",
            why="Is every waiting worker woken when the probe calls resume()? Does wait() let a probe "
            "through once the pause is over?",
        )
    stats = MockAPIControl(url).stats(detail=True)
    arrivals = list(zip(stats["arrivals"], stats["statuses"], strict=True))
    refusals = [t for t, s in arrivals if s == "503"]
    wave_ends = (refusals[0] if refusals else 0.0) + 0.5  # the first wave: half a second from the first 503
    first_wave = sum(1 for t in refusals if t < wave_ends)
    later = [t for t in refusals if t >= wave_ends]
    Incorrect.unless(
        first_wave <= GATE_WORKERS,
        f"in the first half second of the outage the server answered 503 to {first_wave} requests from "
        f"{GATE_WORKERS} workers: after a 503, wait() must hold every worker until the pause is over.",
    )
    Incorrect.unless(
        len(later) <= 2,
        f"after the first wave the server still answered 503 to {len(later)} requests "
        f"(at {', '.join(f'{t:.2f}' for t in later[:8])} s) in an outage of 1.5 s with Retry-After: 1. "
        "When a pause is over, let ONE caller through (wait() returns True to it) and hold the others "
        "until it reports back: one probe per pause period, not one per worker.",
    )
    served = stats["served"]
    missing = [k for k in range(GATE_ITEMS) if served.get(str(k), 0) == 0]
    Incorrect.unless(not missing, f"item {missing[:1]} was never served ({len(missing)} missing).")
    Incorrect.unless(
        stats["by_status"].get("503", 0) >= 1, "the outage never showed: check that the probe really waited."
    )


def _check_pause_gate(answer: Any) -> None:
    run_on_own_loop(lambda: _run_pause_gate(answer))


class _NoProbe(_PauseGate):
    """The mistake: when the pause is over, every worker goes at once."""

    async def wait(self) -> bool:
        loop = asyncio.get_running_loop()
        still = self.paused_until - loop.time()
        if self.closed and still > 0:
            await asyncio.sleep(still)
        return True


class _IgnoresPause(_PauseGate):
    """The mistake: pause() only records the time; wait() never looks at it."""

    async def wait(self) -> bool:
        return False


class _ForgetsTheWaiters(_PauseGate):
    """The mistake: resume() opens the gate but nobody tells the workers waiting behind the probe."""

    def resume(self) -> None:
        self.closed, self.probe_out = False, False


pause_gate = Exercise(
    "pause_gate",
    checker=_check_pause_gate,
    hint_text=(
        "Keep three things: until when the gate is paused (loop time), whether it is closed, and whether "
        "a probe is out. wait(): while closed, sleep until the pause is over; then the first caller to "
        "find no probe out becomes the probe (return True); the others wait on an asyncio.Event. "
        "pause() extends the time, closes, clears the probe and sets the event; resume() opens and sets "
        "the event. Replace the event after setting it, so the next wait starts clear."
    ),
    answer=_PauseGate,
    solution_code=source_as(_PauseGate, "PauseGate"),
    wrong_answers=(
        Mistake(_NoProbe, "one probe per pause period"),
        Mistake(_IgnoresPause, "must hold every worker"),
        Mistake(_ForgetsTheWaiters, "woken"),
    ),
    success="the server saw one probe per pause, not one request per worker.",
    timeout=25.0,
)


# -- Exercise: next_wait --------------------------------------------------------------------------------

BASE = 0.1  # seconds: the bound of the first retry's wait
CAP = 2.0  # seconds: the bound never grows past this
MAX_RETRY_AFTER = 30.0  # seconds: the longest Retry-After we agree to wait

Waiter = Callable[[int, "str | None", random.Random, datetime], float]

NOW = datetime(2026, 3, 2, 9, 30, 0, tzinfo=UTC)  # the checker's "now"


def _next_wait(attempt: int, retry_after: str | None, rng: random.Random, now: datetime) -> float:
    """Seconds to wait before the next try, after `attempt` failures (1 after the first)."""
    if retry_after is not None:
        text = retry_after.strip()
        if text.isdigit():  # delta-seconds: "120"
            return min(float(text), MAX_RETRY_AFTER)
        try:  # or an HTTP-date: "Mon, 02 Mar 2026 09:30:07 GMT"
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            moment = None  # unreadable: as if the server had said nothing
        if moment is not None:
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            seconds_left = (moment - now).total_seconds()
            return min(max(seconds_left, 0.0), MAX_RETRY_AFTER)
    return rng.uniform(0.0, min(CAP, BASE * 2 ** (attempt - 1)))


def _bound(attempt: int) -> float:
    return min(CAP, BASE * 2 ** (attempt - 1))


def _http_date(seconds_from_now: float) -> str:
    return format_datetime(NOW + timedelta(seconds=seconds_from_now), usegmt=True)


def _check_next_wait(f: Waiter) -> None:
    rng = random.Random(1)
    cases = [
        (1, "3", 3.0, "delta-seconds"),
        (4, "1", 1.0, "delta-seconds"),
        (2, "0", 0.0, "delta-seconds"),
        (1, _http_date(7), 7.0, "an HTTP-date 7 s after now"),
        (3, _http_date(12), 12.0, "an HTTP-date 12 s after now"),
        (1, _http_date(-20), 0.0, "an HTTP-date in the past"),
        (1, "3600", MAX_RETRY_AFTER, "delta-seconds over MAX_RETRY_AFTER"),
        (2, _http_date(86400), MAX_RETRY_AFTER, "an HTTP-date a day away"),
    ]
    for attempt, header, expected, kind in cases:
        got = f(attempt, header, rng, NOW)
        if not isinstance(got, int | float) or abs(got - expected) > 1e-6:
            advice = {
                "delta-seconds": "wait exactly the seconds the server asked for.",
                "an HTTP-date in the past": "a date that has passed means: go now (0 s).",
            }.get(
                kind,
                f"never wait more than MAX_RETRY_AFTER = {MAX_RETRY_AFTER:g} s."
                if expected == MAX_RETRY_AFTER
                else "Retry-After may be an HTTP-date: email.utils.parsedate_to_datetime reads it; "
                "wait until that moment (it minus `now`).",
            )
            raise Incorrect(
                f"next_wait({attempt}, retry_after={header!r}, rng, now={NOW:%H:%M:%S} UTC) returned {got!r} "
                f"({kind}); expected {expected:g}: {advice}"
            )
    for attempt, header in [(2, "soon"), (3, "")]:
        got = f(attempt, header, random.Random(3), NOW)
        Incorrect.unless(
            isinstance(got, int | float) and 0 <= got <= _bound(attempt),
            f"next_wait({attempt}, retry_after={header!r}, ...) returned {got!r}: a Retry-After that is neither "
            f"seconds nor a date is as good as none: back off as usual (0..{_bound(attempt):g} s).",
        )
    for attempt in range(1, 11):
        draw = random.Random(7)
        waits = [float(f(attempt, None, draw, NOW)) for _ in range(400)]
        bound = _bound(attempt)
        low, high = min(waits), max(waits)
        Incorrect.unless(
            low >= 0 and high <= bound + 1e-9,
            f"attempt {attempt}: waits ranged {low:.3f}..{high:.3f} s, but must stay within "
            f"0..min(CAP, BASE * 2 ** (attempt - 1)) = 0..{bound:.3f} s.",
        )
        Incorrect.unless(
            len(set(waits)) > len(waits) // 2,
            f"attempt {attempt}: the waits barely vary ({len(set(waits))} distinct values in {len(waits)}): "
            "draw them with rng.uniform (full jitter) so workers that failed together spread out.",
        )
        Incorrect.unless(
            0.35 * bound < mean(waits) < 0.65 * bound and low < 0.1 * bound and high > 0.9 * bound,
            f"attempt {attempt}: the waits should cover the whole range 0..{bound:.3f} s evenly "
            f"(full jitter), but their mean is {mean(waits):.3f} s and they span {low:.3f}..{high:.3f} s.",
        )


def _ignores_retry_after(attempt: int, retry_after: str | None, rng: random.Random, now: datetime) -> float:
    return rng.uniform(0.0, min(CAP, BASE * 2 ** (attempt - 1)))


def _seconds_only(attempt: int, retry_after: str | None, rng: random.Random, now: datetime) -> float:
    if retry_after is not None:
        try:
            return min(float(retry_after), MAX_RETRY_AFTER)
        except ValueError:
            pass
    return rng.uniform(0.0, min(CAP, BASE * 2 ** (attempt - 1)))


def _no_cap(attempt: int, retry_after: str | None, rng: random.Random, now: datetime) -> float:
    if retry_after is not None and retry_after.isdigit():
        return float(retry_after)
    if retry_after is not None:
        return max(0.0, (parsedate_to_datetime(retry_after) - now).total_seconds())
    return rng.uniform(0.0, min(CAP, BASE * 2 ** (attempt - 1)))


def _no_jitter(attempt: int, retry_after: str | None, rng: random.Random, now: datetime) -> float:
    if retry_after is not None:
        return _next_wait(attempt, retry_after, rng, now)
    return min(CAP, BASE * 2 ** (attempt - 1))


def _equal_jitter(attempt: int, retry_after: str | None, rng: random.Random, now: datetime) -> float:
    if retry_after is not None:
        return _next_wait(attempt, retry_after, rng, now)
    bound = min(CAP, BASE * 2 ** (attempt - 1))
    return bound / 2 + rng.uniform(0.0, bound / 2)


def _off_by_one(attempt: int, retry_after: str | None, rng: random.Random, now: datetime) -> float:
    if retry_after is not None:
        return _next_wait(attempt, retry_after, rng, now)
    return rng.uniform(0.0, min(CAP, BASE * 2**attempt))


next_wait = Exercise(
    "next_wait",
    checker=_check_next_wait,
    hint_text=(
        "Two branches. With a Retry-After: if it is all digits it is seconds; otherwise try "
        "email.utils.parsedate_to_datetime(text) and take (that moment - now) in seconds, at least 0; "
        "either way at most MAX_RETRY_AFTER. If there is none (or it is unreadable), draw "
        "rng.uniform(0, min(CAP, BASE * 2 ** (attempt - 1)))."
    ),
    answer=_next_wait,
    solution_code=source_as(_next_wait, "next_wait"),
    wrong_answers=(
        Mistake(_ignores_retry_after, "wait exactly the seconds"),
        Mistake(_seconds_only, "HTTP-date"),
        Mistake(_no_cap, "MAX_RETRY_AFTER"),
        Mistake(_no_jitter, "barely vary"),
        Mistake(_equal_jitter, "whole range"),
        Mistake(_off_by_one, "must stay within"),
    ),
    success="the server's word when it gives one (seconds or a date, capped), full jitter otherwise.",
)


# -- Exercise: get_with_retries -------------------------------------------------------------------------

RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


async def _get_with_retries(
    session: aiohttp.ClientSession, url: str, next_wait, rng: random.Random, retries: int = 4
) -> int:
    """GET `url`; retry a retryable answer or a broken connection at most `retries` times, waiting
    next_wait(failures so far, the Retry-After header or None, rng, now) before each. Returns the
    last status; re-raises the last connection error if the budget ran out on one."""
    failures = 0
    while True:
        header = None
        try:
            async with session.get(url) as response:
                await response.read()
                status, header = response.status, response.headers.get("Retry-After")
        except aiohttp.ClientConnectionError:
            if failures == retries:
                raise
        else:
            if status not in {408, 425, 429, 500, 502, 503, 504} or failures == retries:
                return status
        failures += 1
        await asyncio.sleep(next_wait(failures, header, rng, datetime.now(UTC)))


class _WaitLog:
    """Stands in for next_wait: the reference's waits, and a record of what the learner passed."""

    def __init__(self, limit: int) -> None:
        self.calls: list[tuple[int, str | None]] = []
        self.limit = limit

    def __call__(self, attempt: int, retry_after: str | None, rng: random.Random, now: datetime) -> float:
        self.calls.append((attempt, retry_after))
        if len(self.calls) > self.limit:
            raise Incorrect(
                f"your function asked next_wait for a {len(self.calls)}th wait with retries={self.limit}: "
                "stop after the budget (return the last status)."
            )
        return _next_wait(attempt, retry_after, rng, now)


async def _run_get_with_retries(answer: Any) -> None:
    async with aiohttp.ClientSession() as session:
        url = checker_mock_api({"error_rate": 1.0})
        waits = _WaitLog(3)
        status = await await_or_explain(answer(session, f"{url}/items/1", waits, random.Random(1), 3), 8.0, "500s")
        requests = MockAPIControl(url).stats()["requests"]
        Incorrect.unless(
            requests == 4,
            f"the server answers 500 every time; with retries=3 it should see 1 + 3 = 4 requests, it saw {requests}.",
        )
        Incorrect.unless(
            status == 500, f"after the budget ran out on 500s, return the last status (500), not {status!r}."
        )
        Incorrect.unless(
            [a for a, _ in waits.calls] == [1, 2, 3],
            f"next_wait should get the failures so far, 1, 2, 3; it got {[a for a, _ in waits.calls]}.",
        )

        url = checker_mock_api()
        waits = _WaitLog(3)
        status = await await_or_explain(answer(session, f"{url}/items/5000", waits, random.Random(1), 3), 8.0, "404")
        requests = MockAPIControl(url).stats()["requests"]
        Incorrect.unless(
            requests == 1 and status == 404,
            f"/items/5000 does not exist (404): one request and return 404 at once; the server saw {requests} "
            f"request(s) and you returned {status!r}. Asking again does not make it exist.",
        )

        url = checker_mock_api({"outages": [{"start": 0.0, "duration": 0.6, "retry_after": 1}]})
        waits = _WaitLog(3)
        status = await await_or_explain(answer(session, f"{url}/items/2", waits, random.Random(1), 3), 8.0, "503")
        stats = MockAPIControl(url).stats(detail=True)
        Incorrect.unless(
            waits.calls[:1] == [(1, "1")],
            f"the 503 said Retry-After: 1, but next_wait got {waits.calls[:1]}: pass it the header's text "
            "(response.headers.get('Retry-After')).",
        )
        Incorrect.unless(
            status == 200 and stats["by_status"] == {"503": 1, "200": 1},
            f"a 503 with Retry-After: 1 during a 0.6 s outage: one wait, then 200; the server saw "
            f"{stats['by_status']} and you returned {status!r}.",
        )

        url = checker_mock_api({"drop_rate": 1.0})
        waits = _WaitLog(2)
        try:
            status = await await_or_explain(answer(session, f"{url}/items/3", waits, random.Random(1), 2), 8.0, "drops")
        except aiohttp.ClientConnectionError:
            status = None
        Incorrect.unless(
            len(waits.calls) == 2,
            f"every connection closes without an answer: retry it like a 500 (2 retries with retries=2); "
            f"your function waited {len(waits.calls)} time(s).",
        )
        Incorrect.unless(
            status is None,
            f"when the budget runs out on a broken connection there is no status to return: re-raise the "
            f"connection error (you returned {status!r}).",
        )


def _check_get_with_retries(answer: Any) -> None:
    run_on_own_loop(lambda: _run_get_with_retries(answer))


async def _retries_everything(
    session: aiohttp.ClientSession, url: str, next_wait: Waiter, rng: random.Random, retries: int = 4
) -> int:
    for failures in range(retries + 1):
        async with session.get(url) as response:
            if response.status == 200 or failures == retries:
                return response.status
            header = response.headers.get("Retry-After")
        await asyncio.sleep(next_wait(failures + 1, header, rng, datetime.now(UTC)))
    raise AssertionError("unreachable")


async def _drops_the_header(
    session: aiohttp.ClientSession, url: str, next_wait: Waiter, rng: random.Random, retries: int = 4
) -> int:
    failures = 0
    while True:
        try:
            async with session.get(url) as response:
                status = response.status
        except aiohttp.ClientConnectionError:
            if failures == retries:
                raise
        else:
            if status not in RETRYABLE or failures == retries:
                return status
        failures += 1
        await asyncio.sleep(next_wait(failures, None, rng, datetime.now(UTC)))


async def _no_budget(
    session: aiohttp.ClientSession, url: str, next_wait: Waiter, rng: random.Random, retries: int = 4
) -> int:
    failures = 0
    while True:
        async with session.get(url) as response:
            if response.status not in RETRYABLE:
                return response.status
            header = response.headers.get("Retry-After")
        failures += 1
        await asyncio.sleep(next_wait(failures, header, rng, datetime.now(UTC)))


async def _connection_errors_escape(
    session: aiohttp.ClientSession, url: str, next_wait: Waiter, rng: random.Random, retries: int = 4
) -> int:
    failures = 0
    while True:
        async with session.get(url) as response:
            status, header = response.status, response.headers.get("Retry-After")
        if status not in RETRYABLE or failures == retries:
            return status
        failures += 1
        await asyncio.sleep(next_wait(failures, header, rng, datetime.now(UTC)))


get_with_retries = Exercise(
    "get_with_retries",
    checker=_check_get_with_retries,
    hint_text=(
        "Loop: send the GET inside try/except aiohttp.ClientConnectionError. A status outside "
        "{408, 425, 429, 500, 502, 503, 504} is final: return it. Otherwise (or on a connection error), "
        "if you have already used `retries` retries, return the status (or re-raise); else count one more "
        "failure and await asyncio.sleep(next_wait(failures, the Retry-After header or None, rng, "
        "datetime.now(UTC)))."
    ),
    answer=_get_with_retries,
    solution_code=source_as(_get_with_retries, "get_with_retries"),
    wrong_answers=(
        Mistake(_retries_everything, "Asking again does not make it exist"),
        Mistake(_drops_the_header, "pass it the header's text"),
        Mistake(_no_budget, "stop after the budget"),
        Mistake(_connection_errors_escape, "retry it like a 500"),
    ),
    success="bounded, honest about the last answer, and the server's Retry-After reached next_wait.",
    timeout=25.0,
)
