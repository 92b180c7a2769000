"""Every exercise's checker accepts its reference answer and rejects known-wrong ones."""

from __future__ import annotations

import pytest

from course.checks import NOT_ANSWERED, Exercise, Incorrect
from course.exercises import all_exercises

EXERCISES = all_exercises()


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_reference_answer_passes(key):
    outcome = EXERCISES[key].check(EXERCISES[key].answer)
    assert outcome.passed, f"{key}: the reference answer fails: {outcome}"


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_every_wrong_answer_fails_with_a_message(key):
    exercise = EXERCISES[key]
    assert exercise.wrong_answers, f"{key}: give at least one wrong answer to test the checker"
    for wrong in exercise.wrong_answers:
        outcome = exercise.check(wrong)
        assert outcome.attempted and not outcome.passed, f"{key}: accepted wrong answer {wrong!r}"
        assert outcome.message.strip()


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
