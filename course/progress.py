"""A run's progress bar: one tick per finished item, shown only when asked for."""

from __future__ import annotations

from typing import Any

__all__ = ["progress_bar"]


def progress_bar(total: int | None, name: str) -> Any:
    """A tqdm bar named ``name`` counting items up to ``total`` (None: unknown); call ``update(1)`` and ``close()``.

    ``tqdm.auto`` shows a widget in Jupyter and a line on stderr elsewhere.
    """
    from tqdm.auto import tqdm  # imported on first use: most runs show no bar

    return tqdm(total=total, desc=name, unit="item", mininterval=0.5)
