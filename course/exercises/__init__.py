"""One module per lesson (``lesson01.py``, ``lesson02.py``, ...) holding its exercises.

A notebook imports its lesson's module (``from course.exercises import lesson05``)
and calls ``lesson05.memory_per_task.check(answer)``. ``all_exercises()`` finds
every :class:`~course.checks.Exercise` in every lesson module; the test suite
uses it to check each checker against its right and wrong answers.
"""

from __future__ import annotations

import importlib
import pkgutil

from course.checks import Exercise

__all__ = ["all_exercises"]


def all_exercises() -> dict[str, Exercise]:
    """Every exercise of every lesson, keyed ``"lessonNN.name"``."""
    found: dict[str, Exercise] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for attr, value in vars(module).items():
            if isinstance(value, Exercise):
                found[f"{module_info.name}.{attr}"] = value
    return found
