"""The project's own set-up files agree with each other."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _split(requirement: str) -> tuple[str, str]:
    match = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement)
    assert match, requirement
    return _norm(match.group(1)), match.group(2).replace(" ", "")


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _locked() -> dict[str, str]:
    pinned = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            pinned[_norm(name)] = version
    return pinned


def _declared(pyproject: dict) -> list[str]:
    declared = list(pyproject["project"]["dependencies"])
    for extra in pyproject["project"]["optional-dependencies"].values():
        declared += [r for r in extra if _split(r)[0] != _norm(pyproject["project"]["name"])]
    return declared


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def test_environment_installs_the_lock_and_this_project_with_pip(environment):
    pip_sections = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict)]
    assert pip_sections, "environment.yml needs a pip: section"
    assert "-r requirements.lock" in pip_sections[0], "the pip: section must install the lock (-r requirements.lock)"
    assert "-e ." in pip_sections[0], "the pip: section must install this project (-e .)"


def test_environment_python_is_the_locks_python(environment, pyproject):
    pythons = [d for d in environment["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert pythons, "environment.yml must pin python"
    version = pythons[0].split("=")[-1]
    locked_for = re.search(r"--python-version (\S+)", (ROOT / "Makefile").read_text())
    assert locked_for, "make lock names the Python it pins for"
    assert version == locked_for.group(1), f"environment.yml installs Python {version}; the lock is for {locked_for[1]}"
    floor = pyproject["project"]["requires-python"].removeprefix(">=")
    assert _version(version) >= _version(floor)


def test_conda_packages_are_the_locked_versions(environment):
    locked = _locked()
    for dep in environment["dependencies"]:
        if not isinstance(dep, str) or dep.split("=")[0] in {"python", "pip"}:
            continue
        name, spec = _split(dep)
        assert name in locked, f"environment.yml installs {name}, which requirements.lock does not pin"
        assert spec.lstrip("=") == locked[name], f"{name}: environment.yml says {spec!r}, the lock {locked[name]}"


def test_every_floor_is_the_tested_major_minor(pyproject):
    """A floor below what CI tests would promise versions nobody ran: floors are the lock's major.minor."""
    locked = _locked()
    wrong = []
    for requirement in _declared(pyproject):
        name, spec = _split(requirement)
        floor = re.match(r"(?:\[[^\]]*\])?>=([\d.]+)", spec)
        assert floor, f"{requirement}: declare a lower bound (>=)"
        lock = locked[name]
        if _version(floor.group(1)) > _version(lock) or _version(floor.group(1))[:2] != _version(lock)[:2]:
            wrong.append(f"{requirement} (locked {lock})")
    assert not wrong, f"floors that are not the locked major.minor: {wrong}"


#: Packages only the tests and the maintainers' tools use: never imported by the course or its servers.
TEST_ONLY = {"playwright", "pytest", "nbval", "jupytext", "yaml", "nbclient"}


def test_runtime_code_imports_no_test_only_package(pyproject):
    import ast

    runtime = {_split(r)[0] for r in pyproject["project"]["dependencies"]}
    assert not {_norm(name) for name in TEST_ONLY} & runtime
    found = []
    for path in [*(ROOT / "course").rglob("*.py"), *(ROOT / "server").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [f"{path.relative_to(ROOT)}: {name}" for name in names if name.split(".")[0] in TEST_ONLY]
    assert not found, f"runtime code imports test-only packages: {found}"


def test_lock_file_pins_every_declared_dependency(pyproject):
    pinned = _locked()
    missing = [r for r in _declared(pyproject) if _split(r)[0] not in pinned]
    assert not missing, f"requirements.lock lacks {missing}: run `make lock`"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_citation_file_is_valid_cff(pyproject):
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    missing = {"cff-version", "message", "title", "authors"} - set(citation)
    assert not missing, f"CITATION.cff lacks the required keys {missing}"
    assert citation["cff-version"] == "1.2.0"
    assert citation["authors"] and all({"name", "family-names"} & set(a) for a in citation["authors"])
    assert citation["version"] == pyproject["project"]["version"]
    assert set(citation["license"]) == {"MIT", "CC-BY-4.0"}
    for reference in citation.get("references", []):
        assert {"type", "title", "authors"} <= set(reference), reference


def test_licences_cover_code_and_lesson_text(pyproject):
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert pyproject["project"]["license"] == "MIT" and "LICENSE" in pyproject["project"]["license-files"]
    content = (ROOT / "LICENSE-CONTENT").read_text(encoding="utf-8")
    assert "Creative Commons Attribution 4.0 International" in content
    assert "Definitions." in content and "Interpretation." in content  # the whole legal code, first to last section
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "LICENSE-CONTENT" in readme and "CC BY 4.0" in readme and "](LICENSE)" in readme


def test_messaging_readme_documents_how_a_browser_picks_its_transport(tmp_path):
    from server.messaging import TRANSPORTS, create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'm.db'}", "SECRET_KEY": "test"})
    readme = (ROOT / "server" / "messaging" / "README.md").read_text(encoding="utf-8")
    assert "?transport=" in readme and "?transport=default" in readme
    assert all(f"| `{transport}`" in readme for transport in TRANSPORTS)
    interval_ms = app.config["NOTIFY_POLL_INTERVAL_MS"]
    assert f"**{interval_ms // 1000} s** by default (`NOTIFY_POLL_INTERVAL_MS={interval_ms}`)" in readme


def test_binder_installs_the_lock_and_a_pinned_proxy():
    requirements = (ROOT / "binder" / "requirements.txt").read_text().splitlines()
    assert "-r ../requirements.lock" in requirements
    proxy = [line for line in requirements if line.startswith("jupyter-server-proxy")]
    assert proxy and re.fullmatch(r"jupyter-server-proxy==[\d.]+", proxy[0]), "pin jupyter-server-proxy exactly"
    locked_for = re.search(r"--python-version (\S+)", (ROOT / "Makefile").read_text())
    assert locked_for and (ROOT / "binder" / "runtime.txt").read_text().strip() == f"python-{locked_for[1]}"
    post_build = ROOT / "binder" / "postBuild"
    assert os.access(post_build, os.X_OK), "binder/postBuild must be executable"
    assert "--no-deps -e ." in post_build.read_text()
