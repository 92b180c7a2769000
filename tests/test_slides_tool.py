"""tools/slides.py without a browser: the layout rules, the widget freezing, the deck's HTML."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat
import notebook_widgets

import slides

ROOT = Path(__file__).resolve().parent.parent


LESSON = Path("notebooks/98_example.ipynb")


def _types(nb) -> list[str]:
    return [c.metadata["slideshow"]["slide_type"] for c in nb.cells]


def _lesson() -> nbformat.NotebookNode:
    long_text = "\n\n".join(f"Paragraph {n}: " + "words " * 30 for n in range(30))
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 98 — Example\n\nYou will learn things.\n\n## Too soon a heading"),
        nbformat.v4.new_markdown_cell("**Speaker notes**\n\n- say hello"),
        nbformat.v4.new_code_cell("import os\nprint('ready')"),
        nbformat.v4.new_markdown_cell("Some text after the setup."),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell(f"{long_text}\n\nThe steps are:\n\n- one\n- two"),
        nbformat.v4.new_markdown_cell("**Exercise 98.1 — try it.** Write a function."),
    ])


def test_layout_follows_the_rules():
    nb = _lesson()
    slides.layout(nb, LESSON)
    kinds = _types(nb)
    # the heading in the title cell got a cell (and a slide) of its own
    assert nb.cells[1].source == "## Too soon a heading" and kinds[:2] == ["slide", "slide"]
    assert kinds[2] == "notes"
    # the setup cell follows a heading slide, and the cell after it opens a sub-slide
    assert kinds[3] == "-" and kinds[4] == "subslide"
    assert kinds[-1] == "subslide"  # an exercise
    assert nb.metadata["rise"] == slides.RISE_SETTINGS


def test_the_setup_cell_is_not_on_the_title_slide():
    nb = _lesson()
    del nb.cells[0:2]
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# 98 — Example\n\nYou will learn things."))
    slides.layout(nb, LESSON)
    assert _types(nb)[:2] == ["slide", "subslide"]


def test_a_tall_markdown_cell_is_split_at_paragraphs_into_slides_that_fit():
    nb = _lesson()
    slides.layout(nb, LESSON)
    pieces = [c for c in nb.cells if c.cell_type == "markdown" and ("Paragraph" in c.source or "- one" in c.source)]
    assert len(pieces) > 1
    assert all(slides.markdown_height(p.source) <= slides.SLIDE_BUDGET_PX for p in pieces)
    assert all(p.metadata["slideshow"]["slide_type"] == "subslide" for p in pieces[1:])
    # the lead-in stays with its list, and no text is lost
    assert "The steps are:\n\n- one\n- two" in pieces[-1].source
    joined = "\n\n".join(p.source for p in pieces)
    assert re.findall(r"Paragraph \d+", joined) == [f"Paragraph {n}" for n in range(30)]


def test_layout_is_idempotent():
    nb = _lesson()
    slides.layout(nb, LESSON)
    again = copy.deepcopy(nb)
    slides.layout(again, LESSON)
    assert again == nb


def test_an_override_wins():
    nb = _lesson()
    slides.OVERRIDES["98_"] = (slides.Override("Some text after", "skip"),)
    try:
        slides.layout(nb, LESSON)
    finally:
        del slides.OVERRIDES["98_"]
    assert [c.metadata["slideshow"]["slide_type"] for c in nb.cells if c.source.startswith("Some text")] == ["skip"]


def test_a_progress_bar_widget_becomes_static_html():
    state = {
        "box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_left", "IPY_MODEL_bar"]}},
        "left": {"model_name": "HTMLModel", "state": {"value": "runs: 100%"}},
        "bar": {"model_name": "FloatProgressModel", "state": {"value": 3.0, "max": 3.0}},
    }
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("bar()", outputs=[
        nbformat.v4.new_output("display_data", data={
            notebook_widgets.WIDGET_VIEW: {"model_id": "box", "version_major": 2, "version_minor": 0},
            "text/plain": "  0%|  | 0/3",
        }),
    ])])
    nb.metadata["widgets"] = {notebook_widgets.WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}
    slides.freeze_widgets(nb)
    data = nb.cells[0].outputs[0].data
    assert notebook_widgets.WIDGET_VIEW not in data and "widgets" not in nb.metadata
    assert "runs: 100%" in data["text/html"] and '<progress value="3.0" max="3.0">' in data["text/html"]


def test_a_deck_loads_only_the_vendored_reveal_js():
    deck = slides.export_deck(ROOT / "notebooks" / "00_start_here.ipynb")
    loaded = re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', deck)
    assert loaded and all(url.startswith("reveal.js/") for url in loaded), loaded
    assert "require.js" not in deck and "mathjax" not in deck.lower() and "unpkg" not in deck


def test_a_file_that_is_not_a_notebook_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("not json")
    not_a_notebook = tmp_path / "list.ipynb"
    not_a_notebook.write_text('{"cells": 3}')
    for path in (bad, not_a_notebook, tmp_path / "missing.ipynb"):
        for command in (["layout", str(path)], ["build", str(path), "--out", str(tmp_path / "out")]):
            assert slides.main(command) == 2
            error = capsys.readouterr().err
            assert error.startswith("error: ") and error.count("\n") == 1 and str(path) in error
    assert bad.read_text() == "not json"
