"""Maintain the course notebooks: execute them in place, top to bottom, on a fresh kernel.

    python tools/nbtool.py run notebooks/00_start_here.ipynb [more.ipynb ...]
    python tools/nbtool.py run --all
    python tools/nbtool.py learner [--out learner]

``run`` executes each notebook with its directory as the working directory
(as nbval and JupyterLab do), stops at the first error (and saves nothing),
lays the cells out as slides that fit a 1280x720 screen (``tools/slides.py
layout``: the rules and the per-lesson overrides live there), and removes
per-run metadata such as execution timings, so a re-run only changes what
really changed.

``learner`` writes the learners' copy of every lesson (``make learner``):
the same cells with every output cleared and every ``.solution()`` call
commented out, so the reference answers stay hidden until a learner asks
for them. The folder sits next to ``notebooks/`` so the lessons' links
(``../README.md``, the next lesson) still work. Hand it out; keep
``notebooks/`` (solutions run, outputs committed) for presenting.

Authoring tip: write a lesson as a jupytext "percent" script and convert it
with ``jupytext --to ipynb lesson.py``, then ``run`` it; to edit an existing
notebook as text, ``jupytext --to py:percent notebooks/NN_x.ipynb`` and back
with ``jupytext --update --to ipynb``.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def _slides_tool() -> ModuleType:
    """tools/slides.py, the home of the slide layout (loaded by path: tools/ is not a package)."""
    if "slides" in sys.modules:
        return sys.modules["slides"]
    spec = importlib.util.spec_from_file_location("slides", Path(__file__).with_name("slides.py"))
    if spec is None or spec.loader is None:
        raise ImportError("tools/slides.py is missing: restore it from git")
    module = importlib.util.module_from_spec(spec)
    sys.modules["slides"] = module
    spec.loader.exec_module(module)
    return module


def tidy(nb: nbformat.NotebookNode, path: Path) -> None:
    """Slide metadata from tools/slides.py's layout, and no per-run metadata (execution timings)."""
    _slides_tool().layout(nb, path)
    for cell in nb.cells:
        cell.setdefault("metadata", {}).pop("execution", None)
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
    tidy(nb, path)
    nbformat.validate(nb)
    nbformat.write(nb, path)
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
    """The learners' edition of a lesson: no outputs, solutions commented out."""
    copy = nbformat.from_dict(nb)
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
        nbformat.write(copy, out / path.name)
        written.append(out / path.name)
    return written


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
    args = parser.parse_args(argv)

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
