"""The committed notebooks as a class finds them: saved as JupyterLab saves them, progress bars finished.

Opening, presenting and saving a lesson in JupyterLab must leave ``git
status`` clean, so ``tools/nbtool.py`` writes every notebook byte for byte as
JupyterLab would; a real Jupyter server checks that (each lesson read and
saved back through its contents API, after the browser's JSON round trip in
``node``). A lesson opened before it runs, or read where widgets do not
render (GitHub, the course site, the slide decks), shows each progress bar's
text: it must show the bar as the run finished it, never ``0%``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import nbtool
import pytest
from nbval.plugin import get_sanitize_patterns

from course.browser import CHROMIUM, CHROMIUM_ARGS
from course.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NODE = shutil.which("node")
RERUN = "re-execute them: PYTHONPATH=$PWD python tools/nbtool.py run notebooks/NN_name.ipynb"



#: tqdm's text line: "label: 40%|████      | 2/5 [...]".
BAR_TEXT = re.compile(r"(\d{1,3})%\|[^|\n]*\|\s*(\d+)/(\d+)")


def unfinished_bars(nb: nbformat.NotebookNode) -> list[str]:
    """The text of each progress bar output in ``nb`` that does not show a finished bar."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/plain", "")
            for match in BAR_TEXT.finditer(text):
                percent, done, total = (int(group) for group in match.groups())
                if percent != 100 or done != total:
                    found.append(text.strip())
    return found


# -- the committed notebooks ----------------------------------------------------


def test_no_committed_output_shows_an_unfinished_progress_bar():
    stalled = {path.name: bars for path in LESSONS if (bars := unfinished_bars(nbformat.read(path, as_version=4)))}
    assert not stalled, (
        f"{len(stalled)} notebooks show a progress bar that looks stalled ({', '.join(sorted(stalled))}); "
        f"{RERUN}. First of each: " + "; ".join(f"{name}: {bars[0]!r}" for name, bars in sorted(stalled.items()))
    )


def test_committed_notebooks_are_saved_as_jupyterlab_saves_them():
    differ = [
        path.name
        for path in LESSONS
        if nbtool.notebook_text(nbformat.reads(text := path.read_text(encoding="utf-8"), as_version=4)) != text
    ]
    assert not differ, (
        f"JupyterLab would rewrite {', '.join(differ)} on its first save (e.g. widget state 3.0 -> 3); {RERUN}"
    )


# -- the writer ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (3.0, 3),
        (-0.0, 0),
        (1e16, 10**16),
        (0.5, 0.5),
        (1e-7, 1e-7),
        (1e21, 1e21),  # JavaScript writes "1e+21": Python reads a float back
        ({"max": 300.0, "rows": [1.0, 2.5, "3.0", True]}, {"max": 300, "rows": [1, 2.5, "3.0", True]}),
    ],
)
def test_numbers_are_written_as_javascript_writes_them(value, written):
    result = nbtool.as_javascript_writes(value)
    assert result == written
    assert json.dumps(result) == json.dumps(written)  # 3 and 3.0 are equal in Python, not in the file


def test_the_text_of_a_finished_or_stopped_bar_comes_from_its_saved_widget(tmp_path, capfd):
    path = tmp_path / "bars.ipynb"
    nbformat.write(
        nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_code_cell("from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='rounds'): pass"),
                nbformat.v4.new_code_cell(
                    "for n in tqdm(range(5), desc='stopped'):\n    if n == 2:\n        break\nprint('after the loop')"
                ),
            ]
        ),
        path,
    )
    nbtool.run(path, timeout=120)

    nb = nbformat.read(path, as_version=4)
    finished = nb.cells[0].outputs[0].data["text/plain"]
    assert finished.startswith("rounds: 100%|██████████| 3/3 ["), finished
    stopped = nb.cells[1].outputs[0].data["text/plain"]
    assert stopped.startswith("stopped:  40%|████      | 2/5 ["), stopped
    assert unfinished_bars(nb) == [stopped]
    assert path.read_text(encoding="utf-8") == nbtool.notebook_text(nb)
    assert '"max": 5,' in path.read_text(encoding="utf-8")  # not 5.0: the widget state as a browser saves it
    # The kernel was given CurveZMQ keys, so it did not warn about plain-text TCP.
    assert "without encryption" not in capfd.readouterr().err


# -- a real JupyterLab save: its server's contents API and the browser's JSON; then JupyterLab itself --------


@dataclass
class JupyterServer:
    url: str
    token: str
    root: Path

    def request(self, method: str, path: str, body: bytes | None = None, api: str = "contents") -> bytes:
        request = urllib.request.Request(
            f"{self.url}/api/{api}/{path}",
            data=body,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read()


@pytest.fixture(scope="module")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    home = tmp_path_factory.mktemp("jupyter-home")
    root = tmp_path_factory.mktemp("jupyter-root")
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
    }
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}", "--NotebookNotary.db_file=:memory:",
        "--MappingKernelManager.transport_encryption=auto",
    ]  # fmt: skip
    if os.getuid() == 0:
        command.append("--allow-root")
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = JupyterServer(f"http://127.0.0.1:{port}", token, root)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (home / "server.log").read_text()
            try:
                server.request("GET", "")
                break
            except OSError:
                assert time.monotonic() < deadline, f"no answer:\n{(home / 'server.log').read_text()}"
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def save_as_jupyterlab_does(server: JupyterServer, name: str) -> None:
    """Open ``name`` and save it back, as JupyterLab does: GET it, JSON.parse, JSON.stringify, PUT it."""
    assert NODE is not None
    fetched = server.request("GET", f"{name}?type=notebook&content=1")
    browser = subprocess.run(
        [NODE, "-e", (
            "let s = ''; process.stdin.on('data', d => s += d).on('end', () => {"
            " const model = JSON.parse(s);"
            " process.stdout.write(JSON.stringify({type: 'notebook', format: 'json', content: model.content})); });"
        )],
        input=fetched, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    server.request("PUT", name, browser.stdout)


def widget_notebook() -> nbformat.NotebookNode:
    """A notebook with what a browser writes differently: whole floats, a tiny and a huge float, non-ASCII text."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("Größe — ✓"), nbformat.v4.new_code_cell("1")])
    nb.metadata["widgets"] = {
        nbtool.WIDGET_STATE: {
            "state": {"m": {"state": {"max": 3.0, "min": -0.0, "big": 1e16, "step": 0.1, "tiny": 1e-7}}},
            "version_major": 2,
            "version_minor": 0,
        }
    }
    return nb


@pytest.mark.slow
@pytest.mark.skipif(NODE is None, reason="needs node (a browser's JSON.parse / JSON.stringify)")
@pytest.mark.parametrize("name", ["widget_numbers.ipynb", *(path.name for path in LESSONS)])
def test_a_save_in_jupyterlab_changes_no_byte_of_what_nbtool_writes(jupyter_server, name):
    nb = widget_notebook() if name == "widget_numbers.ipynb" else nbformat.read(ROOT / "notebooks" / name, as_version=4)
    path = jupyter_server.root / name
    nbtool.write_notebook(nb, path)
    written = path.read_bytes()

    save_as_jupyterlab_does(jupyter_server, name)

    saved = path.read_bytes()
    assert saved == written, f"JupyterLab's save rewrote {name} ({len(written)} -> {len(saved)} bytes)"


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: `make chromium` installs it")
@pytest.mark.parametrize(
    ("name", "key"),
    [
        *((path.name, "Control+s") for path in LESSONS),
        ("03_push_or_poll.ipynb", "Alt+r"),  # jupyterlab-rise: save, then show the slides beside the notebook
    ],
)
async def test_opening_and_saving_a_lesson_in_jupyterlab_changes_no_byte(jupyter_server, name, key):
    """JupyterLab in headless Chromium opens the lesson (its kernel starts), Ctrl+S saves it (or Alt+R
    presents it, which saves it first): the file keeps every byte."""
    from playwright.async_api import async_playwright

    path = jupyter_server.root / f"lab-{key[0]}-{name}"
    nbtool.write_notebook(nbformat.read(ROOT / "notebooks" / name, as_version=4), path)
    written, modified = path.read_bytes(), path.stat().st_mtime_ns
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 720})
            workspace = f"{jupyter_server.url}/lab/workspaces/{path.stem}/tree/{path.name}"  # only this notebook open
            await page.goto(f"{workspace}?reset&token={jupyter_server.token}", timeout=120_000)
            await page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            await page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
            await page.click(".jp-Notebook .jp-Cell >> nth=0")
            await page.keyboard.press(key)
            for _ in range(300):
                if path.stat().st_mtime_ns != modified:
                    break
                await page.wait_for_timeout(100)
            await page.wait_for_timeout(500)  # the write is atomic, but let it finish
        finally:
            await browser.close()
            for session in json.loads(jupyter_server.request("GET", "", api="sessions")):
                jupyter_server.request("DELETE", session["id"], api="sessions")
    assert path.stat().st_mtime_ns != modified, "JupyterLab did not save the notebook"
    saved = path.read_bytes()
    assert saved == written, f"JupyterLab's save rewrote {name} ({len(written)} -> {len(saved)} bytes)"


def test_nbval_compares_a_fresh_bar_with_the_committed_finished_one():
    """nbval sees the bar's first text (0%); the committed one is the finished bar: the sanitize file equates them."""
    rules = get_sanitize_patterns((ROOT / "tests" / "nbval_sanitize.cfg").read_text())  # as nbval reads it

    def sanitize(text: str) -> str:
        for regex, replace in rules:
            text = re.sub(regex, replace, text)
        return text

    fresh = "rounds:   0%|          | 0/3 [00:00<?, ?it/s]"
    finished = "rounds: 100%|██████████| 3/3 [00:11<00:00,  3.75s/it]"
    assert sanitize(fresh) == sanitize(finished), (
        "add a [progress-bars] rule to tests/nbval_sanitize.cfg (regex: \\s*\\d{1,3}%\\|[^|\\n]*\\|[^\\n]*)"
    )
    assert sanitize("rounds: 3 of 3") != sanitize("rounds: 2 of 3")  # and leaves other text alone
