"""The lessons as slides: slide metadata that fits a 1280x720 screen, and offline reveal.js decks.

    python tools/slides.py layout notebooks/03_push_or_poll.ipynb [more.ipynb ...] [--check]
    python tools/slides.py layout --all [--check]
    python tools/slides.py build [--out build/slides] [notebooks ...]      (make slides)
    python tools/slides.py measure [--out build/slides]                   (needs Chromium)
    python tools/slides.py vendor                                         (needs npm)

``layout`` gives every cell of a lesson its ``slideshow.slide_type`` from the
rules below plus the small override table ``OVERRIDES``; it gives every
heading a markdown cell of its own and splits a markdown cell too tall for
one slide at a paragraph break (a lead-in ending in ``:`` stays with what it
introduces). It computes everything from the cells' content (never from the
slide types already there), so running it again changes nothing; ``--check``
only lists the notebooks it would change (exit 1). The rules:

- a ``# `` or ``## `` heading opens a slide, ``### `` or ``**Exercise`` a
  sub-slide: the title cell is the lesson's first slide;
- the setup cell (the first code cell: INSTRUCTORS.md has it run from the
  slides, so it is never ``skip``) is not on the title slide, and the cell
  after it opens a sub-slide, so it sits on a short slide with at most the
  text that introduces it;
- a markdown cell whose first words are ``Speaker notes`` is a ``notes`` cell
  (the speaker view, ``S`` in a deck);
- otherwise a cell continues the slide it follows until the slide's
  estimated height (``estimate_height``: text, code and output lines,
  pictures; calibrated on the decks) would pass ``SLIDE_BUDGET_PX``; then it
  opens a sub-slide. The decks' CSS (slides/template/course_reveal/
  course_slides.css) caps a code cell's input and output areas (they scroll),
  so one cell always fits;
- the notebook's ``rise`` metadata (``RISE_SETTINGS``) makes jupyterlab-rise
  scroll a slide that is still too tall and start a show at the title.

``build`` writes one deck per lesson, ``NN_name.slides.html``, from the
committed outputs (nothing is executed), with nbconvert's slides exporter and
the template in ``slides/template/course_reveal``; the decks load reveal.js
from a copy of ``slides/vendor/reveal.js`` next to them and nothing from the
network. ``vendor`` refreshes that copy from npm at ``REVEAL_VERSION``.
``measure`` opens each deck in Debian's Chromium at 1280x720, steps through
every slide and fragment and prints the ones that do not fit (the browser
test tests/browser/test_slides.py does the same).
"""

from __future__ import annotations

import argparse
import html
import itertools
import math
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import notebook_widgets
from notebook_widgets import WIDGET_VIEW

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SLIDES = ROOT / "slides"
TEMPLATES = SLIDES / "template"
TEMPLATE_NAME = "course_reveal"
VENDOR = SLIDES / "vendor" / "reveal.js"
DEFAULT_OUT = ROOT / "build" / "slides"

REVEAL_VERSION = "5.2.1"
#: The files of the npm package reveal.js that a deck loads (paths inside the package).
VENDOR_FILES = (
    "LICENSE",
    "dist/reveal.js",
    "dist/reveal.css",
    "dist/theme/white.css",
    "dist/theme/fonts/source-sans-pro/LICENSE",
    "dist/theme/fonts/source-sans-pro/source-sans-pro.css",
    "dist/theme/fonts/source-sans-pro/source-sans-pro-regular.woff",
    "dist/theme/fonts/source-sans-pro/source-sans-pro-italic.woff",
    "dist/theme/fonts/source-sans-pro/source-sans-pro-semibold.woff",
    "dist/theme/fonts/source-sans-pro/source-sans-pro-semibolditalic.woff",
    "plugin/notes/notes.js",
)
WIDTH, HEIGHT = 1280, 720


class SlidesError(Exception):
    """A deck could not be built or measured; the message says what to do."""


# --------------------------------------------------------------------------
# layout: slide metadata
# --------------------------------------------------------------------------

#: Room for a slide's content, in the deck's pixels (the canvas is 1280x720;
#: a little is kept back for the estimate's error).
SLIDE_BUDGET_PX = 680
#: What the deck's CSS lets a code cell's input and output areas grow to.
INPUT_MAX_PX = 380
OUTPUT_MAX_PX = 300
IMAGE_MAX_PX = 440
#: ... and, for a cell that draws a plot, its input and output areas.
PLOT_INPUT_MAX_PX = 180
PLOT_OUTPUT_MAX_PX = 500
CODE_LINE_PX = 24
OUTPUT_LINE_PX = 24
TEXT_LINE_PX = 27
TEXT_CHARS_PER_LINE = 110
PARAGRAPH_GAP_PX = 20
LIST_ITEM_PX = 8
HEADING_PX = {1: 100, 2: 64, 3: 48}
TABLE_ROW_PX = 44
TABLE_CHARS_PER_LINE = 100
CELL_PX = 34
CODE_CELL_PX = 12
NOTES_MARK = re.compile(r"^\s*(\*\*|_)?speaker notes", re.IGNORECASE)
HEADING = re.compile(r"^(#{1,3}) ")
FENCE = re.compile(r"^\s*(```|~~~)")
IMAGE = re.compile(r"!\[|<img ")
EXERCISE = re.compile(r"^\s*\*\*Exercise ")
LIST_ITEM = re.compile(r"^([-*+]|\d+\.) ")


#: jupyterlab-rise's settings for every lesson (notebook metadata ``rise``): a
#: slide taller than the screen scrolls instead of being cut off, and a show
#: starts at the title whichever cell is selected.
RISE_SETTINGS = {"scroll": True, "start_slideshow_at": "beginning"}


@dataclass(frozen=True)
class Override:
    """A lesson's exception to the rules: ``slide_type`` for the cell whose source starts with ``starts``."""

    starts: str
    slide_type: str


#: Per lesson (file name prefix), cells whose slide type the rules get wrong.
OVERRIDES: dict[str, tuple[Override, ...]] = {
    # the list of the queue's defects after exercise 6.3's solution: a slide of its own
    "06_": (Override("The solution also says", "subslide"),),
}


def heading_level(cell: nbformat.NotebookNode) -> int:
    """1-3 for a markdown cell that opens with a ``#``-``###`` heading, else 0."""
    if cell.cell_type != "markdown" or not cell.source.strip():
        return 0
    match = HEADING.match(cell.source.lstrip().splitlines()[0])
    return len(match.group(1)) if match else 0


def is_notes(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "markdown" and bool(NOTES_MARK.match(cell.source))


def markdown_height(source: str) -> int:
    """Estimated height of rendered markdown in the deck, in pixels (calibrated on the lessons' decks).

    Source lines are hard-wrapped, so the lines of a paragraph or a list item
    are joined before they are wrapped at the slide's width.
    """
    height, fenced, run = CELL_PX, False, ""

    def flush() -> int:
        return TEXT_LINE_PX * wrapped_lines(run, TEXT_CHARS_PER_LINE) if run else 0

    for line in source.split("\n"):
        stripped = line.strip()
        if FENCE.match(line) or fenced:
            height, run = height + flush(), ""
            if FENCE.match(line):
                fenced = not fenced
                height += 10
            else:
                height += CODE_LINE_PX
            continue
        heading = HEADING.match(stripped)
        if heading or not stripped or stripped.startswith("|") or IMAGE.search(stripped) or LIST_ITEM.match(stripped):
            height, run = height + flush(), ""
        if heading:
            height += HEADING_PX[len(heading.group(1))]
        elif not stripped:
            height += PARAGRAPH_GAP_PX
        elif stripped.startswith("|"):
            separator = set(stripped) <= set("|-: ")
            height += 0 if separator else TABLE_ROW_PX * wrapped_lines(stripped, TABLE_CHARS_PER_LINE)
        elif IMAGE.search(stripped):
            height += IMAGE_MAX_PX
        else:
            height += LIST_ITEM_PX if LIST_ITEM.match(stripped) else 0
            run = f"{run} {stripped}" if run else stripped
    return height + flush()


def wrapped_lines(text: str, width: int) -> int:
    return max(1, math.ceil(len(text) / width))


def output_height(outputs: Sequence[nbformat.NotebookNode]) -> int:
    """Estimated height of a code cell's outputs (before the deck's cap)."""
    height = 0
    for output in outputs:
        data = output.get("data", {})
        if output.output_type == "stream":
            height += OUTPUT_LINE_PX * sum(wrapped_lines(line, 100) for line in output.text.split("\n"))
        elif "image/png" in data or "image/svg+xml" in data:
            height += IMAGE_MAX_PX
        elif "text/html" in data:
            text = "".join(data["text/html"])
            rows = text.count("<tr") + text.count("<br") + text.count("\n")
            height += max(OUTPUT_LINE_PX, OUTPUT_LINE_PX * rows)
        elif "text/markdown" in data:
            height += markdown_height("".join(data["text/markdown"]))
        elif "text/plain" in data:
            text = "".join(data["text/plain"])
            height += OUTPUT_LINE_PX * sum(wrapped_lines(line, 100) for line in text.split("\n"))
    return height


def estimate_height(cell: nbformat.NotebookNode) -> int:
    """Estimated height of a cell on a slide, with the deck's caps on code input and output."""
    if cell.cell_type == "markdown":
        return markdown_height(cell.source)
    if cell.cell_type != "code":
        return 0
    outputs = cell.get("outputs", [])
    plot = any("image/png" in o.get("data", {}) for o in outputs)
    input_px = min(PLOT_INPUT_MAX_PX if plot else INPUT_MAX_PX, CODE_LINE_PX * (cell.source.count("\n") + 1) + 20)
    out_px = output_height(outputs)
    out_px = min(PLOT_OUTPUT_MAX_PX if plot else OUTPUT_MAX_PX, out_px + (20 if out_px else 0))
    return input_px + out_px + CODE_CELL_PX


def paragraphs(source: str) -> list[str]:
    """The blocks of a markdown cell, split at blank lines outside code fences."""
    blocks: list[str] = []
    current: list[str] = []
    fenced = False
    for line in source.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        if not fenced and not line.strip():
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def split_tall_markdown(cell: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """``cell`` as one or more markdown cells, each short enough for a slide (split at paragraphs)."""
    if cell.cell_type != "markdown" or markdown_height(cell.source) <= SLIDE_BUDGET_PX:
        return [cell]
    pieces: list[list[str]] = [[]]
    for block in paragraphs(cell.source):
        candidate = "\n\n".join([*pieces[-1], block])
        if pieces[-1] and markdown_height(candidate) > SLIDE_BUDGET_PX:
            # a lead-in ("... you will:") goes with what it introduces
            carried = [pieces[-1].pop()] if len(pieces[-1]) > 1 and pieces[-1][-1].rstrip().endswith(":") else []
            pieces.append(carried)
        pieces[-1].append(block)
    if len(pieces) == 1:
        return [cell]
    cell.source = "\n\n".join(pieces[0])
    new = [nbformat.v4.new_markdown_cell("\n\n".join(piece)) for piece in pieces[1:]]
    return [cell, *new]


def heading_starts(source: str) -> list[int]:
    """Line numbers (after the first line) where a ``#``-``###`` heading starts, outside code fences."""
    starts, fenced = [], False
    for number, line in enumerate(source.split("\n")):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and number > 0 and HEADING.match(line):
            starts.append(number)
    return starts


def split_at_headings(cell: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """``cell`` as one or more cells, each heading opening a markdown cell of its own (so it can open a slide)."""
    starts = heading_starts(cell.source) if cell.cell_type == "markdown" else []
    if not starts:
        return [cell]
    lines = cell.source.split("\n")
    bounds = [0, *starts, len(lines)]
    pieces = ["\n".join(lines[a:b]).strip("\n") for a, b in itertools.pairwise(bounds)]
    cell.source = pieces[0]
    return [cell, *(nbformat.v4.new_markdown_cell(piece) for piece in pieces[1:] if piece)]


def override_for(path: Path, cell: nbformat.NotebookNode) -> str | None:
    for prefix, overrides in OVERRIDES.items():
        if path.name.startswith(prefix):
            for override in overrides:
                if cell.source.startswith(override.starts):
                    return override.slide_type
    return None


def layout(nb: nbformat.NotebookNode, path: Path) -> None:
    """Give every cell of ``nb`` its slide type (see the module's docstring); idempotent."""
    cells: list[nbformat.NotebookNode] = []
    for cell in nb.cells:
        for piece in split_at_headings(cell):
            cells.extend(split_tall_markdown(piece))
    nb.cells = cells
    first_code = next((i for i, c in enumerate(cells) if c.cell_type == "code" and c.source.strip()), None)
    used, previous = 0, None
    for index, cell in enumerate(cells):
        height = estimate_height(cell)
        level = heading_level(cell)
        if is_notes(cell):
            kind = "notes"
        elif index == 0 or level in (1, 2):
            kind = "slide"
        elif (
            level == 3
            or EXERCISE.match(cell.source)
            or (index == first_code and previous == 0)
            or (first_code is not None and index - 1 == first_code)
            or used + height > SLIDE_BUDGET_PX
        ):
            kind = "subslide"
        else:
            kind = "-"
        kind = override_for(path, cell) or kind
        if kind in ("slide", "subslide"):
            used = height
        elif kind in ("-", "fragment"):
            used += height
        if kind != "notes":
            previous = index
        cell.setdefault("metadata", {}).setdefault("slideshow", {})["slide_type"] = kind
    nb.metadata.setdefault("rise", {}).update(RISE_SETTINGS)


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook at ``path`` (nbformat 4), or SlidesError when it is missing or not a valid notebook."""
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except FileNotFoundError as exc:
        raise SlidesError(f"{path}: no such file") from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError, nbformat.ValidationError) as exc:
        # NotJSONError is a ValueError; a JSON document that is not a notebook fails validation
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SlidesError(f"{path}: not a notebook nbformat can read ({message})") from exc
    return nb


def layout_file(path: Path, *, check: bool = False) -> bool:
    """Lay out one notebook file; True when it changed (or, with ``check``, would change)."""
    nb = read_notebook(path)
    before = path.read_text(encoding="utf-8")
    layout(nb, path)
    nbformat.validate(nb)
    import nbtool  # tools/nbtool.py, the notebook writer (imported here: it imports this module)

    after = nbtool.notebook_text(nb)  # as JupyterLab saves it: a save there changes no byte
    if after == before:
        return False
    if not check:
        path.write_text(after, encoding="utf-8")
    return True


# --------------------------------------------------------------------------
# build: offline decks
# --------------------------------------------------------------------------

def freeze_widgets(nb: nbformat.NotebookNode) -> None:
    """Replace each widget output by static HTML of its saved state (or its text), so no widget manager is needed."""
    notebook_widgets.draw_widgets(nb)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)  # one that could not be drawn keeps its text form


NBVAL_MARKER = re.compile(r"^# NBVAL_\w+[^\n]*\n?", re.MULTILINE)


def drop_test_markers(nb: nbformat.NotebookNode) -> None:
    """Remove nbval's ``# NBVAL_...`` comment lines from the code shown on the slides (they are for the tests)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = NBVAL_MARKER.sub("", cell.source)


def deck_name(notebook: Path) -> str:
    return f"{notebook.stem}.slides.html"


def export_deck(notebook: Path, *, vendor_prefix: str = "reveal.js") -> str:
    """The reveal.js deck of one lesson as HTML (committed outputs; nothing runs)."""
    from nbconvert.exporters import SlidesExporter

    nb = read_notebook(notebook)
    freeze_widgets(nb)
    drop_test_markers(nb)
    exporter = SlidesExporter(
        extra_template_basedirs=[str(TEMPLATES)],
        template_name=TEMPLATE_NAME,
        reveal_url_prefix=vendor_prefix,
        reveal_theme="white",
        reveal_transition="slide",
        reveal_number="c/t",
        reveal_width=str(WIDTH),
        reveal_height=str(HEIGHT),
        embed_images=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        exclude_anchor_links=True,
    )
    body, _ = exporter.from_notebook_node(
        nb, resources={"metadata": {"name": notebook.stem, "path": str(notebook.parent)}}
    )
    # the lessons link to each other: in the decks, to each other's deck
    return LESSON_LINK.sub(lambda m: f'href="{m.group(1)}.slides.html{m.group(2) or ""}"', str(body))


LESSON_LINK = re.compile(r'href="(\d\d_[\w-]+)\.ipynb(#[^"]*)?"')


def build(out: Path, notebooks: Iterable[Path]) -> list[Path]:
    """Write one deck per lesson into ``out``, with the vendored reveal.js beside them, and an index page."""
    if not (VENDOR / "dist" / "reveal.js").exists():
        raise SlidesError(f"{VENDOR} is missing: restore it from git, or run `python tools/slides.py vendor`")
    out.mkdir(parents=True, exist_ok=True)
    target = out / "reveal.js"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(VENDOR, target)
    written = []
    for notebook in notebooks:
        deck = out / deck_name(notebook)
        deck.write_text(export_deck(notebook), encoding="utf-8")
        written.append(deck)
    links = "\n".join(f'<li><a href="{d.name}">{html.escape(d.name)}</a></li>' for d in written)
    (out / "index.html").write_text(
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Course slides</title></head>\n'
        f"<body><h1>Course slides</h1><ul>\n{links}\n</ul></body></html>\n",
        encoding="utf-8",
    )
    return written


def vendor(version: str = REVEAL_VERSION, destination: Path = VENDOR) -> None:
    """Refresh ``destination`` from the npm package reveal.js at ``version`` (needs npm)."""
    npm = shutil.which("npm")
    if npm is None:
        raise SlidesError("npm is not installed: `apt-get install npm`, then run this again")
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [npm, "pack", f"reveal.js@{version}", "--pack-destination", tmp],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise SlidesError(f"npm pack reveal.js@{version} failed: {result.stderr.strip()[-400:]}")
        tarball = next(Path(tmp).glob("reveal.js-*.tgz"))
        with tarfile.open(tarball) as archive:
            archive.extractall(tmp, filter="data")
        package = Path(tmp) / "package"
        if destination.exists():
            shutil.rmtree(destination)
        for name in VENDOR_FILES:
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(package / name, destination / name)
    (destination / "VERSION").write_text(f"reveal.js {version} (npm), files: tools/slides.py VENDOR_FILES\n")


# --------------------------------------------------------------------------
# measure: every slide state in Chromium
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SlideState:
    """One state of a deck (slide h.v, fragment f) and the size of its content in deck pixels."""

    deck: str
    h: int
    v: int
    fragment: int
    title: str
    height: int
    width: int

    @property
    def fits(self) -> bool:
        return self.height <= HEIGHT and self.width <= WIDTH

    def describe(self) -> str:
        return (
            f"{self.deck} slide {self.h + 1}.{self.v + 1} (fragment {self.fragment}) "
            f"'{self.title}': {self.width}x{self.height} px"
        )


@dataclass
class DeckReport:
    """What loading one deck produced: its slide states, refused requests and console errors."""

    deck: str
    states: list[SlideState]
    external_requests: list[str]
    console_errors: list[str]


STEP_THROUGH_JS = """
() => {
  Reveal.configure({transition: 'none', backgroundTransition: 'none'});
  Reveal.slide(0, 0, -1);
  const states = [];
  for (let guard = 0; guard < 5000; guard++) {
    const slide = Reveal.getCurrentSlide();
    const idx = Reveal.getIndices();
    const heading = slide.querySelector('h1, h2, h3, h4, p, pre');
    states.push({
      h: idx.h, v: idx.v || 0, f: (idx.f === undefined ? -1 : idx.f),
      title: heading ? heading.textContent.trim().slice(0, 60) : '',
      height: slide.scrollHeight, width: slide.scrollWidth,
    });
    const before = JSON.stringify(Reveal.getIndices());
    Reveal.next();
    if (JSON.stringify(Reveal.getIndices()) === before) break;
  }
  return states;
}
"""


def measure_deck(page: Any, deck: Path) -> DeckReport:
    """Load ``deck`` in a Playwright ``page`` (1280x720) and measure every slide and fragment state.

    Requests for anything but ``file://`` are refused and recorded.
    """
    external: list[str] = []
    errors: list[str] = []

    def refuse(route: Any) -> None:
        external.append(route.request.url)
        route.abort()

    def on_console(message: Any) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.route(re.compile(r"^(?!file://).*"), refuse)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(deck.resolve().as_uri(), wait_until="load")
        page.wait_for_function("() => window.Reveal && Reveal.isReady()")
        rows = page.evaluate(STEP_THROUGH_JS)
    finally:
        page.unroute_all()
        page.remove_listener("console", on_console)
    states = [
        SlideState(deck.name, r["h"], r["v"], r["f"], r["title"], int(r["height"]), int(r["width"])) for r in rows
    ]
    return DeckReport(deck.name, states, external, errors)


def measure(decks: Sequence[Path]) -> list[DeckReport]:
    """Measure every deck in one headless Debian Chromium at 1280x720."""
    from playwright.sync_api import sync_playwright

    from course.browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            reports = []
            for deck in decks:
                page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
                try:
                    reports.append(measure_deck(page, deck))
                finally:
                    page.close()
            return reports
        finally:
            browser.close()


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------


def lessons(paths: Sequence[Path], every: bool) -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) if every or not paths else list(paths)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    layout_p = sub.add_parser("layout", help="set every cell's slide metadata (idempotent)")
    layout_p.add_argument("notebooks", nargs="*", type=Path)
    layout_p.add_argument("--all", action="store_true", help="every lesson in notebooks/")
    layout_p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook would change")
    build_p = sub.add_parser("build", help="write the offline reveal.js decks (make slides)")
    build_p.add_argument("notebooks", nargs="*", type=Path)
    build_p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    measure_p = sub.add_parser("measure", help="build the decks and list the slides that do not fit 1280x720")
    measure_p.add_argument("notebooks", nargs="*", type=Path)
    measure_p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    sub.add_parser("vendor", help=f"refresh slides/vendor/reveal.js from npm (reveal.js {REVEAL_VERSION})")
    args = parser.parse_args(argv)

    try:
        if args.command == "layout":
            if not args.notebooks and not args.all:
                parser.error("name notebooks to lay out, or pass --all")
            changed = [p for p in lessons(args.notebooks, args.all) if layout_file(p, check=args.check)]
            for path in changed:
                print(f"{path}: {'would change' if args.check else 'laid out'}")
            return 1 if args.check and changed else 0
        if args.command == "vendor":
            vendor()
            print(f"{VENDOR}: reveal.js {REVEAL_VERSION}")
            return 0
        decks = build(args.out, lessons(args.notebooks, False))
        if args.command == "build":
            print(f"{len(decks)} decks written to {args.out} (open index.html)")
            return 0
        failures = 0
        for report in measure(decks):
            tall = [s for s in report.states if not s.fits]
            failures += len(tall) + len(report.external_requests) + len(report.console_errors)
            print(f"{report.deck}: {len(report.states)} states, {len(tall)} do not fit")
            for state in tall:
                print(f"  {state.describe()}")
            for url in report.external_requests:
                print(f"  external request: {url}")
            for error in report.console_errors:
                print(f"  console error: {error}")
        return 1 if failures else 0
    except (SlidesError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
