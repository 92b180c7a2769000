"""Lesson 06 — workers and a queue: exercises.

- ``fetch_with_workers`` (async): a producer, N workers and a clean shutdown;
  the checker runs it against its own mock API and reads ``/_stats``: every
  item served once, peak concurrency within the bound, the function returned,
  no task left behind.
- ``even_limiter`` (async): ``EvenLimiter``, an evenly spaced limiter on an
  absolute schedule (GCRA); the checker drives it with concurrent callers
  against a strict sliding-window limit and reads the 429s and the rate.
- ``spot_the_bugs`` (choice): the notebook's ``LeakyThrottledQueue`` and its
  worker have the defects of the source lesson's throttled queue; the learner
  answers with the set of defect keys from ``defect_menu()``, which also holds
  claims that sound like defects but are not.

``run_on_own_loop`` is shared with lesson 07's checkers: it runs a checker's
coroutine on an event loop of its own, so a learner's task that swallows its
cancellation can be left behind and named, instead of hanging the check.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import aiohttp

from course.checks import Exercise, Incorrect, Mistake, checker_mock_api, source_as
from course.mockapi_control import MockAPIControl

__all__ = [
    "DECOYS",
    "DEFECTS",
    "await_or_explain",
    "defect_menu",
    "even_limiter",
    "fetch_with_workers",
    "run_on_own_loop",
    "spot_the_bugs",
]

T = TypeVar("T")


# -- a loop of the checker's own -------------------------------------------------------------


def run_on_own_loop(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion on a fresh event loop in this thread, then close the loop
    *without* waiting for tasks the learner's code left running (one that swallows its
    cancellation would otherwise hang the check). ``main`` must bound its own waits."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in leftovers:
            task.cancel()
        if leftovers:  # give well-behaved leftovers one chance to finish
            with contextlib.suppress(BaseException):
                loop.run_until_complete(asyncio.wait(leftovers, timeout=0.5))
        with contextlib.suppress(BaseException):
            loop.run_until_complete(loop.shutdown_asyncgens())
        stubborn = [task for task in leftovers if not task.done()]
        if stubborn:  # they refused to stop: park them with their loop, never to run again
            _LEFT_BEHIND.append((loop, stubborn))
        else:
            loop.close()


_LEFT_BEHIND: list[tuple[asyncio.AbstractEventLoop, list[asyncio.Task[Any]]]] = []


async def await_or_explain(call: Awaitable[T], seconds: float, what: str, *, why: str = "") -> T:
    """Await ``call`` for at most ``seconds``; if it does not finish, cancel it and say why it hung
    (``why``: what to look at; by default, how the workers learn that the work is over)."""
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if task in done:
        return task.result()
    task.cancel()
    stopped, _ = await asyncio.wait({task}, timeout=1.0)
    if task not in stopped:
        raise Incorrect(
            f"{what} did not return within {seconds:g} s, and when the checker cancelled it, it went on "
            "running: something swallows CancelledError (an `except asyncio.CancelledError:` or a bare "
            "`except:` that does not re-raise). A worker must let its cancellation through."
        )
    raise Incorrect(
        f"{what} did not return within {seconds:g} s: it waited for something that never came. "
        + (
            why
            or "Does every worker learn that the work is over (one end marker per worker, or queue.join() "
            "and then cancel the workers)?"
        )
    )


def _tasks_still_running() -> list[asyncio.Task[Any]]:
    me = asyncio.current_task()
    return [task for task in asyncio.all_tasks() if task is not me and not task.done()]


# -- Exercise: fetch_with_workers ------------------------------------------------------------------

WORKERS_SCENARIO = {"latency": {"mean": 0.01, "jitter": 0.005}}
WORKERS_IDS = [(7 * k) % 60 for k in range(60)]  # 0..59, shuffled
WORKERS = 4


async def _fetch_with_workers(
    session: aiohttp.ClientSession, base_url: str, ids: list[int], workers: int
) -> dict[int, str]:
    """Fetch ``{base_url}/items/{id}`` for every id with ``workers`` worker tasks fed by one queue;
    return ``{id: email}``. Every worker stops when the work is over."""
    queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=2 * workers)
    emails: dict[int, str] = {}

    async def one_worker() -> None:
        while (item := await queue.get()) is not None:
            async with session.get(f"{base_url}/items/{item}") as response:
                response.raise_for_status()
                emails[item] = (await response.json())["email"]

    async with asyncio.TaskGroup() as group:
        for _ in range(workers):
            group.create_task(one_worker())
        for item in ids:
            await queue.put(item)
        for _ in range(workers):
            await queue.put(None)  # one end marker for each worker
    return emails


async def _run_fetch_with_workers(answer: Any) -> None:
    url = checker_mock_api(WORKERS_SCENARIO)
    async with aiohttp.ClientSession() as session:
        call = answer(session, url, list(WORKERS_IDS), WORKERS)
        got = await await_or_explain(call, 8.0, f"fetch_with_workers(session, url, 60 ids, workers={WORKERS})")
        left = _tasks_still_running()
        if left:
            await asyncio.sleep(0.2)  # a task that is just finishing gets a moment
            left = _tasks_still_running()
        if left:
            raise Incorrect(
                f"your function returned, but {len(left)} of its tasks were still running "
                f"(e.g. {left[0].get_coro()!r}): await every worker (a TaskGroup, or gather after "
                "cancelling them) before returning."
            )
        stats = MockAPIControl(url).stats(detail=True)
        Incorrect.unless(isinstance(got, dict), f"return a dict {{id: email}}, not {type(got).__name__}.")
        served: dict[str, int] = stats["served"]
        twice = sorted(int(k) for k, n in served.items() if n > 1)
        if twice:
            raise Incorrect(f"item {twice[0]} was fetched {served[str(twice[0])]} times; once is enough.")
        missing = sorted(set(WORKERS_IDS) - {int(k) for k in served})
        if missing:
            raise Incorrect(f"the server never served item {missing[0]} ({len(missing)} of 60 items missing).")
        peak = stats["peak_concurrency"]
        Incorrect.unless(peak <= WORKERS, f"peak concurrency {peak} at the server, the bound was {WORKERS} workers.")
        Incorrect.unless(
            peak >= 2,
            f"the server never saw two of your requests at once (peak concurrency {peak}): "
            f"the {WORKERS} workers should fetch side by side.",
        )
        wrong = [k for k in WORKERS_IDS if not isinstance(got.get(k), str) or "@" not in got[k]]
        if wrong:
            raise Incorrect(
                f"the dict you returned has no email for item {wrong[0]} (got {got.get(wrong[0])!r}); "
                "map each id to the 'email' of its JSON answer."
            )
        probe = WORKERS_IDS[5]
        async with session.get(f"{url}/items/{probe}") as response:
            truth = (await response.json())["email"]
        Incorrect.unless(got[probe] == truth, f"item {probe}: you returned {got[probe]!r}, the server says {truth!r}.")


def _check_fetch_with_workers(answer: Any) -> None:
    run_on_own_loop(lambda: _run_fetch_with_workers(answer))


async def _no_end_marker(
    session: aiohttp.ClientSession, base_url: str, ids: Iterable[int], workers: int
) -> dict[int, str]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    emails: dict[int, str] = {}

    async def one_worker() -> None:
        while True:
            item = await queue.get()
            async with session.get(f"{base_url}/items/{item}") as response:
                emails[item] = (await response.json())["email"]

    for item in ids:
        queue.put_nowait(item)
    await asyncio.gather(*(one_worker() for _ in range(workers)))
    return emails


async def _one_end_marker(
    session: aiohttp.ClientSession, base_url: str, ids: Iterable[int], workers: int
) -> dict[int, str]:
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    emails: dict[int, str] = {}

    async def one_worker() -> None:
        while (item := await queue.get()) is not None:
            async with session.get(f"{base_url}/items/{item}") as response:
                emails[item] = (await response.json())["email"]

    for item in ids:
        queue.put_nowait(item)
    queue.put_nowait(None)  # the mistake: one marker, N workers
    await asyncio.gather(*(one_worker() for _ in range(workers)))
    return emails


async def _swallows_cancellation(
    session: aiohttp.ClientSession, base_url: str, ids: Iterable[int], workers: int
) -> dict[int, str]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    emails: dict[int, str] = {}

    async def one_worker() -> None:
        while True:
            try:
                item = await queue.get()
            except asyncio.CancelledError:
                continue  # the mistake: "keep going no matter what"
            async with session.get(f"{base_url}/items/{item}") as response:
                emails[item] = (await response.json())["email"]
            queue.task_done()

    tasks = [asyncio.create_task(one_worker()) for _ in range(workers)]
    for item in ids:
        queue.put_nowait(item)
    await queue.join()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return emails


async def _never_awaits_workers(
    session: aiohttp.ClientSession, base_url: str, ids: Iterable[int], workers: int
) -> dict[int, str]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    emails: dict[int, str] = {}

    async def one_worker() -> None:
        while True:
            item = await queue.get()
            async with session.get(f"{base_url}/items/{item}") as response:
                emails[item] = (await response.json())["email"]
            queue.task_done()

    for _ in range(workers):
        asyncio.create_task(one_worker())  # noqa: RUF006 -- the mistake: never awaited, never cancelled
    for item in ids:
        queue.put_nowait(item)
    await queue.join()
    return emails


async def _one_task_per_item(
    session: aiohttp.ClientSession, base_url: str, ids: Iterable[int], workers: int
) -> dict[int, str]:
    async def one(item: int) -> tuple[int, str]:
        async with session.get(f"{base_url}/items/{item}") as response:
            return item, (await response.json())["email"]

    return dict(await asyncio.gather(*(one(item) for item in ids)))


fetch_with_workers = Exercise(
    "fetch_with_workers",
    checker=_check_fetch_with_workers,
    hint_text=(
        "Make one asyncio.Queue and start `workers` tasks that loop: take an id, fetch it, store the "
        "email. Put every id, then stop the workers: either put one end marker per worker (and each "
        "worker returns when it takes one), or have workers call task_done(), await queue.join(), then "
        "cancel the workers and await them. An asyncio.TaskGroup awaits every task for you."
    ),
    answer=_fetch_with_workers,
    solution_code=source_as(_fetch_with_workers, "fetch_with_workers"),
    wrong_answers=(
        Mistake(_no_end_marker, "did not return within"),
        Mistake(_one_end_marker, "one end marker per worker"),
        Mistake(_swallows_cancellation, "swallows CancelledError"),
        Mistake(_never_awaits_workers, "were still running"),
        Mistake(_one_task_per_item, "peak concurrency"),
    ),
    success="every item once, never more than the workers at a time, and nothing left running.",
    timeout=20.0,
)


# -- Exercise: EvenLimiter (GCRA) --------------------------------------------------------------------

LIMIT = 50  # the checker's server admits 50 requests in any one second (strict sliding window)
RATE = 40  # the rate the checker asks of the learner's limiter: a fifth under the limit
CALLERS, CALLS_EACH = 6, 10  # part 1: concurrent callers sharing the limiter
ALONE_CALLS = 16  # part 2: one caller whose own request takes a while


class _EvenLimiter:
    """At most ``rate`` acquisitions per second, evenly spaced, shared by every caller (GCRA)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_slot = 0.0  # the theoretical arrival time of the next caller

    async def acquire(self) -> None:
        """Wait for this caller's slot: one interval after the previous slot, never before now."""
        now = asyncio.get_running_loop().time()
        mine = max(now, self.next_slot)
        self.next_slot = mine + self.interval  # booked before sleeping: the next caller queues behind
        if mine > now:
            await asyncio.sleep(mine - now)


async def _drive_limiter(limiter: Any, session: aiohttp.ClientSession, url: str, callers: int, calls: int) -> None:
    async def caller(who: int) -> None:
        for k in range(calls):
            await limiter.acquire()
            async with session.get(f"{url}/items/{(who * calls + k) % 1000}") as response:
                await response.read()

    await asyncio.gather(*(caller(who) for who in range(callers)))


def _arrival_rate(stats: dict[str, Any]) -> float:
    times = stats["arrivals"]
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else float("inf")


async def _run_even_limiter(answer: Any) -> None:
    url = checker_mock_api({"rate_limit": {"requests": LIMIT, "per": 1.0}})
    control = MockAPIControl(url)
    async with aiohttp.ClientSession() as session:
        limiter = answer(RATE)
        callers = _drive_limiter(limiter, session, url, CALLERS, CALLS_EACH)
        await await_or_explain(callers, 10.0, f"{CALLERS} callers of one EvenLimiter({RATE})")
        stats = control.stats(detail=True)
        refused = stats["by_status"].get("429", 0)
        total = CALLERS * CALLS_EACH
        first_second = sum(1 for t in stats["arrivals"] if t < stats["arrivals"][0] + 1.0)
        Incorrect.unless(
            refused == 0,
            f"{CALLERS} callers sharing EvenLimiter({RATE}) sent {total} requests; the server (at most "
            f"{LIMIT} in any second) refused {refused} with 429: {first_second} arrived within the first "
            f"second. The slots must be shared by every caller, one interval (1/{RATE} s) apart, from the start.",
        )
        rate = _arrival_rate(stats)
        Incorrect.unless(
            rate <= RATE * 1.25,
            f"the server saw {rate:.0f} requests per second; EvenLimiter({RATE}) should space them 1/{RATE} s apart.",
        )
        Incorrect.unless(
            rate >= RATE * 0.8,
            f"{CALLERS} callers always waiting, yet the server saw only {rate:.0f} requests per second out of "
            f"{RATE}: keep an absolute schedule (each slot one interval after the previous *slot*).",
        )
        control.use({"rate_limit": {"requests": LIMIT, "per": 1.0}, "latency": {"mean": 0.6 / RATE, "jitter": 0.0}})
        limiter = answer(RATE)
        alone_caller = _drive_limiter(limiter, session, url, 1, ALONE_CALLS)
        await await_or_explain(alone_caller, 10.0, f"one caller of EvenLimiter({RATE})")
        alone = _arrival_rate(control.stats(detail=True))
        Incorrect.unless(
            alone >= RATE * 0.8,
            f"one caller whose request takes {600 / RATE:.0f} ms got only {alone:.0f} slots per second out of "
            f"{RATE}: your limiter waits a whole interval from each call instead of from the previous slot, "
            "so every request's own time is added to the spacing (it drifts slow).",
        )


def _check_even_limiter(answer: Any) -> None:
    run_on_own_loop(lambda: _run_even_limiter(answer))


class _SleepsAfterEachCall:
    """The mistake: one lock, and a whole interval of sleep on every call (drifts slow)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self.lock:
            await asyncio.sleep(self.interval)


class _BurstsAtStart:
    """The mistake: a token bucket that starts full, so the first second's worth goes at once."""

    def __init__(self, rate: float) -> None:
        self.rate, self.tokens = rate, float(rate)
        self.updated: float | None = None

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if self.updated is not None:
                self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


class _PerCallerSchedule:
    """The mistake: every caller keeps its own pace, so N callers go N times as fast."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate

    async def acquire(self) -> None:
        await asyncio.sleep(self.interval)


even_limiter = Exercise(
    "even_limiter",
    checker=_check_even_limiter,
    hint_text=(
        "Keep one number shared by all callers: the time of the next free slot. In acquire(), read "
        "now from the running loop's time(); your slot is the later of now and that number; move the "
        "number one interval (1/rate) past your slot *before* you sleep, then sleep until your slot."
    ),
    answer=_EvenLimiter,
    solution_code=source_as(_EvenLimiter, "EvenLimiter"),
    wrong_answers=(
        Mistake(_SleepsAfterEachCall, "drifts slow"),
        Mistake(_BurstsAtStart, "refused"),
        Mistake(_PerCallerSchedule, "refused"),
    ),
    success="evenly spaced, shared by every caller, no 429 and close to the rate.",
    timeout=25.0,
)


# -- Exercise: spot the bugs (choice) ---------------------------------------------------------------

#: The real defects of the notebook's LeakyThrottledQueue and worker: key -> (claim, where to look).
DEFECTS: dict[str, tuple[str, str]] = {
    "loop-argument": (
        "passes loop= to asyncio.Queue, an argument Python 3.10 removed",
        "the first line of __init__",
    ),
    "lock-shadows-method": (
        "stores the lock under the name of a method, so calling that method fails",
        "the attribute names set in __init__",
    ),
    "mixed-clocks": (
        "compares a nanosecond timestamp with a seconds timestamp",
        "the units of the clocks in __init__ and wait_for_slot",
    ),
    "handler-not-awaited": (
        "calls the async error handler without await, so it never runs",
        "how the worker calls report_error",
    ),
    "name-from-wrong-scope": (
        "hands the error handler a name that may not exist when the request failed",
        "what the worker passes to report_error when the connection itself failed",
    ),
    "failed-item-dropped": (
        "drops a failed item instead of retrying it, so it is never fetched",
        "what happens to item_id after the except block",
    ),
}

#: Claims that sound like defects but are not: key -> (claim, why it is fine).
DECOYS: dict[str, tuple[str, str]] = {
    "subclassing-queue": (
        "subclassing asyncio.Queue is not supported; wrap a queue instead",
        "subclassing asyncio.Queue and overriding get() is fine (course.queues does it)",
    ),
    "none-sentinel": (
        "None as the end marker can stop a worker before the real items are done",
        "the producer puts one None per worker after every item, and the queue is first in, first out",
    ),
    "shared-session": (
        "sharing one ClientSession between all workers overloads its connection pool",
        "one shared session is what aiohttp recommends: its pool reuses connections",
    ),
    "lock-serialises-gets": (
        "a lock in get() lets only one worker wait for a slot, so the rate cannot be reached",
        "one getter at a time is the point: slots are handed out in order, one interval apart",
    ),
    "task-done-missing": (
        "the worker never calls queue.task_done(), so queue.join() would hang",
        "task_done() is called once for every get(), the end marker included",
    ),
}


def defect_menu() -> str:
    """The claims to choose from, one per line, sorted by key (defects and decoys mixed)."""
    claims = {key: text for key, (text, _) in {**DEFECTS, **DECOYS}.items()}
    width = max(map(len, claims))
    return "\n".join(f"{key:<{width}}  {claims[key]}" for key in sorted(claims))


def _check_defects(answer: Any) -> None:
    if isinstance(answer, str) or not isinstance(answer, Iterable):
        raise Incorrect('Answer with a set of keys from the menu, e.g. {"loop-argument", "mixed-clocks"}.')
    keys = {str(key).strip().lower() for key in answer}
    unknown = sorted(keys - DEFECTS.keys() - DECOYS.keys())
    Incorrect.unless(not unknown, f"Unknown key(s) {unknown}: copy the keys exactly as the menu prints them.")
    decoys = sorted(keys & DECOYS.keys())
    if decoys:
        why = "; ".join(f"{key}: {DECOYS[key][1]}" for key in decoys)
        raise Incorrect(f"Not a defect — {why}.")
    missing = [key for key in DEFECTS if key not in keys]
    if missing:
        places = "; ".join(DEFECTS[key][1] for key in missing)
        raise Incorrect(f"You found {len(keys)} of {len(DEFECTS)} defects. Look again at: {places}.")


spot_the_bugs = Exercise(
    "spot_the_bugs",
    checker=_check_defects,
    hint_text=(
        "Read it as Python 3.11 would run it. Which line fails as soon as you create the queue? "
        "Which attribute is assigned twice, once as a method (def) and once in __init__? "
        "What unit does each clock return? In the worker: what does calling an `async def` "
        "without `await` do, which names exist when `session.get` itself raised, and where "
        "does a failed item go? Six of the menu's claims are real."
    ),
    answer=frozenset(DEFECTS),
    wrong_answers=(
        Mistake(frozenset(DEFECTS) - {"name-from-wrong-scope"}, "You found 5 of 6 defects"),
        Mistake(frozenset(DEFECTS) | {"lock-serialises-gets"}, "Not a defect — lock-serialises-gets"),
        Mistake(frozenset({"loop-argument"}), "You found 1 of 6"),
        Mistake(frozenset(DECOYS), "Not a defect"),
        Mistake("loop-argument", "set of keys"),
        Mistake(frozenset({"loop-arg"}), "Unknown key"),
    ),
    solution_code="""answer = {
    "loop-argument",          # asyncio.Queue(maxsize, loop=loop): TypeError since Python 3.10
    "lock-shadows-method",    # self.wait_for_slot = asyncio.Lock() hides async def wait_for_slot
    "mixed-clocks",           # time.monotonic_ns() in __init__, time.monotonic() in wait_for_slot
    "handler-not-awaited",    # report_error(...) only creates a coroutine; it never runs
    "name-from-wrong-scope",  # `response` is unbound when session.get() raised
    "failed-item-dropped",    # the TODO: the item is never put back, so it is lost
}

# How course.queues.ThrottledQueue and course.workers.WorkerPool avoid each one:
# loop-argument          never passed: asyncio finds the running loop itself
# lock-shadows-method    the lock is self._one_getter; no method has that name
# mixed-clocks           one clock everywhere: the event loop's loop.time() (monotonic seconds)
# handler-not-awaited    the error policy's decide() awaits a handler that returns an awaitable
# name-from-wrong-scope  a handler receives one Attempt record: the response *or* the error
# failed-item-dropped    a worker keeps an item until it is a Result or a Failure (lesson 07)""",
    success="all six, and no false alarms.",
)
