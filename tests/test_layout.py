"""The package layout keeps its direction: ``course`` (the client side) drives ``server``, never the reverse.

``server/`` is what a learner's client talks to over HTTP; it must run on its
own, so no module of it may import anything from ``course/``. (Benchmarks
that drive the servers live on the client side, in ``course.benchmarks``.)
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def course_imports(source: str) -> list[str]:
    """Every ``import course...`` / ``from course... import`` in ``source``, as written."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {alias.name}" for alias in node.names if alias.name.split(".")[0] == "course"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "course":
            found.append(f"from {node.module} import ...")
    return found


def test_the_scan_finds_every_form_of_import_from_course() -> None:
    source = (
        "import json, course\n"
        "import course.servers as servers\n"
        "from course import notify\n"
        "from course.stats import quantile\n"
        "def later():\n"
        "    from course.servers import start_mock_api\n"
        "if True:\n"
        "    import coursework, server.course\n"  # other names that merely contain 'course'
        "from . import course\n"  # a relative import: server's own module of that name
    )
    assert course_imports(source) == [
        "import course",
        "import course.servers",
        "from course import ...",
        "from course.stats import ...",
        "from course.servers import ...",
    ]


def test_server_imports_nothing_from_course() -> None:
    modules = sorted((ROOT / "server").rglob("*.py"))
    assert len(modules) > 10, "the scan must see the server package"
    offenders = {
        str(path.relative_to(ROOT)): imports
        for path in modules
        if (imports := course_imports(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, (
        f"server/ must not import course/ (course drives server, not the reverse): {offenders}. "
        "Move code that drives a server from outside to course/ (e.g. course/benchmarks/)."
    )
