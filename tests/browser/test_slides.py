"""The offline slide decks (``make slides``) in Debian's Chromium at 1280x720.

Every deck is built from the committed notebooks into a temporary folder the
way ``make slides`` builds it (tools/slides.py build), then loaded from disk
with every request that is not ``file://`` refused: each state of each deck
(every slide, sub-slide and fragment) must fit the 1280x720 canvas, and no
deck may ask the network for anything or log a console error. One browser
measures all the decks (tools/slides.py measure).

Then one lesson is presented the other way, live in jupyterlab-rise (a
Jupyter server on a copy of notebooks/, with notebooks/rise.css), stepping
through its slides with the keyboard: they must fit 1280x720 there too.

The last two tests feed the same measuring code a deck that is known to be
broken (a slide three screens tall; an image from the network), so a checker
that passes everything would fail them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

import slides

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

pytestmark = pytest.mark.browser




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


# --------------------------------------------------------------------------
# RISE: the same lesson presented live from JupyterLab (jupyterlab-rise)
# --------------------------------------------------------------------------

RISE_LESSON = "03_push_or_poll.ipynb"
RISE_STATE_JS = """() => {
  const all = Array.from(document.querySelectorAll('.reveal .slides section'));
  const present = all.filter(s => s.classList.contains('present') && !s.querySelector('section.present'));
  const s = present[present.length - 1];
  if (!s) return null;
  const title = (s.querySelector('h1, h2, h3, p, pre') || {textContent: ''}).textContent.trim().slice(0, 60);
  return {key: all.indexOf(s) + '.' + s.querySelectorAll('.fragment.visible').length,
          height: s.scrollHeight, width: s.scrollWidth, title: title};
}"""


@pytest.fixture(scope="module")
def rise_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Jupyter server (with jupyterlab-rise) on a copy of notebooks/; the URL of RISE_LESSON's slideshow."""
    import shutil
    import subprocess
    import time
    import urllib.request
    import uuid

    from course.servers import free_port

    root = tmp_path_factory.mktemp("rise")
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    port, token = free_port(), uuid.uuid4().hex
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"jupyter server exited: {(root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter server did not answer: {(root / 'server.log').read_text()[-2000:]}")
                time.sleep(0.2)
        yield f"{base}/rise/notebooks/{RISE_LESSON}?token={token}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_rise_shows_every_slide_of_a_lesson_within_1280x720(rise_url: str) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    from course.browser import CHROMIUM, CHROMIUM_ARGS

    notebook = ROOT / "notebooks" / RISE_LESSON
    n_slides = sum(
        1 for c in nbformat.read(notebook, as_version=4).cells
        if c.metadata.get("slideshow", {}).get("slide_type") in ("slide", "subslide")
    )
    states: list[dict[str, object]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": slides.WIDTH, "height": slides.HEIGHT})
            page.goto(rise_url)
            page.wait_for_selector(".reveal .slides section.present", timeout=90_000)
            page.wait_for_function(f"({RISE_STATE_JS})() !== null")
            page.keyboard.press("Escape")  # command mode: the keys drive the show
            for _ in range(500):
                state = page.evaluate(RISE_STATE_JS)
                states.append(state)
                page.keyboard.press("Space")
                try:
                    page.wait_for_function(
                        f"(key) => {{ const s = ({RISE_STATE_JS})(); return s !== null && s.key !== key; }}",
                        arg=state["key"], timeout=5_000,
                    )
                except PlaywrightTimeout:
                    break  # the last slide: space changes nothing
        finally:
            browser.close()
    assert len(states) >= n_slides, f"RISE stepped through {len(states)} of {n_slides} slides of {RISE_LESSON}"
    too_big = [s for s in states if int(s["height"]) > slides.HEIGHT or int(s["width"]) > slides.WIDTH]
    assert not too_big, f"{RISE_LESSON} in RISE: slides that do not fit 1280x720: {too_big}"
