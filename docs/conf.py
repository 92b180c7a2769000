"""Sphinx configuration of the course website (``make site``).

The site is built from the repository root as the source folder, with this
folder as the configuration folder::

    sphinx-build -b html -c docs -W --keep-going . build/site

so the pages are the repository's own files where they are: ``README.md`` (the
landing page), the lessons ``notebooks/NN_*.ipynb`` with their committed
outputs (myst-nb; nothing is executed), ``INSTRUCTORS.md``, the servers'
READMEs and ``docs/*.md``. Their relative links (``../README.md``,
``02_notifications_polling.ipynb``, ``server/messaging/README.md``) are links
between pages of the site; a link to a repository file that is not a page
(``LICENSE``, a ``.py`` file) is copied into the site as a download.

The navigation (a hidden table of contents) is added to the README's text as
it is read, so the README stays a plain GitHub README; the lessons are found by
a glob, so a new ``notebooks/NN_*.ipynb`` appears without an edit here. The
build needs no network: the theme's fonts, icons and scripts come from the
installed Python packages, and the two things that would load from a CDN
(MathJax and the ipywidgets manager) are turned off.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

project = "From polling to rate-limited async clients"
author = "the course's authors"

extensions = ["myst_nb"]

# The landing page is the README (see _add_navigation); the site's index.html
# sends a browser there.
root_doc = "README"
html_additional_pages = {"index": "redirect-to-readme.html"}
templates_path = ["_templates"]

# The repository root is the source folder: read only the course's pages.
include_patterns = [
    "README.md",
    "INSTRUCTORS.md",
    "notebooks/[0-9][0-9]_*.ipynb",
    "server/*/README.md",
    "docs/*.md",
]
exclude_patterns = [".git", ".venv", "build", "learner", "**/node_modules", "**/.ipynb_checkpoints"]

# The lessons are read with their committed outputs, never executed.
nb_execution_mode = "off"
# Widgets (the progress bars) cannot run on a static page: the lessons are
# read by notebook_widgets.read_notebook (tools/), which draws each widget as plain HTML
# from the notebook's saved widget state (the finished bar); one it cannot
# draw shows its text form rather than an empty placeholder. The widget
# manager's scripts, which myst-nb would load from a CDN, are not used.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
nb_custom_formats = {".ipynb": "notebook_widgets.read_notebook"}
nb_ipywidgets_js: dict[str, dict[str, str]] = {}
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
# A notebook's `text/markdown` output is shown as Markdown (the exercises'
# grey "not answered yet" lines are inline HTML in it).
nb_render_markdown_format = "myst"

# Headings get anchors, so `README.md#scenario` style links resolve.
myst_heading_anchors = 4
myst_enable_extensions = ["html_image"]

# No MathJax: no page has math (the outputs' text/latex has a text/html or
# text/plain twin that is shown instead), and Sphinx would load MathJax from a
# CDN. Should a page ever get math, it would point at this missing local file
# and tests/test_site.py's link check says so.
mathjax_path = "mathjax-is-not-bundled.js"

# Warnings are errors (-W): none is suppressed.

html_theme = "sphinx_book_theme"
html_title = project
html_theme_options: dict[str, Any] = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
    # No launch buttons (Binder, Colab) or repository links: nothing remote.
    "use_download_button": True,
    "use_fullscreen_button": False,
}
# The download button offers each page's source: a lesson's .ipynb with its
# outputs, or the Markdown file.
html_copy_source = True
html_show_sourcelink = False
html_last_updated_fmt = None

# The navigation, added to the README's text as Sphinx reads it. Entries are
# relative to the README, i.e. to the repository root; the globs match
# include_patterns, so every page read is in the navigation (a page that is
# not would be a warning, and so an error).
NAVIGATION = """

```{toctree}
:hidden:
:caption: Lessons
:glob:

notebooks/[0-9][0-9]_*
```

```{toctree}
:hidden:
:caption: Reference
:glob:

INSTRUCTORS
server/*/README
docs/*
```
"""


def _add_navigation(app: Any, docname: str, source: list[str]) -> None:
    """Append the site's table of contents to the README (the root page)."""
    if docname == root_doc:
        source[0] += NAVIGATION


def setup(app: Any) -> dict[str, bool]:
    app.connect("source-read", _add_navigation)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
