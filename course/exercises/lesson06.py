"""Lesson 06 — workers and a queue: spot the bugs in a throttled queue.

The notebook shows ``LeakyThrottledQueue`` and its worker: short, plausible
code with the defects of the source lesson's throttled queue. The learner
answers with the set of defect keys from ``defect_menu()``; the menu also
holds claims that sound like defects but are not.
"""

from __future__ import annotations

from collections.abc import Iterable

from course.checks import Exercise, Incorrect

__all__ = ["DECOYS", "DEFECTS", "defect_menu", "spot_the_bugs"]

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


def _check_defects(answer: Iterable[str]) -> None:
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
    "spot the bugs",
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
        frozenset(DEFECTS) - {"name-from-wrong-scope"},
        frozenset(DEFECTS) | {"lock-serialises-gets"},
        frozenset({"loop-argument"}),
        frozenset(DECOYS),
        "loop-argument",
        frozenset({"loop-arg"}),
    ),
    solution_code='''answer = {
    "loop-argument",          # asyncio.Queue(maxsize, loop=loop): TypeError since Python 3.10
    "lock-shadows-method",    # self.wait_for_slot = asyncio.Lock() hides async def wait_for_slot
    "mixed-clocks",           # time.monotonic_ns() in __init__, time.monotonic() in wait_for_slot
    "handler-not-awaited",    # report_error(...) only creates a coroutine; it never runs
    "name-from-wrong-scope",  # `response` is unbound when session.get() raised
    "failed-item-dropped",    # the TODO: the item is never put back, so it is lost
}''',
    success="all six, and no false alarms.",
)
