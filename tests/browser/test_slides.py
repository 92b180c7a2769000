"""The offline slide decks (``make slides``) in Debian's Chromium at 1280x720.

Every deck is built from the committed notebooks into a temporary folder the
way ``make slides`` builds it (tools/slides.py build), then loaded from disk
with every request that is not ``file://`` refused: each state of each deck
(every slide, sub-slide and fragment) must fit the 1280x720 canvas, and no
deck may ask the network for anything or log a console error. One browser
measures all the decks (tools/slides.py measure).

The last two tests feed the same measuring code a deck that is known to be
broken (a slide three screens tall; an image from the network), so a checker
that passes everything would fail them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

pytestmark = pytest.mark.browser


def _slides_tool() -> ModuleType:
    if "slides" in sys.modules:
        return sys.modules["slides"]
    spec = importlib.util.spec_from_file_location("slides", ROOT / "tools" / "slides.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["slides"] = module
    spec.loader.exec_module(module)
    return module


slides = _slides_tool()


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("slides")
    decks = slides.build(out, NOTEBOOKS)
    return {report.deck: report for report in slides.measure(decks)}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_slide_fits_1280x720(reports, notebook: Path) -> None:
    report = reports[slides.deck_name(notebook)]
    # one state per slide at least: a deck that did not step would pass vacuously
    n_slides = sum(
        1 for c in nbformat.read(notebook, as_version=4).cells
        if c.metadata.get("slideshow", {}).get("slide_type") in ("slide", "subslide")
    )
    assert len(report.states) >= n_slides, f"{notebook.name}: stepped through {len(report.states)} of {n_slides} slides"
    too_big = [state.describe() for state in report.states if not state.fits]
    assert not too_big, (
        f"{notebook.name}: {len(too_big)} slide states do not fit 1280x720 "
        "(run `python tools/slides.py layout` on it, or add an override):\n" + "\n".join(too_big)
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_deck_works_offline(reports, notebook: Path) -> None:
    report = reports[slides.deck_name(notebook)]
    assert not report.external_requests, f"{notebook.name} asked the network for {report.external_requests}"
    assert not report.console_errors, f"{notebook.name} logged console errors: {report.console_errors}"


def _deck_of(tmp_path: Path, cells: list[nbformat.NotebookNode]) -> Path:
    nb = nbformat.v4.new_notebook(cells=cells)
    path = tmp_path / "99_broken.ipynb"
    nbformat.write(nb, path)
    (deck,) = slides.build(tmp_path / "out", [path])
    return deck


def test_the_measure_finds_a_slide_that_is_too_tall(tmp_path: Path) -> None:
    title = nbformat.v4.new_markdown_cell("# Title", metadata={"slideshow": {"slide_type": "slide"}})
    tall = nbformat.v4.new_markdown_cell(
        "\n\n".join(f"Paragraph {n}." for n in range(60)), metadata={"slideshow": {"slide_type": "-"}}
    )
    (report,) = slides.measure([_deck_of(tmp_path, [title, tall])])
    assert [s.fits for s in report.states] == [False]
    assert report.states[0].height > 3 * slides.HEIGHT


def test_the_measure_records_a_request_to_the_network(tmp_path: Path) -> None:
    cell = nbformat.v4.new_markdown_cell(
        '# Title\n\n<img src="https://example.invalid/picture.png" alt="remote">',
        metadata={"slideshow": {"slide_type": "slide"}},
    )
    (report,) = slides.measure([_deck_of(tmp_path, [cell])])
    assert report.external_requests == ["https://example.invalid/picture.png"]
