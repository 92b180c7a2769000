"""Install what the lessons import into a Google Colab runtime, leaving Colab's Jupyter as it is.

    python tools/colab_install.py [--dry-run]

The install cell at the top of each lesson (``tools/nbtool.py colab-cell``)
runs this once, on Colab only, after cloning the course. It installs the
course's runtime dependencies (``pyproject.toml``) at the versions
``requirements.lock`` pins, except the ones Colab's own notebook front end
provides (IPython, ipywidgets), and it holds every Jupyter package already
installed (ipykernel, jupyter-server, tornado, ...) at its installed version
with a pip constraints file: pip then cannot upgrade the kernel under the
running notebook (Colab warns that this may crash the runtime); a dependency
that would need another version is an error, not a silent upgrade.

Only the standard library is used: this runs before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Runtime dependencies that the notebook front end itself provides: Colab's versions are used.
FRONT_END = {"ipython", "ipywidgets"}
#: The Jupyter packages a notebook runtime already has; installed ones are held at their version.
HELD = (
    "ipykernel", "ipython", "ipywidgets", "comm", "debugpy", "jupyter-client", "jupyter-core",
    "jupyter-server", "jupyterlab", "jupyterlab-widgets", "nbclient", "nbconvert", "nbformat",
    "notebook", "pyzmq", "tornado", "traitlets", "widgetsnbextension",
)  # fmt: skip


def normalize(name: str) -> str:
    """A package name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path) -> dict[str, str]:
    """``requirements.lock`` as {normalized name: pinned version}."""
    pins = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==", 1)
            pins[normalize(name)] = version.strip()
    return pins


def runtime_requirements(root: Path = ROOT) -> list[str]:
    """The runtime dependencies, minus the front end's, pinned as the lock pins them (extras kept)."""
    pins = locked_versions(root / "requirements.lock")
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = []
    for requirement in project["dependencies"]:
        match = re.match(r"\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?", requirement)
        if match is None:
            raise ValueError(f"pyproject.toml: cannot read the requirement {requirement!r}")
        name, extras = normalize(match.group(1)), match.group(2) or ""
        if name in FRONT_END:
            continue
        if name not in pins:
            raise ValueError(f"requirements.lock does not pin {name}: run `make lock`")
        wanted.append(f"{name}{extras}=={pins[name]}")
    return wanted


def held_constraints() -> list[str]:
    """``name==version`` for each Jupyter package installed in this Python."""
    held = []
    for name in HELD:
        try:
            held.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return held


def pip_command(constraints_file: Path, root: Path = ROOT) -> list[str]:
    """The pip command: the runtime requirements, the installed Jupyter held by ``constraints_file``."""
    return [sys.executable, "-m", "pip", "install", "--quiet", "--constraint", str(constraints_file),
            *runtime_requirements(root)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the constraints and the pip command only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        constraints = Path(folder) / "jupyter-as-installed.txt"
        constraints.write_text("\n".join(held_constraints()) + "\n", encoding="utf-8")
        command = pip_command(constraints)
        if args.dry_run:
            print(constraints.read_text(encoding="utf-8"), " ".join(command), sep="")
            return 0
        done = subprocess.run(command, check=False)
    if done.returncode != 0:
        print("colab_install: pip could not install the course without changing Colab's Jupyter (above).",
              file=sys.stderr)  # fmt: skip
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
