"""Widgets drawn as plain HTML from a notebook's saved state: for the website and the slide decks.

A widget output (a tqdm progress bar in JupyterLab) is stored as a reference
to a model in the notebook's saved widget state, plus a text form captured
when the widget was first shown (``0%| 0/3``). A static site cannot run the
widget manager, so :func:`read_notebook` (myst-nb's reader for ``.ipynb``,
set in ``docs/conf.py``; and ``tools/slides.py`` for the offline decks) draws
each widget from its saved state instead: boxes
become flex rows or columns, HTML and label widgets their text, progress
widgets a ``<progress>`` element, so a page shows the finished bar the lesson
ended with. A widget it cannot draw keeps its text form.
"""

from __future__ import annotations

import html
from typing import Any

import nbformat

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
MODEL_PREFIX = "IPY_MODEL_"


class UndrawableWidget(LookupError):
    """A widget whose model is missing from the saved state, or of a kind not drawn here."""


def _draw(model_id: str, models: dict[str, Any]) -> str:
    """The HTML for one widget model (and its children), from its saved state."""
    model = models.get(model_id.removeprefix(MODEL_PREFIX))
    if model is None:
        raise UndrawableWidget(f"no saved state for widget {model_id}")
    kind, state = model.get("model_name", ""), model.get("state", {})
    description = state.get("description") or ""
    label = f"<span>{html.escape(description)}</span> " if description else ""
    if kind in ("HBoxModel", "VBoxModel", "BoxModel"):
        direction = "column" if kind == "VBoxModel" else "row"
        children = "".join(_draw(child, models) for child in state.get("children", []))
        style = f"display:flex;flex-direction:{direction};align-items:center;gap:0.5em"
        return f'<div class="course-widget" style="{style}">{children}</div>'
    if kind in ("HTMLModel", "HTMLMathModel"):
        # The widget's value is HTML already (tqdm's text, with its own escapes).
        return f"<div>{label}{state.get('value', '')}</div>"
    if kind in ("LabelModel", "TextModel"):
        return f"<div>{label}{html.escape(str(state.get('value', '')))}</div>"
    if kind in ("FloatProgressModel", "IntProgressModel"):
        low, high, value = state.get("min", 0), state.get("max", 100), state.get("value", 0)
        return f'<div>{label}<progress value="{value - low}" max="{high - low}">{value}/{high}</progress></div>'
    raise UndrawableWidget(f"widget {model_id} is a {kind}, which is not drawn here")


def draw_widgets(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Give each widget output an HTML form drawn from the saved state; drop the state itself."""
    saved = notebook.metadata.pop("widgets", {}).get(WIDGET_STATE, {})
    models: dict[str, Any] = saved.get("state", {})
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW not in data:
                continue
            try:
                drawn = _draw(data[WIDGET_VIEW]["model_id"], models)
            except UndrawableWidget:
                continue  # the text form stays
            data["text/html"] = drawn
            del data[WIDGET_VIEW]
    return notebook


def read_notebook(text: str) -> nbformat.NotebookNode:
    """myst-nb's reader for ``.ipynb``: the notebook as stored, widgets drawn from their saved state."""
    return draw_widgets(nbformat.reads(text, as_version=4))
