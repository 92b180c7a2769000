"""The course website (``make site``): built offline, every link works, every plot shows.

The site is built once per module, as ``make site`` builds it (Sphinx with the
configuration in ``docs/``, warnings as errors) but into a temporary folder,
with every proxy variable pointing at a closed local port so that anything
that tries to download during the build fails. The built HTML is then read
with ``html.parser``: every local link, script, stylesheet and image must
name a built file (and an ``id`` on that page for a ``#fragment``), nothing
may load from another host, each lesson's page must show every image its
notebook's committed outputs hold, and its progress bars as they finished.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import notebook_widgets
import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
WIDGET_VIEW = notebook_widgets.WIDGET_VIEW
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
# Every proxy variable a downloader may read, pointing at port 9 (discard) on
# this machine, where nothing listens: a download attempt fails at once.
UNREACHABLE_PROXY = "http://127.0.0.1:9"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")

pytestmark = pytest.mark.slow


@dataclass
class Reference:
    """One URL a page uses: the tag and attribute it sits in, and how it is used."""

    tag: str
    attribute: str
    url: str
    rel: str = ""

    @property
    def is_asset(self) -> bool:
        """True when a browser loads it with the page (not a link a reader follows)."""
        if self.tag in ("script", "img", "source", "iframe", "video", "audio", "embed"):
            return True
        return self.tag == "link" and any(
            kind in self.rel.split() for kind in ("stylesheet", "preload", "icon", "modulepreload", "prefetch")
        )


@dataclass
class Page:
    """What the link check needs from one built HTML page."""

    path: Path
    references: list[Reference] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    inline_code: list[str] = field(default_factory=list)
    progress_bars: list[tuple[float, float]] = field(default_factory=list)


class _PageParser(HTMLParser):
    def __init__(self, page: Page) -> None:
        super().__init__(convert_charrefs=True)
        self.page = page
        self._inline: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        for name in ("id", "name") if tag == "a" else ("id",):
            if values.get(name):
                self.page.ids.add(values[name])
        for attribute in ("href", "src"):
            if attribute in values:
                self.page.references.append(Reference(tag, attribute, values[attribute], values.get("rel", "")))
        if tag == "meta" and values.get("http-equiv", "").lower() == "refresh":
            target = re.search(r"url=(.+)$", values.get("content", ""), flags=re.IGNORECASE)
            if target:
                self.page.references.append(Reference(tag, "content", target.group(1).strip()))
        if tag == "progress":
            self.page.progress_bars.append((float(values.get("value") or 0), float(values.get("max") or 1)))
        if tag in ("script", "style") and "src" not in values:
            self._inline = ""

    def handle_data(self, data: str) -> None:
        if self._inline is not None:
            self._inline += data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._inline is not None:
            self.page.inline_code.append(self._inline)
            self._inline = None


def read_page(path: Path) -> Page:
    page = Page(path)
    parser = _PageParser(page)
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return page


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built as ``make site`` builds it, with the network out of reach."""
    work = tmp_path_factory.mktemp("site")
    out = work / "html"
    env = {**os.environ, **dict.fromkeys(PROXY_VARIABLES, UNREACHABLE_PROXY)}
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-c", "docs", "-W", "--keep-going", "-q"]
    command += ["-d", str(work / "doctrees"), ".", str(out)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"the site build failed:\n{result.stdout}\n{result.stderr}"
    return out


@pytest.fixture(scope="module")
def pages(site: Path) -> dict[Path, Page]:
    """Every built HTML page (the theme's own templates under _static left out)."""
    built = [path for path in site.rglob("*.html") if "_static" not in path.relative_to(site).parts]
    return {path.resolve(): read_page(path) for path in built}


def _local_target(page: Page, url: str, site: Path) -> tuple[Path, str] | None:
    """The file (and fragment) a local URL names, or None for a URL that is not a file of the site."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith("//"):
        return None
    if not parts.path:
        return page.path.resolve(), unquote(parts.fragment)
    target = (page.path.parent / unquote(parts.path)).resolve()
    if target.is_dir():
        target = target / "index.html"
    return target, unquote(parts.fragment)


def test_site_has_a_landing_page_and_a_page_per_lesson(site: Path, pages: dict[Path, Page]) -> None:
    """index.html leads to the README; each lesson has a page that the README's navigation links to."""
    assert LESSONS, "no lessons found in notebooks/"
    assert (site / "index.html").is_file(), "the site has no index.html"
    landing = pages[(site / "index.html").resolve()]
    targets = {_local_target(landing, ref.url, site) for ref in landing.references if ref.tag in ("meta", "a")}
    assert ((site / "README.html").resolve(), "") in targets, "index.html does not lead to the README's page"

    readme = pages[(site / "README.html").resolve()]
    assert "From polling to rate-limited async clients" in readme.path.read_text(encoding="utf-8")
    linked = {
        target
        for ref in readme.references
        if ref.tag == "a" and (target := _local_target(readme, ref.url, site)) is not None
    }
    for notebook in LESSONS:
        lesson_page = (site / "notebooks" / f"{notebook.stem}.html").resolve()
        assert lesson_page in pages, f"no page for {notebook.name}"
        assert (lesson_page, "") in linked, f"the README's page does not link to {notebook.name}'s page"


def test_every_local_link_resolves_to_a_built_file_and_anchor(site: Path, pages: dict[Path, Page]) -> None:
    broken: list[str] = []
    for page in pages.values():
        for ref in page.references:
            if ref.url.startswith(("mailto:", "javascript:", "data:")) or ref.url == "#":
                continue
            local = _local_target(page, ref.url, site)
            if local is None:
                continue
            target, fragment = local
            where = f"{page.path.relative_to(site)}: <{ref.tag} {ref.attribute}={ref.url!r}>"
            if not target.is_relative_to(site.resolve()):
                broken.append(f"{where} leaves the site")
            elif not target.is_file():
                broken.append(f"{where} names no built file")
            elif fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else read_page(target).ids
                if fragment not in ids:
                    broken.append(f"{where}: no id {fragment!r} on that page")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_no_page_loads_anything_from_another_host(site: Path, pages: dict[Path, Page]) -> None:
    """Scripts, stylesheets, fonts and images all come from the site itself (it works offline)."""
    remote_url = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"]?|src\s*=\s*['"]|require\.config)\s*(?:https?:)?//""")
    remote: list[str] = []
    for page in pages.values():
        name = page.path.relative_to(site)
        for ref in page.references:
            parts = urlsplit(ref.url)
            if ref.is_asset and (parts.scheme in ("http", "https") or ref.url.startswith("//")):
                remote.append(f"{name}: <{ref.tag} {ref.attribute}={ref.url!r}>")
        remote += [f"{name}: inline code loads from a URL" for code in page.inline_code if remote_url.search(code)]
    for stylesheet in site.rglob("*.css"):
        text = stylesheet.read_text(encoding="utf-8", errors="replace")
        remote += [f"{stylesheet.relative_to(site)}: {hit.group(0)!r}" for hit in remote_url.finditer(text)]
    assert not remote, "remote assets:\n" + "\n".join(remote)


def _output_images(notebook: Path) -> Counter[str]:
    """sha256 of every image in the notebook's committed outputs."""
    digests: Counter[str] = Counter()
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            mime = next((kind for kind in IMAGE_TYPES if kind in data), None)
            if mime is None:
                continue
            content = "".join(data[mime]) if isinstance(data[mime], list) else data[mime]
            raw = content.encode() if mime == "image/svg+xml" else base64.b64decode(content)
            digests[hashlib.sha256(raw).hexdigest()] += 1
    return digests


@pytest.mark.parametrize("notebook", LESSONS, ids=[path.stem for path in LESSONS])
def test_lesson_page_shows_every_plot_of_its_notebook(notebook: Path, site: Path, pages: dict[Path, Page]) -> None:
    """Each image output of the notebook is an <img> on its page, showing the same bytes."""
    page = pages[(site / "notebooks" / f"{notebook.stem}.html").resolve()]
    shown: Counter[str] = Counter()
    for ref in page.references:
        if ref.tag == "img" and (local := _local_target(page, ref.url, site)) and local[0].is_file():
            shown[hashlib.sha256(local[0].read_bytes()).hexdigest()] += 1
    expected = _output_images(notebook)
    missing = expected - shown
    assert not missing, (
        f"{notebook.name}: {sum(missing.values())} of its {sum(expected.values())} image outputs are not on its page"
    )


def _saved_progress_bars(notebook: Path) -> list[tuple[float, float]]:
    """(value, max) of every progress bar in the notebook's widget outputs, from its saved widget state."""
    content = json.loads(notebook.read_text(encoding="utf-8"))
    models = content["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    models = models.get("state", {})
    bars: list[tuple[float, float]] = []

    def collect(model_id: str) -> None:
        model = models.get(model_id.removeprefix("IPY_MODEL_"), {})
        state = model.get("state", {})
        if model.get("model_name") in ("FloatProgressModel", "IntProgressModel"):
            low = state.get("min", 0)
            bars.append((state.get("value", 0) - low, state.get("max", 100) - low))
        for child in state.get("children", []):
            collect(child)

    for cell in content["cells"]:
        for output in cell.get("outputs", []):
            if WIDGET_VIEW in output.get("data", {}):
                collect(output["data"][WIDGET_VIEW]["model_id"])
    return bars


@pytest.mark.parametrize("notebook", LESSONS, ids=[path.stem for path in LESSONS])
def test_lesson_page_shows_progress_bars_as_they_finished(notebook: Path, site: Path, pages: dict[Path, Page]) -> None:
    """A widget progress bar is drawn from the notebook's saved widget state, not its first text form (0%)."""
    page = pages[(site / "notebooks" / f"{notebook.stem}.html").resolve()]
    missing = Counter(_saved_progress_bars(notebook)) - Counter(page.progress_bars)
    assert not missing, f"{notebook.name}: progress bars (value, max) not drawn on its page: {sorted(missing)}"


def _notebook_with_widget(models: Mapping[str, object]) -> dict[str, object]:
    output = {
        "output_type": "display_data",
        "metadata": {},
        "data": {
            "text/plain": "fetch:   0%|   | 0/4",
            WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": "bar"},
        },
    }
    cell = {
        "id": "widget",
        "cell_type": "code",
        "metadata": {},
        "source": "",
        "execution_count": 1,
        "outputs": [output],
    }
    state = {"application/vnd.jupyter.widget-state+json": {"state": models, "version_major": 2, "version_minor": 0}}
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {"widgets": state}, "cells": [cell]}


def test_widgets_are_drawn_from_saved_state_and_undrawable_ones_keep_their_text() -> None:
    models = {
        "bar": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_label", "IPY_MODEL_progress"]}},
        "label": {"model_name": "HTMLModel", "state": {"value": "fetch: 100% &lt;done&gt;"}},
        "progress": {"model_name": "IntProgressModel", "state": {"value": 5, "min": 1, "max": 5}},
    }
    drawn = notebook_widgets.read_notebook(json.dumps(_notebook_with_widget(models)))
    data = drawn.cells[0].outputs[0].data
    assert WIDGET_VIEW not in data
    assert "fetch: 100% &lt;done&gt;" in data["text/html"]
    assert '<progress value="4" max="4">' in data["text/html"]
    assert "widgets" not in drawn.metadata, "the saved state would be embedded in the page for nothing"

    for unknown in ({}, {**models, "progress": {"model_name": "SliderModel", "state": {}}}):
        kept = notebook_widgets.read_notebook(json.dumps(_notebook_with_widget(unknown))).cells[0].outputs[0].data
        assert WIDGET_VIEW in kept and "text/html" not in kept, "an undrawable widget should keep its text form"
