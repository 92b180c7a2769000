"""The public API of ``course``: the list a test holds, lazy at run time, visible to type checkers.

In the manner of httpx's exported-members test: adding or removing a public
name is a decision, so it fails here until this list changes with it.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import course

ROOT = Path(__file__).resolve().parents[2]

PUBLIC = [
    "Attempt",
    "Decision",
    "ErrorPolicy",
    "Failure",
    "Gate",
    "ListingError",
    "LogHook",
    "Pipeline",
    "RateLimiter",
    "Request",
    "Response",
    "Result",
    "RetryPolicy",
    "RunReport",
    "Stats",
    "StatsSnapshot",
    "ThrottledQueue",
    "Verdict",
    "WorkerPool",
    "fetch_each",
    "list_items",
    "list_then_fetch",
    "retry_after",
    "url_for",
]


def _type_checking_imports() -> dict[str, str]:
    """Name -> module of the imports under ``if TYPE_CHECKING:`` in course/__init__.py."""
    tree = ast.parse((ROOT / "course" / "__init__.py").read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom), ast.dump(statement)
                for alias in statement.names:
                    found[alias.asname or alias.name] = str(statement.module)
    return found


def test_the_public_names_are_exactly_the_list():
    assert sorted(course.__all__) == sorted(PUBLIC)


def test_type_checkers_see_every_public_name_from_its_home():
    seen = _type_checking_imports()
    assert sorted(seen) == sorted(PUBLIC), "the TYPE_CHECKING imports and __all__ must name the same things"
    assert seen == course._EXPORTS, "each name must be imported for checkers from where it is loaded at run time"


@pytest.mark.parametrize("name", PUBLIC)
def test_each_public_name_loads_and_is_public_in_its_module(name):
    module = importlib.import_module(course._EXPORTS[name])
    assert getattr(course, name) is getattr(module, name)
    assert name in module.__all__, f"{name} is exported by course but not in {module.__name__}.__all__"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'WorkerPoool'"):
        course.WorkerPoool  # noqa: B018


def test_importing_course_servers_does_not_import_aiohttp():
    code = "import sys, course, course.servers; print('aiohttp' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "False"


def test_mypy_sees_the_class_not_object(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import course\nreveal_type(course.WorkerPool)\nreveal_type(course.RateLimiter(10).acquire)\n")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), str(probe)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    revealed = [line for line in result.stdout.splitlines() if "Revealed type" in line]
    assert len(revealed) == 2, result.stdout + result.stderr
    assert "course.workers.WorkerPool" in revealed[0] and "builtins.object" not in revealed[0]
    assert "hold: bool" in revealed[1] and "Coroutine" in revealed[1], revealed[1]


def _notebook_imports() -> list[tuple[str, str, str]]:
    """(notebook, module, name) for every ``from course... import name`` in the lessons."""
    found = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
            try:
                tree = ast.parse("\n".join(lines))
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "course":
                    found += [(path.name, str(node.module), alias.name) for alias in node.names]
    return found


def test_every_name_a_notebook_imports_is_public():
    private = []
    for notebook, module_name, name in _notebook_imports():
        module = importlib.import_module(module_name)
        if hasattr(module, "__path__") and importlib.util.find_spec(f"{module_name}.{name}") is not None:
            continue  # a submodule (from course import notify)
        if name not in getattr(module, "__all__", ()):
            private.append(f"{notebook}: {module_name}.{name}")
    assert not private, "notebooks import names missing from their module's __all__: " + ", ".join(private)
