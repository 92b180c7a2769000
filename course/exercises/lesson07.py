"""Lesson 07 — when the server says no: how long to wait before the next attempt.

The learner writes ``next_wait(attempt, retry_after, rng)``:

- the server said how long (``retry_after`` is a number of seconds): wait exactly that;
- otherwise *full jitter*: a uniform draw in ``[0, min(CAP, BASE * 2 ** (attempt - 1))]``
  using ``rng`` (a ``random.Random``), so many workers that failed together
  do not all come back together.

The checker calls it many times with seeded generators and checks behaviour:
honours ``Retry-After``, stays within the bound, is spread over the whole
range, grows with the attempt number, stops growing at the cap.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from statistics import mean

from course.checks import Exercise, Incorrect

__all__ = ["BASE", "CAP", "next_wait", "next_wait_exercise"]

BASE = 0.1  # seconds: the bound of the first retry's wait
CAP = 2.0  # seconds: the bound never grows past this

Waiter = Callable[[int, "float | None", random.Random], float]


def _bound(attempt: int) -> float:
    return min(CAP, BASE * 2 ** (attempt - 1))


def _samples(f: Waiter, attempt: int, n: int = 400, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [float(f(attempt, None, rng)) for _ in range(n)]


def _check_next_wait(f: Waiter) -> None:
    rng = random.Random(1)
    for attempt, header in [(1, 3.0), (4, 1.0), (9, 0.5), (2, 0.0)]:
        got = f(attempt, header, rng)
        Incorrect.unless(
            got == header,
            f"next_wait({attempt}, retry_after={header}, rng) returned {got!r}: when the server "
            f"sends Retry-After, wait exactly what it asked.",
        )
    for attempt in range(1, 11):
        waits = _samples(f, attempt)
        bound = _bound(attempt)
        low, high = min(waits), max(waits)
        Incorrect.unless(
            low >= 0 and high <= bound + 1e-9,
            f"attempt {attempt}: waits ranged {low:.3f}..{high:.3f} s, but must stay within "
            f"0..min(CAP, BASE * 2 ** (attempt - 1)) = 0..{bound:.3f} s.",
        )
        Incorrect.unless(
            len(set(waits)) > len(waits) // 2,
            f"attempt {attempt}: the waits barely vary ({len(set(waits))} distinct values in "
            f"{len(waits)}): draw them with rng.uniform so workers spread out.",
        )
        Incorrect.unless(
            0.35 * bound < mean(waits) < 0.65 * bound and low < 0.1 * bound and high > 0.9 * bound,
            f"attempt {attempt}: the waits should cover the whole range 0..{bound:.3f} s evenly "
            f"(full jitter), but their mean is {mean(waits):.3f} s and they span {low:.3f}..{high:.3f} s.",
        )


def next_wait(attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds to wait before attempt number ``attempt + 1`` (``attempt`` = 1 after the first failure)."""
    if retry_after is not None:
        return retry_after
    return rng.uniform(0.0, min(CAP, BASE * 2 ** (attempt - 1)))


def _ignores_retry_after(attempt: int, retry_after: float | None, rng: random.Random) -> float:
    return rng.uniform(0.0, min(CAP, BASE * 2 ** (attempt - 1)))


def _no_jitter(attempt: int, retry_after: float | None, rng: random.Random) -> float:
    return retry_after if retry_after is not None else min(CAP, BASE * 2 ** (attempt - 1))


def _no_cap(attempt: int, retry_after: float | None, rng: random.Random) -> float:
    return retry_after if retry_after is not None else rng.uniform(0.0, BASE * 2 ** (attempt - 1))


def _equal_jitter(attempt: int, retry_after: float | None, rng: random.Random) -> float:
    if retry_after is not None:
        return retry_after
    bound = min(CAP, BASE * 2 ** (attempt - 1))
    return bound / 2 + rng.uniform(0.0, bound / 2)


def _no_growth(attempt: int, retry_after: float | None, rng: random.Random) -> float:
    return retry_after if retry_after is not None else rng.uniform(0.0, BASE)


def _off_by_one(attempt: int, retry_after: float | None, rng: random.Random) -> float:
    return retry_after if retry_after is not None else rng.uniform(0.0, min(CAP, BASE * 2**attempt))


next_wait_exercise = Exercise(
    "next wait",
    checker=_check_next_wait,
    hint_text=(
        "Two branches. If retry_after is not None, return it unchanged. Otherwise compute the "
        "bound min(CAP, BASE * 2 ** (attempt - 1)) — 0.1 s, 0.2 s, 0.4 s, ... up to 2 s — and "
        "return rng.uniform(0, bound)."
    ),
    answer=next_wait,
    wrong_answers=(_ignores_retry_after, _no_jitter, _no_cap, _equal_jitter, _no_growth, _off_by_one),
)
