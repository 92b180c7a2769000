"""Every lesson notebook has the course's shape (nbval checks the outputs separately)."""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest

import slides

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SLIDE_TYPES = {"slide", "subslide", "fragment", "-", "skip", "notes"}


IGNORE_MARKERS = ("NBVAL_IGNORE_OUTPUT", "NBVAL_SKIP", "NBVAL_RAISES_EXCEPTION")


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def notebook(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_committed_executed_top_to_bottom_without_errors(notebook):
    path, nb = notebook
    counts = [c.execution_count for c in _code_cells(nb)]
    assert None not in counts, f"{path.name}: some code cells were never executed"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: not run top to bottom on a fresh kernel"
    errors = [o for c in _code_cells(nb) for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: committed with error outputs"


def test_every_cell_has_slide_metadata(notebook):
    path, nb = notebook
    missing = [i for i, c in enumerate(nb.cells) if "slide_type" not in c.metadata.get("slideshow", {})]
    assert not missing, f"{path.name}: cells {missing} have no slideshow.slide_type"


def test_at_most_15_percent_of_code_cells_ignore_output(notebook):
    path, nb = notebook
    code = _code_cells(nb)
    ignored = [c for c in code if any(m in c.source for m in IGNORE_MARKERS)]
    assert len(ignored) <= 0.15 * len(code), f"{path.name}: {len(ignored)}/{len(code)} cells ignored"


def test_opens_with_objectives_and_time_and_closes_with_a_link(notebook):
    path, nb = notebook
    first, last = nb.cells[0], nb.cells[-1]
    assert first.cell_type == "markdown" and first.source.lstrip().startswith("# ")
    # the opening: the title cell and the markdown after it, up to the first code cell
    # (tools/slides.py splits a title cell too tall for one slide at a paragraph; the Colab
    # install cell, which does nothing elsewhere, may come between)
    opening = []
    for cell in nb.cells:
        if cell.get("id") == "colab-setup":
            continue
        if cell.cell_type != "markdown":
            break
        if cell.metadata.get("slideshow", {}).get("slide_type") != "notes":
            opening.append(cell.source)
    text = "\n\n".join(opening).lower()
    assert "objective" in text or "you will" in text, f"{path.name}: first cell states no objectives"
    assert "minutes" in text, f"{path.name}: first cell states no time needed"
    assert last.cell_type == "markdown" and ".ipynb" in last.source, f"{path.name}: last cell links nowhere"
    for target in _links(last.source):
        assert (path.parent / target).exists(), f"{path.name}: links to missing {target}"


def _links(markdown: str) -> list[str]:
    import re

    return [m for m in re.findall(r"\(([^)\s]+\.ipynb)\)", markdown)]


def test_every_heading_opens_its_own_cell(notebook):
    # A heading in the middle of a cell cannot start a slide (tools/nbtool.py splits them).
    path, nb = notebook
    late = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        fenced = False
        for number, line in enumerate(cell.source.splitlines()):
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            elif number > 0 and not fenced and line.startswith(("# ", "## ", "### ")):
                late.append((index, line))
    assert not late, f"{path.name}: headings in the middle of a cell: {late}"


def _slide_type(cell) -> str:
    return cell.metadata.get("slideshow", {}).get("slide_type", "")


def test_slide_types_are_ones_reveal_knows(notebook):
    path, nb = notebook
    unknown = [(i, _slide_type(c)) for i, c in enumerate(nb.cells) if _slide_type(c) not in SLIDE_TYPES]
    assert not unknown, f"{path.name}: unknown slide types {unknown}"


def test_slide_layout_is_current(notebook):
    # RISE shows the committed metadata: it must be what tools/slides.py lays out
    # (the browser test checks that this layout fits 1280x720).
    path, nb = notebook
    laid_out = copy.deepcopy(nb)
    slides.layout(laid_out, path)
    before = [(c.cell_type, c.source, _slide_type(c)) for c in nb.cells]
    after = [(c.cell_type, c.source, _slide_type(c)) for c in laid_out.cells]
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b]
    assert before == after, (
        f"{path.name}: run `python tools/slides.py layout notebooks/{path.name}` "
        f"(cells {changed[:10]} differ; {len(before)} -> {len(after)} cells)"
    )


def test_first_slide_is_the_title_not_the_setup(notebook):
    path, nb = notebook
    shown = [c for c in nb.cells if _slide_type(c) not in ("notes", "skip")]
    first_code = next(i for i, c in enumerate(shown) if c.cell_type == "code")
    assert any(_slide_type(c) in ("slide", "subslide") for c in shown[1 : first_code + 1]), (
        f"{path.name}: the first code cell (the setup) is on the title slide"
    )
