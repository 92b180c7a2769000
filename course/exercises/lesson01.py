"""Lesson 01 exercise: the send form's rule for a message body, as a function."""

from __future__ import annotations

from course.checks import Exercise, Incorrect

__all__ = ["RULE_CASES", "message_rule"]

#: (body, does the send form accept it?) -- checked against the real form in
#: notebook 01, so these cases cannot drift from the app.
RULE_CASES: tuple[tuple[str, bool], ...] = (
    ("", False),
    ("   ", False),
    ("\t\n", False),
    ("hi", True),
    ("x" * 140, True),
    ("x" * 141, False),
    ("é" * 140, True),
    ("  hello  ", True),
    (" " * 139 + "x", True),
    ("x" + " " * 140, False),
    ("x" * 500, False),
)


def _describe(body: str) -> str:
    if len(body) > 12:
        return f"a body of {len(body)} characters ({body[:3]!r}...)"
    return repr(body)


def _check_rule(accepts: object) -> None:
    Incorrect.unless(callable(accepts), "Answer with a function: def accepts(body: str) -> bool")
    for body, expected in RULE_CASES:
        got = accepts(body)  # type: ignore[operator]
        Incorrect.unless(
            isinstance(got, bool),
            f"accepts({_describe(body)}) returned {got!r}; return True or False",
        )
        if got != expected:
            verdict = "accepts" if expected else "refuses"
            raise Incorrect(
                f"the form {verdict} {_describe(body)}, but your function returned {got}. "
                "Look again at the two validators of MessageForm.message."
            )


def _reference(body: str) -> bool:
    """DataRequired: something other than whitespace; Length: at most 140 characters as typed."""
    return bool(body.strip()) and len(body) <= 140


message_rule = Exercise(
    "message_rule",
    checker=_check_rule,
    hint_text=(
        "Two validators, two conditions. `DataRequired` refuses a body that is empty "
        "*after* stripping whitespace; `Length(max=140)` counts the characters as they "
        "were typed, spaces included."
    ),
    answer=_reference,
    wrong_answers=(
        lambda body: len(body) <= 140,  # lets an empty message through
        lambda body: bool(body) and len(body) <= 140,  # lets "   " through
        lambda body: 0 < len(body.strip()) <= 140,  # measures the stripped body
        lambda body: bool(body.strip()) and len(body) < 140,  # refuses exactly 140
        lambda body: bool(body.strip()) and len(body.encode()) <= 140,  # counts bytes
    ),
    solution_code=(
        "def accepts(body: str) -> bool:\n"
        "    # DataRequired: not empty once whitespace is stripped\n"
        "    # Length(max=140): at most 140 characters, counted as typed\n"
        "    return bool(body.strip()) and len(body) <= 140\n"
    ),
    success="that is exactly the send form's rule.",
)
