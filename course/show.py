"""Show the package's own code in a notebook instead of pasting copies that drift."""

from __future__ import annotations

import inspect
import textwrap
from typing import Any

from IPython.display import Code

__all__ = ["show_source"]


def show_source(obj: Any, *, lines: tuple[int, int] | None = None) -> Code:
    """Highlighted source of a function, class or module, as it is in ``course/``.

    ``lines=(first, last)`` keeps only that 1-based, inclusive range of the
    object's own lines, to focus a slide on the part being discussed.
    """
    try:
        source = inspect.getsource(obj)
    except (TypeError, OSError) as exc:
        raise TypeError(f"show_source needs a function, class or module, not {obj!r}") from exc
    source = textwrap.dedent(source)
    if lines is not None:
        first, last = lines
        source = "\n".join(source.splitlines()[first - 1 : last])
    return Code(source.rstrip() + "\n", language="python")
