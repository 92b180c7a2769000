"""Exercises a learner can check: ``ex.check(answer)``, ``ex.hint()``, ``ex.solution()``.

An exercise is a checker function plus a hint and a reference solution.
The checker raises :class:`Incorrect` with a message that tells the learner
what to look at, or returns normally when the answer is right. CI calls
every exercise's checker with its reference answer (must pass) and with
known-wrong answers (must fail), so a checker cannot rot into "always right".

    >>> ex = Exercise(
    ...     "double",
    ...     checker=lambda f: Incorrect.unless(f(2) == 4, "f(2) should be 4"),
    ...     hint_text="Multiply by two.",
    ...     answer=lambda x: 2 * x,
    ... )
    >>> ex.check(lambda x: x + 3).passed
    False
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from IPython.display import Code, Markdown

__all__ = ["NOT_ANSWERED", "Exercise", "Incorrect", "Outcome"]


class Incorrect(AssertionError):
    """Raised by a checker: the message says what is wrong and where to look."""

    @classmethod
    def unless(cls, condition: bool, message: str) -> None:
        if not condition:
            raise cls(message)


class _NotAnswered:
    def __repr__(self) -> str:
        return "NOT_ANSWERED"


#: Placeholder for an answer the learner has not written yet.
NOT_ANSWERED: Any = _NotAnswered()


@dataclass(frozen=True)
class Outcome:
    """What ``check()`` found. Shown as one line in the notebook."""

    exercise: str
    passed: bool
    attempted: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        if not self.attempted:
            return f"[{self.exercise}] Not answered yet. {self.message}"
        mark = "Correct" if self.passed else "Not yet"
        return f"[{self.exercise}] {mark}: {self.message}"

    def _repr_markdown_(self) -> str:
        colour = "green" if self.passed else ("gray" if not self.attempted else "#b35900")
        return f'<span style="color:{colour}">{self!r}</span>'


@dataclass
class Exercise:
    """One exercise.

    ``answer`` is the reference answer and ``wrong_answers`` are plausible
    mistakes; CI checks that the first passes and every one of the others fails.
    """

    name: str
    checker: Callable[[Any], Any]
    hint_text: str
    answer: Any
    wrong_answers: tuple[Any, ...] = ()
    solution_code: str | None = None
    success: str = "well done."

    def check(self, answer: Any) -> Outcome:
        if answer is NOT_ANSWERED or answer is Ellipsis or _is_stub(answer):
            return Outcome(self.name, False, False, "Fill in your answer, then run this cell again.")
        try:
            self.checker(answer)
        except Incorrect as exc:
            return Outcome(self.name, False, True, str(exc))
        except Exception as exc:  # the learner's code raised: say so, do not crash
            return Outcome(
                self.name, False, True, f"your answer raised {type(exc).__name__}: {exc}"
            )
        return Outcome(self.name, True, True, self.success)

    def hint(self) -> Markdown:
        return Markdown(f"**Hint ({self.name}).** {self.hint_text}")

    def solution(self) -> Code:
        text = self.solution_code
        if text is None:
            text = inspect.getsource(self.answer) if callable(self.answer) else repr(self.answer)
        return Code(text, language="python")

    def __repr__(self) -> str:
        return f"<Exercise {self.name}: check(answer), hint(), solution()>"


def _is_stub(answer: Any) -> bool:
    """A function whose body is only ``...`` or ``pass`` is not an answer yet."""
    if not callable(answer):
        return False
    try:
        lines = inspect.getsource(answer).strip().splitlines()
    except (OSError, TypeError):
        return False
    body = [
        line.strip()
        for line in lines[1:]
        if line.strip() and not line.strip().startswith(("#", '"""', "'''"))
    ]
    return bool(lines) and lines[0].lstrip().startswith(("def ", "async def ")) and body in (
        ["..."],
        ["pass"],
        ["raise NotImplementedError"],
    )
