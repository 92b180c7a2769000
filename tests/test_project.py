"""The project's own set-up files agree with each other."""

from __future__ import annotations

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


def test_environment_installs_this_project_with_pip(environment):
    pip_sections = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict)]
    assert pip_sections, "environment.yml needs a pip: section"
    assert "-e ." in pip_sections[0], "the pip: section must install this project (-e .)"


def test_environment_python_satisfies_requires_python(environment, pyproject):
    pythons = [d for d in environment["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert pythons, "environment.yml must pin python"
    version = pythons[0].split("=")[-1]
    floor = pyproject["project"]["requires-python"].removeprefix(">=")
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    assert as_tuple(version) >= as_tuple(floor)


def test_conda_packages_have_the_same_lower_bounds_as_pyproject(environment, pyproject):
    wanted = dict(_split(r) for r in pyproject["project"]["dependencies"])
    for dep in environment["dependencies"]:
        if not isinstance(dep, str) or dep.split("=")[0] in {"python", "pip"}:
            continue
        name, spec = _split(dep)
        assert name in wanted, f"environment.yml installs {name}, which pyproject.toml does not list"
        assert spec == wanted[name], f"{name}: environment.yml says {spec!r}, pyproject.toml {wanted[name]!r}"


def test_lock_file_pins_every_declared_dependency(pyproject):
    pinned = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            pinned[_norm(name)] = version
    declared = list(pyproject["project"]["dependencies"])
    for extra in pyproject["project"]["optional-dependencies"].values():
        declared += extra
    missing = [r for r in declared if _split(r)[0] not in pinned]
    assert not missing, f"requirements.lock lacks {missing}: run `make lock`"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
