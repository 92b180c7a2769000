"""Error and retry policies: the default decisions, Retry-After, bounded jittered backoff, custom handlers."""

from __future__ import annotations

import aiohttp
import pytest
from multidict import CIMultiDict

from course.limiters import Gate, RateLimiter
from course.policies import Attempt, Decision, ErrorPolicy, RetryPolicy, Verdict, retry_after
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


def test_retry_after_reads_seconds_and_falls_back_on_dates_or_absence() -> None:
    def resp(value: str | None) -> Response:
        return Response(429, CIMultiDict({} if value is None else {"Retry-After": value}), b"")

    assert retry_after(resp("3")) == 3.0
    assert retry_after(resp(None), default=1.5) == 1.5
    assert retry_after(resp("Wed, 21 Oct 2015 07:28:00 GMT")) == 1.0
    assert retry_after(resp("-4")) == 1.0


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
