"""Maintain the course notebooks: execute them in place, top to bottom, on a fresh kernel.

    python tools/nbtool.py run notebooks/00_start_here.ipynb [more.ipynb ...]
    python tools/nbtool.py run --all

``run`` executes each notebook with its directory as the working directory
(as nbval and JupyterLab do), stops at the first error (and saves nothing),
gives every cell slide metadata (keeping what an author set: a markdown cell
that starts with ``# `` or ``## `` opens a slide, ``### `` a sub-slide, other
cells continue the slide), and removes per-run metadata such as execution
timings, so a re-run only changes what really changed.

Authoring tip: write a lesson as a jupytext "percent" script and convert it
with ``jupytext --to ipynb lesson.py``, then ``run`` it; to edit an existing
notebook as text, ``jupytext --to py:percent notebooks/NN_x.ipynb`` and back
with ``jupytext --update --to ipynb``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def slide_type_for(cell: nbformat.NotebookNode) -> str:
    if cell.cell_type == "markdown":
        first = cell.source.lstrip().splitlines()[0] if cell.source.strip() else ""
        if first.startswith(("# ", "## ")):
            return "slide"
        if first.startswith("### "):
            return "subslide"
    return "-"


def tidy(nb: nbformat.NotebookNode) -> None:
    for cell in nb.cells:
        meta = cell.setdefault("metadata", {})
        meta.pop("execution", None)
        meta.setdefault("slideshow", {}).setdefault("slide_type", slide_type_for(cell))
    nb.metadata.setdefault("kernelspec", {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    })


def run(path: Path, timeout: int) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
    )
    started = time.monotonic()
    client.execute()
    tidy(nb)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="execute notebooks in place")
    run_p.add_argument("notebooks", nargs="*", type=Path)
    run_p.add_argument("--all", action="store_true", help="every notebook in notebooks/")
    run_p.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    args = parser.parse_args(argv)

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
