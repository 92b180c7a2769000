"""One module per lesson (``lesson01.py``, ``lesson02.py``, ...) holding its exercises.

A notebook imports its lesson's module (``from course.exercises import lesson05``)
and calls ``lesson05.bounded_gather.check(answer)``. ``all_exercises()`` is the
registry other tools use: every :class:`~course.checks.Exercise` of every
lesson, each with ``lesson``, ``name``, ``kind``, ``reference`` and
``check(answer)``; the test suite runs every checker with its reference
(must pass), its typical mistakes and a do-nothing answer (must fail).
"""

from __future__ import annotations

import importlib
import pkgutil

from course.checks import Exercise

__all__ = ["all_exercises"]


def all_exercises() -> list[Exercise]:
    """Every exercise of every lesson, in lesson order, then in the order each module defines them."""
    found: list[Exercise] = []
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if isinstance(value, Exercise) and all(value is not known for known in found):
                found.append(value)
    return found
