"""Lesson 05 (one coroutine per request): exercises.

``in_flight_needed`` is arithmetic (Little's law); the other three ask for async
code and are judged against the checkers' own mock API
(:func:`course.checks.checker_mock_api`): ``fetch_all`` by the peak concurrency
the server saw, ``fetch_within`` by what is left running after a timeout or a
cancellation, ``fetch_group`` by how soon a failure stops its siblings.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import aiohttp

from course.checks import Exercise, Incorrect, Mistake, checker_mock_api, source_as
from course.mockapi_control import AsyncMockAPIControl

__all__ = ["fetch_all", "fetch_group", "fetch_within", "in_flight_needed"]


async def _bodies(session: aiohttp.ClientSession, base_url: str, ids: list[int]) -> list[Any]:
    """What ``GET /items/{id}`` answers for each id (the checker's own, correct fetch)."""

    async def one(item: int) -> Any:
        async with session.get(f"{base_url}/items/{item}") as response:
            return await response.json()

    return list(await asyncio.gather(*(one(item) for item in ids)))


def _still_running() -> list[asyncio.Task[Any]]:
    """Tasks of this loop, other than the checker's own, that have not finished."""
    current = asyncio.current_task()
    return [task for task in asyncio.all_tasks() if task is not current and not task.done()]


async def _cancel_leftovers() -> int:
    """Cancel (and wait for) the tasks an answer left behind; how many there were."""
    await asyncio.sleep(0)  # let tasks that are merely finishing finish
    leftovers = _still_running()
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)
    return len(leftovers)


# -- in_flight_needed: Little's law ------------------------------------------------------------

# (requests per second wanted, seconds each request takes, the answer)
_CASES = [(100, 0.05, 5), (100, 0.02, 2), (1000, 0.05, 50), (10, 0.25, 3), (500, 0.003, 2), (30, 1.0, 30)]


def _in_flight_needed(rate: float, latency: float) -> int:
    """Requests that must be in flight at once to sustain ``rate`` per second (Little's law)."""
    return math.ceil(rate * latency - 1e-9)


def _check_in_flight_needed(answer: Callable[[float, float], Any]) -> None:
    for rate, latency, expected in _CASES:
        got = answer(rate, latency)
        Incorrect.unless(
            isinstance(got, int) and not isinstance(got, bool),
            f"in_flight_needed({rate}, {latency}) returned {got!r}; return a whole number of requests (an int).",
        )
        Incorrect.unless(
            got == expected,
            f"in_flight_needed({rate}, {latency}) returned {got}, expected {expected}. "
            "Each request occupies one 'seat' for `latency` seconds; how many seats are busy "
            "when `rate` requests start every second? Round up: half a request is still one.",
        )


in_flight_needed = Exercise(
    "in_flight_needed",
    checker=_check_in_flight_needed,
    hint_text=(
        "Little's law: requests in flight = arrival rate * time each one spends in flight. "
        "Round up to a whole request (`math.ceil`)."
    ),
    answer=_in_flight_needed,
    wrong_answers=(
        Mistake(lambda rate, latency: int(rate * latency), "in_flight_needed(10, 0.25) returned 2, expected 3"),
        Mistake(lambda rate, latency: math.ceil(rate / latency), "returned 2000, expected 5"),
        Mistake(lambda rate, latency: rate * latency, "return a whole number of requests"),
        Mistake(lambda rate, latency: 1000, "returned 1000, expected 5"),
    ),
    solution_code=(
        "import math\n\n"
        "def in_flight_needed(rate, latency):\n"
        "    # Little's law: L = lambda * W, rounded up to whole requests\n"
        "    return math.ceil(rate * latency)\n"
    ),
    success="more coroutines than that only wait (and take memory while they wait).",
)


# -- fetch_all: gather, bounded by a semaphore -------------------------------------------------

_GATHER_IDS = list(range(100, 140))  # 40 items
_GATHER_LIMIT = 5
_GATHER_LATENCY = 0.05


async def _fetch_all(session: aiohttp.ClientSession, urls: list[str], limit: int) -> list:
    """Every URL's JSON body, in the order of urls, with at most `limit` requests in flight."""
    seats = asyncio.Semaphore(limit)

    async def fetch(url: str) -> dict:
        # a seat per request: taken before it is sent, given back when it is done (even on an error)
        async with seats, session.get(url) as response:
            response.raise_for_status()
            return await response.json()

    return await asyncio.gather(*map(fetch, urls))


async def _check_fetch_all(answer: Callable[..., Any]) -> None:
    base = checker_mock_api({"latency": {"mean": _GATHER_LATENCY, "jitter": 0.0}})
    urls = [f"{base}/items/{item}" for item in _GATHER_IDS]
    async with aiohttp.ClientSession() as session:  # a pool of 100 connections: the bound must be yours
        got = await answer(session, urls, _GATHER_LIMIT)
        stats = await AsyncMockAPIControl(base, session).stats(detail=True)
        left = await _cancel_leftovers()
        await AsyncMockAPIControl(base, session).use({})
        expected = await _bodies(session, base, _GATHER_IDS)
    Incorrect.unless(left == 0, f"{left} task(s) were still running after fetch_all returned: wait for every one.")
    Incorrect.unless(
        isinstance(got, list) and len(got) == len(urls),
        f"fetch_all(session, <{len(urls)} URLs>, {_GATHER_LIMIT}) returned {got!r:.80}; "
        f"expected a list of {len(urls)} JSON bodies, one per URL.",
    )
    served = stats["served"]
    for item in _GATHER_IDS:
        times = served.get(str(item), 0)
        Incorrect.unless(
            times == 1,
            f"item {item} was served {times} times; every URL should be fetched exactly once.",
        )
    for index, (mine, right) in enumerate(zip(got, expected, strict=True)):
        Incorrect.unless(
            mine == right,
            f"result {index} is {mine!r}, expected {right!r} (the body of urls[{index}]): "
            "return the results in the order of the URLs.",
        )
    peak = stats["peak_concurrency"]
    Incorrect.unless(
        peak <= _GATHER_LIMIT,
        f"peak concurrency {peak}, the bound was {_GATHER_LIMIT}: the server had more requests in flight "
        "than `limit` allows. Each request must hold a seat of the semaphore while it is in flight.",
    )
    Incorrect.unless(
        peak > 1,
        f"the server never had more than one request at a time (the bound was {_GATHER_LIMIT}): "
        "your requests ran one after another. Start them all (gather) and let the semaphore hold them back.",
    )


async def _fetch_all_never_released(session: aiohttp.ClientSession, urls: list[str], limit: int) -> list[Any]:
    seats = asyncio.Semaphore(limit)

    async def fetch(url: str) -> Any:
        await seats.acquire()  # the mistake: taken, never given back
        async with session.get(url) as response:
            return await response.json()

    return await asyncio.gather(*map(fetch, urls))


async def _fetch_all_unbounded(session: aiohttp.ClientSession, urls: list[str], limit: int) -> list[Any]:
    async def fetch(url: str) -> Any:
        async with session.get(url) as response:
            return await response.json()

    return await asyncio.gather(*map(fetch, urls))  # the mistake: `limit` is not used


async def _fetch_all_gate_around_gather(session: aiohttp.ClientSession, urls: list[str], limit: int) -> list[Any]:
    seats = asyncio.Semaphore(limit)

    async def fetch(url: str) -> Any:
        async with session.get(url) as response:
            return await response.json()

    async with seats:  # the mistake: one seat for the whole gather, not one per request
        return await asyncio.gather(*map(fetch, urls))


async def _fetch_all_one_by_one(session: aiohttp.ClientSession, urls: list[str], limit: int) -> list[Any]:
    bodies = []
    for url in urls:  # the mistake: within the bound, but never concurrent
        async with session.get(url) as response:
            bodies.append(await response.json())
    return bodies


async def _fetch_all_as_completed(session: aiohttp.ClientSession, urls: list[str], limit: int) -> list[Any]:
    seats = asyncio.Semaphore(limit)

    async def fetch(url: str) -> Any:
        async with seats, session.get(url) as response:
            return await response.json()

    return [await done for done in asyncio.as_completed(map(fetch, urls))]  # the mistake: finishing order


fetch_all = Exercise(
    "fetch_all",
    checker=_check_fetch_all,
    hint_text=(
        "Make one `asyncio.Semaphore(limit)`. Write a small coroutine for ONE url that does "
        "`async with the_semaphore:` around its request (so the seat is given back even on an error), "
        "then `gather` one of those per url: gather keeps the order of its arguments."
    ),
    answer=_fetch_all,
    wrong_answers=(
        Mistake(_fetch_all_never_released, "did not finish within"),
        Mistake(_fetch_all_unbounded, "the bound was 5"),
        Mistake(_fetch_all_gate_around_gather, "the bound was 5"),
        Mistake(_fetch_all_one_by_one, "one after another"),
        Mistake(_fetch_all_as_completed, "in the order of the URLs"),
    ),
    solution_code=source_as(_fetch_all, "fetch_all"),
    success="every request held one seat while in flight, so the server never saw more than the bound.",
    timeout=8.0,
)


# -- fetch_within: a timeout that cancels cleanly ---------------------------------------------

_QUICK, _SLOW = 0.05, 1.5  # seconds the server takes to answer in the checker's two scenarios
_LIMIT_IN_TIME, _LIMIT_TOO_SHORT, _CANCEL_AFTER = 2.0, 0.2, 0.2


async def _fetch_within(session: aiohttp.ClientSession, url: str, seconds: float) -> dict | None:
    """The JSON body of url, or None if it does not come within `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            async with session.get(url) as response:
                response.raise_for_status()
                return await response.json()
    except TimeoutError:  # raised by asyncio.timeout in place of the CancelledError it caused
        return None


async def _check_fetch_within(answer: Callable[..., Any]) -> None:
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        control = AsyncMockAPIControl(checker_mock_api({"latency": {"mean": _QUICK, "jitter": 0.0}}), session)
        (expected,) = await _bodies(session, control.base_url, [7])
        got = await answer(session, f"{control.base_url}/items/7", _LIMIT_IN_TIME)
        left = await _cancel_leftovers()
        Incorrect.unless(
            got == expected,
            f"fetch_within(session, url, {_LIMIT_IN_TIME}) returned {got!r} for an item the server answers in "
            f"{_QUICK} s; expected its JSON body {expected!r}.",
        )
        Incorrect.unless(left == 0, f"{left} task(s) were still running after an answer that came in time.")

        await control.use({"latency": {"mean": _SLOW, "jitter": 0.0}})
        started = loop.time()
        got = await answer(session, f"{control.base_url}/items/8", _LIMIT_TOO_SHORT)
        took = loop.time() - started
        left = await _cancel_leftovers()
        Incorrect.unless(
            got is None,
            f"fetch_within(session, url, {_LIMIT_TOO_SHORT}) returned {got!r} after {took:.1f} s; the server takes "
            f"{_SLOW} s and the limit was {_LIMIT_TOO_SHORT} s: stop waiting when the time is up and return None.",
        )
        Incorrect.unless(
            took < (_LIMIT_TOO_SHORT + _SLOW) / 2,
            f"fetch_within returned None, but only after {took:.1f} s; the limit was {_LIMIT_TOO_SHORT} s: "
            "the timeout must interrupt the wait, not be checked after it.",
        )
        Incorrect.unless(
            left == 0,
            f"{left} task(s) were still running after fetch_within returned None: a request that timed out "
            "must be cancelled, not left behind (asyncio.wait(..., timeout=...) does not cancel anything).",
        )

        task = asyncio.create_task(answer(session, f"{control.base_url}/items/9", _SLOW * 3))
        await asyncio.sleep(_CANCEL_AFTER)
        task.cancel()
        try:
            value = await task
        except asyncio.CancelledError:
            pass
        else:
            raise Incorrect(
                f"cancelled by its caller after {_CANCEL_AFTER} s (long before its own limit), fetch_within "
                f"returned {value!r} instead of ending cancelled: a swallowed CancelledError. Catch only the "
                "TimeoutError and let a cancellation through, or whoever cancelled you cannot stop you."
            )
        left = await _cancel_leftovers()
        Incorrect.unless(left == 0, f"{left} task(s) were still running after fetch_within was cancelled.")


async def _fetch_within_swallowing(session: aiohttp.ClientSession, url: str, seconds: float) -> Any:
    try:
        async with asyncio.timeout(seconds):
            async with session.get(url) as response:
                return await response.json()
    except (TimeoutError, asyncio.CancelledError):  # the mistake: a cancellation is not a timeout
        return None


async def _fetch_within_not_enforced(session: aiohttp.ClientSession, url: str, seconds: float) -> Any:
    started = asyncio.get_running_loop().time()
    async with session.get(url) as response:
        body = await response.json()
    return None if asyncio.get_running_loop().time() - started > seconds else body  # the mistake: too late


async def _fetch_within_left_running(session: aiohttp.ClientSession, url: str, seconds: float) -> Any:
    async def get() -> Any:
        async with session.get(url) as response:
            return await response.json()

    request = asyncio.create_task(get())
    done, _ = await asyncio.wait({request}, timeout=seconds)  # the mistake: the task is not cancelled
    return request.result() if done else None


async def _fetch_within_deadline_mixup(session: aiohttp.ClientSession, url: str, seconds: float) -> Any:
    try:
        async with asyncio.timeout_at(seconds):  # the mistake: a duration passed as a deadline (long past)
            async with session.get(url) as response:
                return await response.json()
    except TimeoutError:
        return None


fetch_within = Exercise(
    "fetch_within",
    checker=_check_fetch_within,
    hint_text=(
        "Wrap the request in `async with asyncio.timeout(seconds):` and catch `TimeoutError` outside that "
        "block. Catch nothing else: a `CancelledError` from your caller must pass through."
    ),
    answer=_fetch_within,
    wrong_answers=(
        Mistake(_fetch_within_swallowing, "swallowed CancelledError"),
        Mistake(_fetch_within_not_enforced, "the limit was 0.2 s"),
        Mistake(_fetch_within_left_running, "still running"),
        Mistake(_fetch_within_deadline_mixup, "returned None for an item the server answers in 0.05 s"),
    ),
    solution_code=source_as(_fetch_within, "fetch_within"),
    success="the slow request was cancelled when the time was up, and your caller can still cancel you.",
    timeout=10.0,
)


# -- fetch_group: a TaskGroup, and except* ------------------------------------------------------

_GROUP_IDS = [11, 12, 13, 14, 15, 16]
_GROUP_SLOW = 3.0  # seconds the healthy requests take while one fails at once


def _describe(error: aiohttp.ClientResponseError) -> str:
    return f"{error.status} {error.request_info.url.path}"


async def _fetch_group(session: aiohttp.ClientSession, urls: list[str]) -> tuple[list, list[str]]:
    """All bodies and no errors, or no bodies and one "<status> <path>" per failed request."""

    async def fetch(url: str) -> dict:
        async with session.get(url) as response:
            response.raise_for_status()
            return await response.json()

    errors: list[str] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(fetch(url)) for url in urls]
    except* aiohttp.ClientResponseError as failed:  # no `return` allowed in here
        for error in failed.exceptions:
            if isinstance(error, aiohttp.ClientResponseError):
                errors.append(f"{error.status} {error.request_info.url.path}")
    if errors:
        return [], errors
    return [task.result() for task in tasks], []


async def _check_fetch_group(answer: Callable[..., Any]) -> None:
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        control = AsyncMockAPIControl(checker_mock_api({"latency": {"mean": 0.05, "jitter": 0.0}}), session)
        healthy = [f"{control.base_url}/items/{item}" for item in _GROUP_IDS]
        expected = await _bodies(session, control.base_url, _GROUP_IDS)
        got = await answer(session, healthy)
        left = await _cancel_leftovers()
        Incorrect.unless(
            isinstance(got, tuple) and len(got) == 2,
            f"fetch_group returned {got!r:.80}; expected a tuple (results, errors).",
        )
        Incorrect.unless(
            list(got[0]) == expected and list(got[1]) == [],
            f"with {len(healthy)} URLs that all answer 200, fetch_group returned {got!r:.120}; expected "
            f"({expected[:2]!r:.60}..., []): every body, in the order of the URLs, and no errors.",
        )
        Incorrect.unless(left == 0, f"{left} task(s) were still running after fetch_group returned.")

        await control.use({"latency": {"mean": _GROUP_SLOW, "jitter": 0.0}})
        for scenario, path, status in [({}, "/items/10", 404), ({"error_rate": 1.0}, "/items/3", 500)]:
            broken = checker_mock_api(scenario, items=10) + path  # a second server, answering at once
            urls = [*healthy[:2], broken, *healthy[2:]]
            started = loop.time()
            got = await answer(session, urls)
            took = loop.time() - started
            left = await _cancel_leftovers()
            Incorrect.unless(
                left == 0,
                f"{left} request(s) were still running after fetch_group returned: when {path} failed with "
                f"{status}, the others went on. asyncio.gather does not cancel them; a TaskGroup does.",
            )
            Incorrect.unless(
                took < _GROUP_SLOW / 2,
                f"fetch_group returned after {took:.1f} s: the other requests were not cancelled when {path} "
                f"failed with {status} at once (they take {_GROUP_SLOW:g} s). In a TaskGroup, one failure "
                "cancels its siblings.",
            )
            wanted: tuple[list[Any], list[str]] = ([], [f"{status} {path}"])
            Incorrect.unless(
                isinstance(got, tuple) and len(got) == 2 and (list(got[0]), list(got[1])) == wanted,
                f"when {path} answered {status}, fetch_group returned {got!r:.120}; expected {wanted!r}: "
                "no results, and one '<status> <path>' per failed request.",
            )


async def _fetch_group_plain_except(session: aiohttp.ClientSession, urls: list[str]) -> Any:
    async def fetch(url: str) -> Any:
        async with session.get(url) as response:
            response.raise_for_status()
            return await response.json()

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(fetch(url)) for url in urls]
    except aiohttp.ClientResponseError as error:  # the mistake: a TaskGroup raises an ExceptionGroup
        return [], [_describe(error)]
    return [task.result() for task in tasks], []


async def _fetch_group_gather(session: aiohttp.ClientSession, urls: list[str]) -> Any:
    async def fetch(url: str) -> Any:
        async with session.get(url) as response:
            response.raise_for_status()
            return await response.json()

    try:
        return list(await asyncio.gather(*map(fetch, urls))), []
    except aiohttp.ClientResponseError as error:  # the mistake: gather leaves the others running
        return [], [_describe(error)]


async def _fetch_group_return_exceptions(session: aiohttp.ClientSession, urls: list[str]) -> Any:
    async def fetch(url: str) -> Any:
        async with session.get(url) as response:
            response.raise_for_status()
            return await response.json()

    outcomes = await asyncio.gather(*map(fetch, urls), return_exceptions=True)  # the mistake: waits for all
    errors = [_describe(o) for o in outcomes if isinstance(o, aiohttp.ClientResponseError)]
    return ([] if errors else list(outcomes)), errors


fetch_group = Exercise(
    "fetch_group",
    checker=_check_fetch_group,
    hint_text=(
        "Create one task per URL inside `async with asyncio.TaskGroup() as group:`. Put that block in a "
        "`try` and handle the failures with `except* aiohttp.ClientResponseError as failed:` — "
        "`failed.exceptions` holds each error, with `.status` and `.request_info.url.path`."
    ),
    answer=_fetch_group,
    wrong_answers=(
        Mistake(_fetch_group_plain_except, "ExceptionGroup"),
        Mistake(_fetch_group_gather, "still running"),
        Mistake(_fetch_group_return_exceptions, "were not cancelled"),
    ),
    solution_code=source_as(_fetch_group, "fetch_group"),
    success="one failure cancelled the siblings, and except* took the errors out of the ExceptionGroup.",
    timeout=15.0,
)
