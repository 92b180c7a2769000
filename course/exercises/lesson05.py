"""Lesson 05 (one coroutine per request): exercises."""

from __future__ import annotations

import math

from course.checks import Exercise, Incorrect

__all__ = ["in_flight_needed"]

# (requests per second wanted, seconds each request takes)
_CASES = [(100, 0.05, 5), (100, 0.02, 2), (1000, 0.05, 50), (10, 0.25, 3), (500, 0.003, 2), (30, 1.0, 30)]


def _in_flight_needed(rate: float, latency: float) -> int:
    """Requests that must be in flight at once to sustain ``rate`` per second (Little's law)."""
    return math.ceil(rate * latency - 1e-9)


def _check_in_flight_needed(answer) -> None:
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
        lambda rate, latency: int(rate),  # one coroutine per request allowed per second
        lambda rate, latency: int(rate * latency),  # rounds down: falls short of the rate
        lambda rate, latency: math.ceil(rate / latency),  # divides instead of multiplying
        lambda rate, latency: rate * latency,  # a float, not a count
        lambda rate, latency: 1000,  # "one per item"
    ),
    solution_code=(
        "import math\n\n"
        "def in_flight_needed(rate, latency):\n"
        "    # Little's law: L = lambda * W, rounded up to whole requests\n"
        "    return math.ceil(rate * latency)\n"
    ),
    success="more coroutines than that only wait (and take memory while they wait).",
)
