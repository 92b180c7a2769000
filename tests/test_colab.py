"""The Google Colab path: an install cell in every lesson that does nothing elsewhere, and an installer
that leaves Colab's own Jupyter as it is."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import colab_install
import nbformat
import nbtool
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REPOSITORY = "https://example.org/course/async-notify-course.git"




def colab_cells(nb: nbformat.NotebookNode) -> list[int]:
    return [i for i, cell in enumerate(nb.cells) if cell.get("id") == nbtool.COLAB_CELL_ID]


def test_every_committed_lesson_has_the_colab_cell():
    missing = [path.name for path in LESSONS if len(colab_cells(nbformat.read(path, as_version=4))) != 1]
    assert not missing, (
        f"no Colab install cell in {', '.join(missing)}: "
        "python tools/nbtool.py colab-cell --repository URL notebooks/[0-9]*.ipynb"
    )


@pytest.fixture
def copies(tmp_path) -> list[Path]:
    """The lessons as they were before the tool: their Colab cell taken out."""
    paths = []
    for lesson in LESSONS:
        nb = nbformat.read(lesson, as_version=4)
        for index in reversed(colab_cells(nb)):
            del nb.cells[index]
        nbtool.write_notebook(nb, tmp_path / lesson.name)
        paths.append(tmp_path / lesson.name)
    return paths


def run_nbtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "nbtool.py"), *args], capture_output=True, text=True, timeout=120
    )


def test_the_tool_adds_one_cell_after_the_title_and_a_second_run_changes_nothing(copies):
    before = {path: nbformat.read(path, as_version=4) for path in copies}
    assert run_nbtool("colab-cell", "--repository", REPOSITORY, *map(str, copies)).returncode == 0
    first = {path: path.read_bytes() for path in copies}
    for path in copies:
        nb = nbformat.read(path, as_version=4)
        (index,) = colab_cells(nb)
        assert index == (1 if before[path].cells[0].cell_type == "markdown" else 0)
        cell = nb.cells[index]
        assert cell.cell_type == "code" and not cell.outputs and REPOSITORY in cell.source
        assert cell.metadata["slideshow"]["slide_type"] == "skip"  # not a slide
        others = [c for i, c in enumerate(nb.cells) if i != index]
        assert [c.source for c in others] == [c.source for c in before[path].cells]  # nothing else changed
    done = run_nbtool("colab-cell", "--repository", REPOSITORY, *map(str, copies))
    assert done.returncode == 0 and "already has the Colab cell" in done.stdout
    assert {path: path.read_bytes() for path in copies} == first


def test_the_tool_refuses_a_repository_that_is_not_a_git_url(copies):
    before = copies[0].read_bytes()
    done = run_nbtool("colab-cell", "--repository", "x; rm -rf ~", str(copies[0]))
    assert done.returncode == 2 and "--repository must be the course's git URL" in done.stderr
    assert "Traceback" not in done.stderr
    assert copies[0].read_bytes() == before


def test_the_cell_does_nothing_and_prints_nothing_outside_colab(tmp_path):
    """Run in a real kernel (not Colab): no output, no clone, the working folder and sys.path as they were."""
    probe = nbformat.v4.new_code_cell(
        "import os, sys\n"
        "print(os.getcwd() == START_DIR, sys.path == START_PATH, os.path.exists(os.path.dirname(COURSE)) or 'no')"
    )
    start = nbformat.v4.new_code_cell(
        f"import os, sys\nSTART_DIR, START_PATH, COURSE = os.getcwd(), list(sys.path), {nbtool.COLAB_FOLDER!r}"
    )
    nb = nbformat.v4.new_notebook(cells=[start, nbtool.colab_cell(REPOSITORY), probe])
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
        config=nbtool.kernel_config(),
    ).execute()  # fmt: skip
    assert nb.cells[1].outputs == []
    assert nb.cells[2].outputs[0]["text"].split()[:2] == ["True", "True"]
    assert not Path(nbtool.COLAB_FOLDER).exists()


def test_the_installer_pins_the_lock_and_leaves_the_front_end_to_colab():
    wanted = colab_install.runtime_requirements()
    names = {colab_install.normalize(r.split("[")[0].split("==")[0]) for r in wanted}
    assert not names & {"ipython", "ipywidgets", "ipykernel", "jupyterlab", "jupyter-server", "playwright"}
    locked = colab_install.locked_versions(ROOT / "requirements.lock")
    for requirement in wanted:
        name, version = requirement.split("==")
        assert version == locked[colab_install.normalize(name.split("[")[0])], requirement
    assert "aiohttp==" + locked["aiohttp"] in wanted and "psycopg[binary]==" + locked["psycopg"] in wanted


def test_the_installer_holds_the_installed_jupyter_at_its_version():
    held = colab_install.held_constraints()
    assert f"ipykernel=={metadata.version('ipykernel')}" in held
    assert f"jupyter-server=={metadata.version('jupyter-server')}" in held
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "colab_install.py"), "--dry-run"], capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0
    assert f"ipykernel=={metadata.version('ipykernel')}" in done.stdout and "--constraint" in done.stdout
