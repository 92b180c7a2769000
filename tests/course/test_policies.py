"""Error and retry policies: the default decisions, Retry-After, bounded jittered backoff, custom handlers."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
from multidict import CIMultiDict

from course.limiters import Gate, RateLimiter
from course.policies import (
    MAX_RETRY_AFTER,
    Attempt,
    Decision,
    ErrorPolicy,
    OutageTooLong,
    RetryPolicy,
    Verdict,
    parse_retry_after,
    retry_after,
)
from course.records import Request, Response


def attempt(status: int | None = None, headers: dict[str, str] | None = None, error: BaseException | None = None,
            limiter: RateLimiter | None = None, gate: Gate | None = None) -> Attempt:
    response = None if status is None else Response(status, CIMultiDict(headers or {}), b'{"error": "x"}')
    return Attempt(7, Request("http://h/items/7"), 1, 0, response, error, limiter, gate, RetryPolicy(seed=1))


async def test_success_is_accepted() -> None:
    assert (await ErrorPolicy().decide(attempt(200))).verdict is Verdict.ACCEPT


async def test_404_fails_at_once_with_the_status_in_the_reason() -> None:
    decision = await ErrorPolicy().decide(attempt(404))
    assert decision.verdict is Verdict.FAIL and "HTTP 404" in decision.reason


async def test_429_slows_the_shared_limiter_and_waits_retry_after_uncounted() -> None:
    limiter = RateLimiter(100, margin=0.0)
    decision = await ErrorPolicy().decide(attempt(429, {"Retry-After": "2"}, limiter=limiter))
    assert decision.verdict is Verdict.RETRY and decision.delay == 2.0 and not decision.counted
    assert limiter.current_rate < 100


async def test_503_pauses_the_gate_for_everyone_uncounted() -> None:
    gate = Gate()
    decision = await ErrorPolicy().decide(attempt(503, {"Retry-After": "3"}, gate=gate))
    assert decision.verdict is Verdict.RETRY and not decision.counted
    assert not gate.is_open


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_server_errors_are_retried_with_a_counted_backoff(status: int) -> None:
    decision = await ErrorPolicy().decide(attempt(status))
    assert decision.verdict is Verdict.RETRY and decision.counted
    assert 0.0 <= decision.delay <= RetryPolicy().cap


async def test_dropped_connections_and_timeouts_are_retried_counted() -> None:
    for error in (aiohttp.ServerDisconnectedError(), TimeoutError()):
        decision = await ErrorPolicy().decide(attempt(error=error))
        assert decision.verdict is Verdict.RETRY and decision.counted


async def test_unexpected_exceptions_fail_instead_of_retrying_forever() -> None:
    decision = await ErrorPolicy().decide(attempt(error=KeyError("oops")))
    assert decision.verdict is Verdict.FAIL and "KeyError" in decision.reason


async def test_custom_handlers_plug_in_sync_or_async() -> None:
    async def teapot(a: Attempt) -> Decision:
        return Decision.accept()

    policy = ErrorPolicy(handlers={418: teapot, 500: lambda a: Decision.fail("no retries for 500 here")})
    assert (await policy.decide(attempt(418))).verdict is Verdict.ACCEPT
    assert (await policy.decide(attempt(500))).reason == "no retries for 500 here"


def test_retry_after_reads_seconds_and_falls_back_on_absence_or_nonsense() -> None:
    def resp(value: str | None) -> Response:
        return Response(429, CIMultiDict({} if value is None else {"Retry-After": value}), b"")

    assert retry_after(resp("3")) == 3.0
    assert retry_after(resp(None), default=1.5) == 1.5
    assert retry_after(None, default=2.5) == 2.5
    for nonsense in ("-4", "soon", "", "nan", "inf", "Mon, 99 Foo 2020 99:99:99 GMT"):
        assert retry_after(resp(nonsense), default=1.5) == 1.5, nonsense


NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),  # IMF-fixdate, the preferred form
        ("Sunday, 01-Mar-26 12:00:30 GMT", 30.0),  # the obsolete RFC 850 form
        ("Sun Mar  1 12:00:30 2026", 30.0),  # the obsolete asctime form
        ("Sun, 01 Mar 2026 11:59:00 GMT", 0.0),  # in the past: go now
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_retry_after_reads_an_http_date_as_the_seconds_until_it(value: str, seconds: float) -> None:
    # Finding 9: the HTTP-date form of RFC 9110 fell back to 1 s.
    assert parse_retry_after(value, default=99.0, now=NOW) == seconds


def test_a_date_is_measured_from_the_real_clock_by_default() -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=40), usegmt=True)
    assert 30.0 < parse_retry_after(soon, default=0.0) <= 40.0


def test_retry_after_is_capped_seconds_or_date() -> None:
    # Finding 9: "Retry-After: 86400" made an item sleep a day.
    assert parse_retry_after("86400") == MAX_RETRY_AFTER == 60.0
    assert parse_retry_after("86400", cap=5.0) == 5.0
    assert parse_retry_after("Mon, 02 Mar 2026 12:00:00 GMT", now=NOW, cap=7.0) == 7.0
    assert parse_retry_after("86400", cap=math.inf) == 86400.0


async def test_429_past_max_retry_after_fails_the_item_with_a_clear_reason() -> None:
    limiter = RateLimiter(100, margin=0.0)
    decision = await ErrorPolicy().decide(attempt(429, {"Retry-After": "86400"}, limiter=limiter))
    assert decision.verdict is Verdict.FAIL
    assert "HTTP 429" in decision.reason and "86400" in decision.reason and "max_retry_after=60" in decision.reason


async def test_503_past_max_retry_after_stops_the_run() -> None:
    gate = Gate()
    tight = RetryPolicy(max_retry_after=5.0)
    outage = Attempt(7, Request("http://h:81/items/7"), 1, 0,
                     Response(503, CIMultiDict({"Retry-After": "30"}), b""), None, None, gate, tight)
    with pytest.raises(OutageTooLong, match=r"http://h:81 is unavailable \(503\).*30 s.*max_retry_after=5 s"):
        await ErrorPolicy().decide(outage)
    assert gate.is_open  # nobody is paused for a wait that will not happen


def test_backoff_is_jittered_grows_and_stays_under_the_cap() -> None:
    policy = RetryPolicy(retries=5, base=0.1, cap=0.5, seed=3)
    waits = [policy.backoff(n) for n in range(1, 9) for _ in range(20)]
    assert all(0.0 <= w <= 0.5 for w in waits)
    assert len(set(waits)) > 100  # jittered, not a fixed ladder
    first = [policy.backoff(1) for _ in range(200)]
    assert max(first) <= 0.1


def test_the_budget_is_bounded() -> None:
    policy = RetryPolicy(retries=2)
    assert not policy.exhausted(2) and policy.exhausted(3)
    with pytest.raises(ValueError, match="retries >= 0"):
        RetryPolicy(retries=-1)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=1.5)
    with pytest.raises(ValueError, match="max_retry_after"):
        RetryPolicy(max_retry_after=math.nan)


def test_partial_jitter_keeps_each_wait_in_the_top_of_its_bound() -> None:
    policy = RetryPolicy(retries=4, base=1.0, cap=4.0, jitter=0.5, seed=2)
    assert [policy.bound(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 4.0, 4.0]
    for n in range(1, 6):
        waits = [policy.backoff(n) for _ in range(200)]
        assert min(waits) >= policy.bound(n) / 2 and max(waits) <= policy.bound(n)
    assert policy.total_wait() == (5.5, 11.0)
    assert RetryPolicy(retries=3, base=1.0, cap=4.0).total_wait() == (0.0, 7.0)  # full jitter: no floor
