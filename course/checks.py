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

Conventions every lesson keeps (``tests/course/test_exercises.py`` holds them):

- the learner writes real code from a skeleton (a signature and a docstring,
  the body ``...``); ``check()`` runs it -- an async answer on an event loop
  of its own in a worker thread, under ``timeout`` -- so a wrong answer,
  one that raises, or one that never finishes becomes a message, never a
  hung kernel;
- where the truth is on the other end of the wire, the checker runs the
  answer against a live server of its own (``checker_mock_api()``) and
  judges from what the server saw;
- ``wrong_answers`` are :class:`Mistake` s: a typical wrong answer and a
  piece of the message its check must give;
- committed notebooks never show a hint or a solution: the calls are there,
  commented out, for the learner to run; the cells after an exercise go on
  with ``ex.use(answer)``: the learner's answer once it passed, else the
  reference, and ``ex.whose(value)`` says which.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import textwrap
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from IPython.display import Code, Markdown

__all__ = ["NOT_ANSWERED", "Exercise", "Incorrect", "Kind", "Mistake", "Outcome", "checker_mock_api", "source_as"]

Kind = Literal["async", "sync", "choice"]


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


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer, and a piece of the message its check must give (CI checks both)."""

    answer: Any
    expect: str


@dataclass
class Exercise:
    """One exercise.

    ``answer`` is the reference answer (also ``reference``); ``wrong_answers``
    are plausible mistakes (:class:`Mistake`, or bare answers): CI checks that
    the first passes and every one of the others fails. ``lesson`` and
    ``kind`` are filled in from the lesson module and the reference when not
    given: ``"async"`` when the reference is a coroutine function (or a class
    with coroutine methods the learner writes), ``"sync"`` for other code,
    ``"choice"`` for a value.
    """

    name: str
    checker: Callable[[Any], Any]
    hint_text: str
    answer: Any
    wrong_answers: tuple[Any, ...] = ()
    solution_code: str | None = None
    success: str = "well done."
    lesson: int = 0
    kind: Kind | None = None
    timeout: float = 20.0
    _passed: list[Any] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.lesson:
            found = re.search(r"lesson(\d+)", getattr(self.checker, "__module__", "") or "")
            self.lesson = int(found.group(1)) if found else 0
        if self.kind is None:
            self.kind = _kind_of(self.answer)

    @property
    def reference(self) -> Any:
        """The reference answer."""
        return self.answer

    def check(self, answer: Any) -> Outcome:
        """Run the checker on ``answer``; never raises, never hangs longer than ``timeout`` (+2 s)."""
        if answer is NOT_ANSWERED or answer is Ellipsis or _is_stub(answer):
            return Outcome(self.name, False, False, "Fill in your answer, then run this cell again.")
        try:
            _run_bounded(lambda: self.checker(answer), self.timeout)
        except Incorrect as exc:
            return Outcome(self.name, False, True, str(exc))
        except Exception as exc:  # the learner's code raised: say so, do not crash
            return Outcome(self.name, False, True, f"your answer raised {type(exc).__name__}: {exc}")
        self._passed[:] = [answer]
        return Outcome(self.name, True, True, self.success)

    def use(self, answer: Any) -> Any:
        """``answer`` if it is the last one that passed ``check``, else the reference answer."""
        return answer if self._passed and self._passed[0] is answer else self.answer

    def whose(self, value: Any) -> str:
        """Say whose answer ``value`` is, for the cells that go on with it."""
        if value is self.answer:
            return f"the reference answer to {self.name} (yours has not passed yet)"
        return f"your answer to {self.name}"

    def hint(self) -> Markdown:
        return Markdown(f"**Hint ({self.name}).** {self.hint_text}")

    def solution(self) -> Code:
        return Code(self.solution_text(), language="python")

    def solution_text(self) -> str:
        """The reference answer as source text (what ``solution()`` shows)."""
        if self.solution_code is not None:
            return self.solution_code
        return inspect.getsource(self.answer) if callable(self.answer) else repr(self.answer)

    def __repr__(self) -> str:
        return f"<Exercise lesson{self.lesson:02d}.{self.name} ({self.kind}): check(answer), hint(), solution()>"


def source_as(reference: Any, name: str) -> str:
    """The reference's source as the learner would write it: defined under ``name``."""
    source = inspect.getsource(reference)
    return re.sub(rf"^(\s*(?:async def|def|class) ){re.escape(reference.__name__)}\b", rf"\g<1>{name}", source, count=1)


def _kind_of(answer: Any) -> Kind:
    if inspect.iscoroutinefunction(answer):
        return "async"
    if inspect.isclass(answer):
        own = [v for k, v in vars(answer).items() if not k.startswith("__")]
        return "async" if any(inspect.iscoroutinefunction(v) for v in own) else "sync"
    return "sync" if callable(answer) else "choice"


def _run_bounded(call: Callable[[], Any], timeout: float) -> Any:
    """Run ``call()`` -- and, if it returns an awaitable, await it on a fresh event loop --
    in a worker thread; an answer that does not finish in ``timeout`` s is ``Incorrect``.

    A thread of its own keeps the notebook's running loop out of it (``asyncio.run``
    cannot run inside a loop) and lets ``check`` return even from an answer that
    swallows its cancellation or blocks the thread.
    """
    box: dict[str, Any] = {}
    expired = threading.Event()

    async def bounded(awaitable: Any) -> Any:
        try:
            async with asyncio.timeout(timeout) as deadline:
                return await awaitable
        except TimeoutError:
            if deadline.expired():
                expired.set()
            raise

    def target() -> None:
        try:
            value = call()
            if inspect.isawaitable(value):
                value = asyncio.run(bounded(value))
            box["value"] = value
        except BaseException as exc:  # handed to the calling thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="exercise-check", daemon=True)
    worker.start()
    worker.join(timeout + 2.0)
    if worker.is_alive() or expired.is_set():
        raise Incorrect(
            f"the check did not finish within {timeout:g} s: your answer waits forever somewhere "
            "(a task never awaited or cancelled, a lock or semaphore never released, a worker "
            "that never gets its end marker, or a CancelledError swallowed)."
        )
    if "error" in box:
        raise box["error"]
    return box.get("value")


def checker_mock_api(scenario: dict[str, Any] | None = None, *, items: int = 1000) -> str:
    """The base URL of the checkers' own mock API (one per process, on a free port),
    with ``scenario`` installed and its counters cleared: a checker reads ``/_stats``
    afterwards to judge what the learner's code made the server see."""
    from course.mockapi_control import MockAPIControl
    from course.servers import start_mock_api

    with _CHECKER_SERVERS_LOCK:
        handle = _CHECKER_SERVERS.get(items)
        if handle is None or not handle.running:
            handle = start_mock_api(port=None, items=items)
            _CHECKER_SERVERS[items] = handle
    MockAPIControl(handle.url).use(scenario or {})
    return handle.url


_CHECKER_SERVERS: dict[int, Any] = {}  # items -> ServerHandle; stopped at exit by course.servers
_CHECKER_SERVERS_LOCK = threading.Lock()


def _is_stub(answer: Any) -> bool:
    """A skeleton is not an answer yet: a function whose body is only ``...``, ``pass`` or
    ``raise NotImplementedError`` (a docstring aside), or a class whose own methods all are."""
    if inspect.isclass(answer):
        methods = [value for value in vars(answer).values() if inspect.isfunction(value)]
        return bool(methods) and all(_is_stub(method) for method in methods)
    if not callable(answer):
        return False
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(answer)))
    except (OSError, TypeError, SyntaxError):
        return False
    definition = tree.body[0] if tree.body else None
    if not isinstance(definition, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False  # a lambda, or source we cannot read as one definition
    body = definition.body
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        body = body[1:]  # the docstring
    if len(body) != 1:
        return False
    (statement,) = body
    if isinstance(statement, ast.Pass):
        return True
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
        return statement.value.value is Ellipsis
    if isinstance(statement, ast.Raise) and statement.exc is not None:
        raised = statement.exc.func if isinstance(statement.exc, ast.Call) else statement.exc
        return isinstance(raised, ast.Name) and raised.id == "NotImplementedError"
    return False
