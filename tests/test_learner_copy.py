"""The learners' copy (``make learner``): every lesson, no outputs, no solution shown until asked for."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import nbtool
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = re.compile(r"\.solution\(\)")




@pytest.fixture(scope="module")
def learner(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("course") / "learner"
    nbtool.write_learner_copies(out)
    return out


def test_every_lesson_has_a_learner_copy(learner):
    lessons = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(p.name for p in learner.glob("*.ipynb")) == lessons


def test_no_output_and_no_solution_call_left_active(learner):
    for path in sorted(learner.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs left"
            active = [
                line
                for line in cell.source.splitlines()
                if SOLUTION.search(line) and not line.lstrip().startswith("#")
            ]
            assert not active, f"{path.name}: a solution would run: {active}"


def is_speaker_notes(cell: nbformat.NotebookNode) -> bool:
    return cell.metadata.get("slideshow", {}).get("slide_type") == "notes"


def test_the_copy_keeps_every_cell_but_the_speaker_notes_and_every_exercise(learner):
    for original in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        source = nbformat.read(original, as_version=4)
        copy = nbformat.read(learner / original.name, as_version=4)
        assert not any(is_speaker_notes(c) for c in copy.cells), f"{original.name}: speaker notes in the learners' copy"
        assert [c.source for c in copy.cells if c.cell_type == "markdown"] == [
            c.source for c in source.cells if c.cell_type == "markdown" and not is_speaker_notes(c)
        ]
        assert [c.cell_type for c in copy.cells] == [c.cell_type for c in source.cells if not is_speaker_notes(c)]
        checks = lambda nb: [line for c in nb.cells for line in c.source.splitlines() if ".check(" in line]  # noqa: E731
        assert checks(copy) == checks(source), f"{original.name}: an exercise's check was lost"
        solutions = [line for c in source.cells for line in c.source.splitlines() if SOLUTION.search(line)]
        kept = [line for c in copy.cells for line in c.source.splitlines() if SOLUTION.search(line)]
        assert len(kept) == len(solutions), f"{original.name}: a solution call was dropped instead of hidden"


def test_hide_solutions_comments_only_the_solution_line():
    source = "x = 1\nlesson01.message_rule.solution()\n    lesson02.rule.solution()\n# lesson03.a.solution()"
    lines = nbtool.hide_solutions(source).splitlines()
    assert lines[0] == "x = 1"
    assert lines[1].startswith("# lesson01.message_rule.solution()")
    assert lines[2].startswith("    # lesson02.rule.solution()")
    assert lines[3] == "# lesson03.a.solution()"


def test_refuses_to_write_over_the_lessons():
    with pytest.raises(ValueError, match="must not overwrite notebooks"):
        nbtool.write_learner_copies(ROOT / "notebooks")


def test_a_learner_copy_runs_top_to_bottom_and_shows_no_solution(learner):
    # Lesson 01 shows its solution in the presenters' edition; the copy must run without it.
    nb = nbformat.read(learner / "01_private_messages.ipynb", as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(learner)}}).execute()
    shown = "\n".join(
        str(output.get("text", "")) + str(output.get("data", {}))
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "Not answered yet" in shown  # the exercise is there, unanswered
    assert "len(body) <= 140" not in shown  # the reference answer's line is not


def test_make_lab_adds_missing_lessons_and_never_overwrites_a_learners_work(tmp_path):
    out = tmp_path / "learner"
    first, second, *_ = nbtool.write_learner_copies(out)
    first.write_text(first.read_text().replace('"cells"', '"cells"', 1) + "\n")  # the learner saved their work
    mine = first.read_text()
    second.unlink()
    written = nbtool.write_learner_copies(out, keep_existing=True)
    assert written == [second] and second.exists()
    assert first.read_text() == mine
