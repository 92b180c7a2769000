"""The exercises keep their promises: every checker passes its reference and fails
typical mistakes and a do-nothing answer, none hangs, and no committed notebook
gives an answer away."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from course.checks import NOT_ANSWERED, Exercise, Incorrect, Mistake
from course.exercises import all_exercises

ROOT = Path(__file__).resolve().parents[2]
EXERCISES = {f"lesson{e.lesson:02d}.{e.name}": e for e in all_exercises()}


def test_every_exercise_has_a_unique_key_and_a_lesson():
    assert len(EXERCISES) == len(all_exercises()), "two exercises share a lesson and a name"
    assert all(1 <= e.lesson <= 11 for e in EXERCISES.values())


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_reference_answer_passes(key):
    outcome = EXERCISES[key].check(EXERCISES[key].reference)
    assert outcome.passed, f"{key}: the reference answer fails: {outcome}"


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_every_typical_mistake_fails_with_its_message(key):
    exercise = EXERCISES[key]
    assert len(exercise.wrong_answers) >= 2, f"{key}: give at least two typical wrong answers"
    for wrong in exercise.wrong_answers:
        answer, expect = (wrong.answer, wrong.expect) if isinstance(wrong, Mistake) else (wrong, "")
        outcome = exercise.check(answer)
        assert outcome.attempted and not outcome.passed, f"{key}: accepted wrong answer {answer!r}"
        assert outcome.message.strip()
        assert expect in outcome.message, f"{key}: {answer!r} failed, but with {outcome.message!r}"


def _do_nothing(exercise: Exercise) -> Any:
    async def nothing_async(*args: Any, **kwargs: Any) -> None:
        return None

    def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    if exercise.kind == "choice":
        return None
    method = nothing_async if exercise.kind == "async" else nothing
    if isinstance(exercise.reference, type):

        class DoesNothing:
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                pass

            def __getattr__(self, name: str) -> Any:
                return method

        return DoesNothing
    return method


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_a_do_nothing_answer_fails_within_30_seconds(key):
    exercise = EXERCISES[key]
    started = time.monotonic()
    outcome = exercise.check(_do_nothing(exercise))
    assert outcome.attempted and not outcome.passed, f"{key}: a do-nothing answer passed"
    assert time.monotonic() - started < 30 + 2, f"{key}: the check took too long to fail"


# -- how check() behaves, on small exercises made here -----------------------------------------


def _double_checker(f):
    Incorrect.unless(f(2) == 4 and f(5) == 10, "double(x) should return 2 * x")


DOUBLE = Exercise("double", _double_checker, "Multiply by two.", answer=lambda x: 2 * x)


def test_unanswered_placeholders_are_not_attempts():
    def stub(x):
        ...

    for placeholder in (NOT_ANSWERED, ..., stub):
        outcome = DOUBLE.check(placeholder)
        assert not outcome.attempted and not outcome.passed


def test_an_answer_that_raises_is_reported_not_raised():
    outcome = DOUBLE.check(lambda x: 1 / 0)
    assert outcome.attempted and not outcome.passed
    assert "ZeroDivisionError" in outcome.message


def test_outcome_reads_as_one_line():
    assert repr(DOUBLE.check(lambda x: x + x)) == "[double] Correct: well done."
    assert repr(DOUBLE.check(lambda x: x + 3)).startswith("[double] Not yet: double(x)")


async def _run_twice(f):
    first, second = await f(1), await f(2)
    Incorrect.unless((first, second) == (2, 4), f"f(1), f(2) gave {first}, {second}; expected 2, 4")


async def _twice(x):
    return 2 * x


TWICE = Exercise("twice", _run_twice, "Await twice.", answer=_twice, timeout=1.0)


def test_an_async_answer_is_checked_on_its_own_loop_even_inside_a_running_one():
    async def inside_a_notebook_cell() -> bool:
        return TWICE.check(_twice).passed

    import asyncio

    assert asyncio.run(inside_a_notebook_cell())
    assert TWICE.kind == "async" and DOUBLE.kind == "sync"


def test_an_answer_that_never_finishes_fails_after_the_timeout():
    async def hangs(x):
        import asyncio

        await asyncio.Event().wait()

    started = time.monotonic()
    outcome = TWICE.check(hangs)
    assert outcome.attempted and not outcome.passed and "did not finish within 1 s" in outcome.message
    assert time.monotonic() - started < 5


def test_an_answer_that_swallows_its_cancellation_still_cannot_hang_the_check():
    async def stubborn(x):
        import asyncio

        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue  # the mistake: swallowing the cancellation

    started = time.monotonic()
    outcome = TWICE.check(stubborn)
    assert not outcome.passed and "did not finish" in outcome.message
    assert time.monotonic() - started < 6


def test_use_goes_on_with_the_learners_answer_only_once_it_passed():
    async def mine(x):
        return x + x

    assert TWICE.use(mine) is TWICE.reference
    assert "reference" in TWICE.whose(TWICE.use(mine))
    assert TWICE.check(mine).passed
    assert TWICE.use(mine) is mine and TWICE.whose(mine) == "your answer to twice"


# -- the committed notebooks give nothing away -------------------------------------------------


def _outputs() -> dict[str, str]:
    """Each notebook's outputs as plain text (stream, text/plain, text/markdown)."""
    texts = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        parts = []
        for cell in json.loads(path.read_text())["cells"]:
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                for text in (output.get("text"), data.get("text/plain"), data.get("text/markdown")):
                    if text:
                        parts.append("".join(text) if isinstance(text, list) else text)
        texts[path.name] = "\n".join(parts)
    return texts


def _needles(exercise: Exercise) -> list[str]:
    """Texts that would give the answer away: the hint, every line of the reference's
    source of 45 characters or more (signatures aside), and every two consecutive
    lines that say something together (40 characters or more)."""
    needles = [" ".join(exercise.hint_text.split())]
    if exercise.kind != "choice" or exercise.solution_code:
        lines = [line.strip() for line in exercise.solution_text().splitlines()]
        lines = [line for line in lines if line and not line.startswith(("#", '"""', "'''"))]
        signature = ("def ", "async def ", "class ", "@")
        needles += [line for line in lines if len(line) >= 45 and not line.startswith(signature)]
        needles += [f"{a}\n{b}" for a, b in itertools.pairwise(lines) if len(a) + len(b) >= 40]
    return needles


def test_no_committed_output_shows_a_hint_or_a_reference_answer():
    outputs = _outputs()
    flat = {name: " ".join(text.split()) for name, text in outputs.items()}
    stripped = {name: "\n".join(line.strip() for line in text.splitlines()) for name, text in outputs.items()}
    found = []
    for key, exercise in EXERCISES.items():
        for needle in _needles(exercise):
            haystacks = flat if "\n" not in needle else stripped
            found += [f"{name}: {key}: {needle[:60]!r}" for name, text in haystacks.items() if needle in text]
    assert not found, "committed outputs give answers away:\n" + "\n".join(found)


def test_the_course_has_enough_exercises_and_most_ask_for_async_code():
    kinds = Counter(e.kind for e in EXERCISES.values())
    per_lesson = Counter(e.lesson for e in EXERCISES.values())
    assert len(EXERCISES) >= 24, f"{len(EXERCISES)} exercises"
    assert kinds["async"] >= 14, f"{kinds['async']} ask for async code"
    thin = [lesson for lesson in range(1, 10) if per_lesson[lesson] < 2]
    assert not thin, f"lessons with fewer than two exercises: {thin}"


def test_skeletons_with_long_docstrings_and_skeleton_classes_are_not_attempts():
    async def fetch(session, url):
        """Fetch one URL.

        Several lines of explanation, as the notebooks' skeletons have.
        """
        ...

    def raises(x):
        """One line."""
        raise NotImplementedError

    class Limiter:
        """A limiter to write."""

        def __init__(self, rate):
            ...

        async def acquire(self):
            """Wait for a slot."""
            ...

    class Started(Limiter):
        def __init__(self, rate):
            self.rate = rate

    for skeleton in (fetch, raises, Limiter):
        assert not DOUBLE.check(skeleton).attempted, skeleton
    assert DOUBLE.check(Started).attempted  # a class with one method written is an answer
