"""Lesson 04 (the synchronous baseline): exercises."""

from __future__ import annotations

import math

from course.checks import Exercise, Incorrect

__all__ = ["sequential_seconds"]

# (requests, latency per request, client + server overhead per request)
_CASES = [(1, 0.05, 0.002), (1000, 0.05, 0.002), (250, 0.0, 0.001), (40, 0.1, 0.0), (7, 0.02, 0.003)]


def _sequential_seconds(n_requests: int, latency: float, overhead: float) -> float:
    """Seconds a one-request-at-a-time loop needs: every request waits its full round trip."""
    return n_requests * (latency + overhead)


def _check_sequential_seconds(answer) -> None:
    for n, latency, overhead in _CASES:
        expected = _sequential_seconds(n, latency, overhead)
        got = answer(n, latency, overhead)
        Incorrect.unless(
            isinstance(got, (int, float)),
            f"sequential_seconds({n}, {latency}, {overhead}) returned {got!r}; return a number of seconds.",
        )
        Incorrect.unless(
            math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12),
            f"sequential_seconds({n}, {latency}, {overhead}) returned {got:g}, expected {expected:g}. "
            "In a loop each request starts only when the previous one has finished: "
            "how long does one take, and how many are there?",
        )


sequential_seconds = Exercise(
    "sequential_seconds",
    checker=_check_sequential_seconds,
    hint_text=(
        "One request costs the network round trip (`latency`) plus the time both programs "
        "spend working on it (`overhead`). Nothing overlaps in a loop."
    ),
    answer=_sequential_seconds,
    wrong_answers=(
        lambda n, latency, overhead: n * latency,  # forgets the work done per request
        lambda n, latency, overhead: latency + overhead,  # forgets that there are n of them
        lambda n, latency, overhead: n * latency + overhead,  # overhead counted once
        lambda n, latency, overhead: max(latency, overhead) * n,  # as if they overlapped
    ),
    solution_code=(
        "def sequential_seconds(n_requests, latency, overhead):\n"
        "    # one after another: n round trips, each latency + overhead long\n"
        "    return n_requests * (latency + overhead)\n"
    ),
    success="a loop pays the whole round trip once per request.",
)
