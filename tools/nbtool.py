"""Maintain the course notebooks: execute them in place, top to bottom, on a fresh kernel.

    python tools/nbtool.py run notebooks/00_start_here.ipynb [more.ipynb ...]
    python tools/nbtool.py run --all
    python tools/nbtool.py learner [--out learner]
    python tools/nbtool.py colab-cell --repository URL notebooks/*.ipynb

``run`` executes each notebook with its directory as the working directory
(as nbval and JupyterLab do), stops at the first error (and saves nothing),
lays the cells out as slides that fit a 1280x720 screen (``tools/slides.py
layout``: the rules and the per-lesson overrides live there), and removes
per-run metadata such as execution timings, so a re-run only changes what
really changed.

Every notebook this tool writes is saved byte for byte as JupyterLab would
save it (``write_notebook``: nbformat's layout, numbers as the browser's
JSON writes them), so opening, presenting and saving a lesson leaves git
clean. ``run`` also gives each progress bar's text fallback the bar's
finished state (``finish_progress_bars``), as its saved widget shows it.

``learner`` writes the learners' copy of every lesson (``make learner``):
the same cells with every output cleared and every ``.solution()`` call
commented out, so the reference answers stay hidden until a learner asks
for them. The folder sits next to ``notebooks/`` so the lessons' links
(``../README.md``, the next lesson) still work. Hand it out; keep
``notebooks/`` (solutions run, outputs committed) for presenting.

``colab-cell`` puts (or refreshes) the Google Colab install cell after each
lesson's title: on Colab it clones the course from ``--repository`` and runs
``tools/colab_install.py`` (the lessons' runtime dependencies, Colab's own
Jupyter left as it is); anywhere else it does nothing and prints nothing.
Running it again changes nothing.

Authoring tip: write a lesson as a jupytext "percent" script and convert it
with ``jupytext --to ipynb lesson.py``, then ``run`` it; to edit an existing
notebook as text, ``jupytext --to py:percent notebooks/NN_x.ipynb`` and back
with ``jupytext --update --to ipynb``.
"""

from __future__ import annotations

import argparse
import html
import math
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import zmq
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from notebook_widgets import WIDGET_STATE, WIDGET_VIEW
from traitlets.config import Config

import slides  # tools/slides.py: the slide layout lives there

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def tidy(nb: nbformat.NotebookNode, path: Path) -> None:
    """Slide metadata from tools/slides.py's layout, and no per-run metadata (execution timings)."""
    slides.layout(nb, path)
    for cell in nb.cells:
        cell.setdefault("metadata", {}).pop("execution", None)
    nb.metadata.setdefault("kernelspec", {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    })


#: JavaScript's ``JSON.stringify`` writes a number in plain digits below this magnitude.
JS_PLAIN_DIGITS_BELOW = 1e21


def as_javascript_writes(value: Any) -> Any:
    """``value`` with every number as it comes back from a browser's ``JSON.parse`` / ``JSON.stringify``.

    JavaScript has one number type: ``3.0`` is written ``3``, which Python
    then reads as an int. (Other floats read back unchanged: both languages
    write the shortest text that reads back as the same double.)
    """
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < JS_PLAIN_DIGITS_BELOW:
        return int(value)
    if isinstance(value, dict):
        return {key: as_javascript_writes(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_javascript_writes(item) for item in value]
    return value


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """The file JupyterLab saves for ``nb``: nbformat's writer (indent 1, sorted keys, UTF-8, a final newline)
    over the notebook as the browser sends it (numbers as JavaScript writes them)."""
    text = nbformat.writes(nbformat.from_dict(as_javascript_writes(nb)), version=nbformat.NO_CONVERT)
    return text if text.endswith("\n") else text + "\n"


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> None:
    """Save ``nb`` to ``path`` exactly as JupyterLab would save it, so that a save there changes no byte."""
    path.write_text(notebook_text(nb), encoding="utf-8")


#: tqdm's notebook bar: a label, the bar, the counts (``tqdm.notebook.TqdmHBox``).
BAR_PARTS = ("HTMLModel", "FloatProgressModel", "HTMLModel")
BAR_WIDTH = 10
BAR_BLOCKS = " ▏▎▍▌▋▊▉█"  # tqdm's Unicode bar: empty, eighths, full


def draw_bar(done: float, width: int = BAR_WIDTH) -> str:
    """A bar of ``width`` characters, ``done`` (0 to 1) of it filled, drawn as tqdm draws it."""
    steps = len(BAR_BLOCKS) - 1
    full, part = divmod(int(min(max(done, 0.0), 1.0) * width * steps), steps)
    if full >= width:
        return BAR_BLOCKS[-1] * width
    return BAR_BLOCKS[-1] * full + BAR_BLOCKS[part] + BAR_BLOCKS[0] * (width - full - 1)


def _html_text(value: str) -> str:
    return html.unescape(value).replace("\u2007", " ")  # tqdm pads with figure spaces in HTML


def progress_bar_text(model_id: str, widgets: dict[str, Any]) -> str | None:
    """The text line of the tqdm bar ``model_id`` in its saved widget state (None: not a tqdm bar)."""
    box = widgets.get(model_id, {})
    children = box.get("state", {}).get("children", [])
    if box.get("model_name") != "HBoxModel" or len(children) != len(BAR_PARTS):
        return None
    parts = [widgets.get(str(ref).removeprefix("IPY_MODEL_"), {}) for ref in children]
    if tuple(part.get("model_name") for part in parts) != BAR_PARTS:
        return None
    label, bar, counts = (part["state"] for part in parts)
    span = float(bar.get("max", 1)) - float(bar.get("min", 0))
    done = (float(bar.get("value", 0)) - float(bar.get("min", 0))) / span if span > 0 else 1.0
    return f"{_html_text(label.get('value', ''))}|{draw_bar(done)}|{_html_text(counts.get('value', ''))}"


def finish_progress_bars(nb: nbformat.NotebookNode) -> int:
    """Give each tqdm bar's text fallback the state its saved widget holds (the finished run); return how many.

    tqdm writes the text when the bar appears (``0%| 0/3``) and then only
    moves the widget; pages that show the text (GitHub, static sites, decks)
    would show a stalled bar.
    """
    widgets = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    finished = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW not in data or "text/plain" not in data:
                continue
            text = progress_bar_text(data[WIDGET_VIEW].get("model_id", ""), widgets)
            if text is not None:
                data["text/plain"] = text
                finished += 1
    return finished


def kernel_config() -> Config:
    """Jupyter configuration for the kernels this tool starts: encrypted channels when pyzmq can.

    jupyter_client 8.10 gives a kernel CurveZMQ keys when asked to
    (``transport_encryption``, for kernels whose kernelspec declares ``curve``,
    as ipykernel's does); without them ipykernel >= 7.3 warns at every start
    that it runs "over TCP without encryption". (``make lab`` passes the same
    setting to JupyterLab.)
    """
    config = Config()
    if zmq.has("curve"):  # "auto" is refused by a pyzmq built without CurveZMQ
        config.KernelManager.transport_encryption = "auto"
    return config


def run(path: Path, timeout: int) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
        config=kernel_config(),
    )
    started = time.monotonic()
    client.execute()
    tidy(nb, path)
    finish_progress_bars(nb)
    nbformat.validate(nb)
    write_notebook(nb, path)
    return time.monotonic() - started


#: A line that calls an exercise's solution, e.g. ``lesson01.message_rule.solution()``.
SOLUTION_CALL = re.compile(r"^(\s*)(?!#)(\S.*\.solution\(\).*)$")
LEARNER_NOTE = "  # the reference answer: uncomment and run once you have tried"


def hide_solutions(source: str) -> str:
    """``source`` with each line that calls ``.solution()`` commented out."""
    return "\n".join(
        SOLUTION_CALL.sub(lambda m: f"{m.group(1)}# {m.group(2)}{LEARNER_NOTE}", line)
        for line in source.split("\n")
    )


def learner_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The learners' edition of a lesson: no outputs, solutions commented out, no speaker notes."""
    copy = nbformat.from_dict(nb)
    copy.cells = [cell for cell in copy.cells if cell.metadata.get("slideshow", {}).get("slide_type") != "notes"]
    for cell in copy.cells:
        if cell.cell_type == "code":
            cell.source = hide_solutions(cell.source)
            cell.outputs = []
            cell.execution_count = None
    copy.metadata["course_edition"] = "learner"
    return copy


def write_learner_copies(out: Path, *, keep_existing: bool = False) -> list[Path]:
    """Write the learners' copy of every lesson into ``out`` (replacing what was there).

    With ``keep_existing`` a lesson already in ``out`` is left as it is (it may
    hold a learner's work: ``make lab`` only adds the lessons that are missing).
    """
    if out.resolve() == NOTEBOOKS.resolve():
        raise ValueError("the learners' copy must not overwrite notebooks/: choose another folder")
    if out.exists() and not keep_existing:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        if keep_existing and (out / path.name).exists():
            continue
        copy = learner_copy(nbformat.read(path, as_version=4))
        nbformat.validate(copy)
        write_notebook(copy, out / path.name)
        written.append(out / path.name)
    return written


COLAB_CELL_ID = "colab-setup"
#: Where the course is cloned on Colab (Colab's working folder is /content).
COLAB_FOLDER = "/content/async-notify-course"
COLAB_CELL = """\
# Google Colab only (elsewhere this cell does nothing): fetch the course and install what the
# lessons import, keeping Colab's own Jupyter (ipykernel, jupyter-server) as it is. About a minute.
import os, subprocess, sys
if "COLAB_RELEASE_TAG" in os.environ:
    if not os.path.isdir("{folder}"):
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "{repository}", "{folder}"], check=True)
        subprocess.run([sys.executable, "{folder}/tools/colab_install.py"], check=True)
    sys.path.insert(0, "{folder}")
    os.chdir("{folder}/notebooks")"""


def colab_cell(repository: str) -> nbformat.NotebookNode:
    """The install cell for Colab: a no-op (no output) anywhere else; skipped in slides."""
    if not re.fullmatch(r"(https://|git@)[\w.@:/~+-]+", repository):
        raise ValueError(f"--repository must be the course's git URL (https://... or git@...), not {repository!r}")
    cell = nbformat.v4.new_code_cell(COLAB_CELL.format(repository=repository, folder=COLAB_FOLDER))
    cell.id = COLAB_CELL_ID
    cell.metadata = {"slideshow": {"slide_type": "skip"}, "tags": [COLAB_CELL_ID]}
    return cell


def add_colab_cell(nb: nbformat.NotebookNode, repository: str) -> bool:
    """Put the Colab cell after the lesson's title (or refresh the one there); True if ``nb`` changed."""
    cell = colab_cell(repository)
    for index, existing in enumerate(nb.cells):
        if existing.get("id") == COLAB_CELL_ID or COLAB_CELL_ID in existing.get("metadata", {}).get("tags", []):
            if existing.source == cell.source and existing.metadata == cell.metadata and not existing.outputs:
                return False
            nb.cells[index] = cell
            return True
    title = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
    nb.cells.insert(title, cell)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="execute notebooks in place")
    run_p.add_argument("notebooks", nargs="*", type=Path)
    run_p.add_argument("--all", action="store_true", help="every notebook in notebooks/")
    run_p.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    learner_p = sub.add_parser("learner", help="write the learners' copy (no outputs, solutions hidden)")
    learner_p.add_argument("--out", type=Path, default=ROOT / "learner", help="folder to write (default: learner/)")
    learner_p.add_argument(
        "--keep-existing", action="store_true", help="only add missing lessons; never overwrite a learner's work"
    )
    colab_p = sub.add_parser("colab-cell", help="add (or refresh) the Google Colab install cell")
    colab_p.add_argument("notebooks", nargs="+", type=Path)
    colab_p.add_argument("--repository", required=True, help="the course's git URL, which Colab clones")
    args = parser.parse_args(argv)

    if args.command == "colab-cell":
        try:
            colab_cell(args.repository)
        except ValueError as exc:
            parser.error(str(exc))
        for path in args.notebooks:
            nb = nbformat.read(path, as_version=4)
            changed = add_colab_cell(nb, args.repository)
            if changed:
                nbformat.validate(nb)
                write_notebook(nb, path)
            print(f"{path}: {'Colab cell written' if changed else 'already has the Colab cell'}")
        return 0
    if args.command == "learner":
        written = write_learner_copies(args.out, keep_existing=args.keep_existing)
        print(f"{len(written)} lessons written to {args.out}")
        return 0
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) if args.all else args.notebooks
    if not paths:
        parser.error("name notebooks to run, or pass --all")
    for path in paths:
        try:
            seconds = run(path, args.timeout)
        except CellExecutionError as exc:
            print(f"{path}: FAILED, not saved\n{exc}", file=sys.stderr)
            return 1
        print(f"{path}: executed in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
