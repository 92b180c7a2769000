"""One coroutine per request (the lesson's approach 1), done right.

Every item gets its own task; a shared limiter (``throttler.Throttler``,
``aiolimiter.AsyncLimiter`` or our ``RateLimiter`` -- anything used as
``async with limiter:``) spaces the requests, and ``tenacity`` retries them.
What "done right" means here:

- the retry loop is *outside* the limiter: every attempt, retries included,
  takes its own slot (a retry inside the slot would not be counted);
- the body is read inside the ``async with session.request(...)`` block,
  while the connection is still ours, and never past ``max_body`` bytes
  (``course.http.send_request``, which the worker pool uses too);
- retries are bounded (``attempts``) and jittered (``wait_random_exponential``),
  and a 429/503 waits the ``Retry-After`` the server asked for;
- an item that runs out of attempts becomes a ``Failure`` with its last
  error; nothing is dropped. Cancellation is never retried.

Its weakness is the subject of the lesson: N items are N tasks alive at
once (about 1 KiB each while they wait), and nothing can pause them all.

    >>> outcomes = await fetch_each(range(1000), api.url + "/items/{item}",
    ...                             limiter=Throttler(rate_limit=100, period=1.0))
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from course.http import DEFAULT_MAX_BODY, new_session, send_request
from course.policies import retry_after
from course.records import Failure, Outcome, Request, Response, Result
from course.workers import RequestBuilder, Unpacker, json_body, url_for

__all__ = ["RetryableStatus", "fetch_each", "wait_retry_after"]


class RetryableStatus(Exception):
    """A 429, 503 or other 5xx answer: worth another attempt."""

    def __init__(self, response: Response) -> None:
        self.response = response
        super().__init__(f"HTTP {response.status}: {response.text()[:200].strip()}")


RETRY_ON = (RetryableStatus, aiohttp.ClientError, asyncio.TimeoutError)
_backoff = wait_random_exponential(multiplier=0.05, max=2.0)


def wait_retry_after(state: RetryCallState) -> float:
    """The server's Retry-After for 429/503, else a jittered exponential backoff."""
    error = state.outcome.exception() if state.outcome is not None else None
    if isinstance(error, RetryableStatus) and error.response.status in (429, 503):
        return retry_after(error.response)
    return _backoff(state)


async def fetch_each(
    items: Iterable[Any],
    build: RequestBuilder | str,
    *,
    limiter: AbstractAsyncContextManager[Any] | None,
    attempts: int = 6,
    unpack: Unpacker = json_body,
    session: aiohttp.ClientSession | None = None,
    connections: int = 100,
    request_timeout: float = 30.0,
    max_body: int | None = DEFAULT_MAX_BODY,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """One task per item; returns every Result/Failure (in item order).

    With ``on_outcome`` each outcome is handed over as it completes and the
    returned list is empty (so memory holds tasks, not results). A session
    made here has ``connections`` connections and gives each request
    ``request_timeout`` seconds; a body over ``max_body`` bytes fails its item.
    """
    builder = url_for(build) if isinstance(build, str) else build
    own = session is None
    http = session if session is not None else new_session(connections, request_timeout)

    async def attempt(request: Request) -> Response:
        if limiter is not None:
            async with limiter:  # one slot per attempt
                return await send_request(http, request, max_body=max_body)
        return await send_request(http, request, max_body=max_body)

    async def one(item: Any) -> Outcome | None:
        tries = 0
        try:
            request = builder(item)
            response: Response | None = None
            async for retrying in AsyncRetrying(
                stop=stop_after_attempt(attempts),
                wait=wait_retry_after,
                retry=retry_if_exception_type(RETRY_ON),
            ):
                with retrying:
                    tries += 1
                    response = await attempt(request)
                    if response.status == 429 or response.status >= 500:
                        raise RetryableStatus(response)
            assert response is not None  # the loop ends after an answer, or raises
            if response.status >= 400:
                reason = f"HTTP {response.status}: {response.text()[:200]}"
                outcome: Outcome = Failure(item, reason, response.status, tries)
            else:
                outcome = Result(item, response.status, unpack(item, response), tries)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            status = last.response.status if isinstance(last, RetryableStatus) else None
            outcome = Failure(item, f"gave up after {tries} attempts; last error: {last!r}", status, tries)
        except Exception as exc:  # a builder/unpacker bug: reported, not dropped
            outcome = Failure(item, f"{type(exc).__name__}: {exc}", None, tries)
        if on_outcome is not None:
            on_outcome(outcome)
            return None
        return outcome

    try:
        outcomes = await asyncio.gather(*(one(item) for item in items))
    finally:
        if own:
            await http.close()
    return [outcome for outcome in outcomes if outcome is not None]
