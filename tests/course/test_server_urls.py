"""What course.servers tells a person: the URL to open in a browser, and what to do when a port is taken."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from course.servers import ServerHandle, proxied_url

ROOT = Path(__file__).resolve().parents[2]


# -- browser_url: 127.0.0.1 is the learner's own machine only outside a JupyterHub (Binder) ------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"JUPYTERHUB_SERVICE_PREFIX": ""}, None),
        ({"JUPYTERHUB_SERVICE_PREFIX": "/user/alice-abc12/"}, "/user/alice-abc12/proxy/5000/"),
        ({"JUPYTERHUB_SERVICE_PREFIX": "/jhub/user/bob"}, "/jhub/user/bob/proxy/5000/"),
        (
            {"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/", "JUPYTERHUB_PUBLIC_URL": "https://hub.example.org/"},
            "https://hub.example.org/user/alice/proxy/5000/",
        ),
        (
            {"JUPYTERHUB_SERVICE_PREFIX": "/jhub/user/alice/", "JUPYTERHUB_HOST": "https://hub.example.org/jhub/"},
            "https://hub.example.org/jhub/user/alice/proxy/5000/",
        ),
        ({"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/", "JUPYTERHUB_HOST": ""}, "/user/alice/proxy/5000/"),
    ],
)
def test_proxied_url_under_a_jupyterhub(environ, expected):
    assert proxied_url(5000, environ) == expected


def test_browser_url_is_the_proxied_one_on_binder_and_url_elsewhere(monkeypatch):
    handle = ServerHandle("messaging app", "127.0.0.1", 5000)
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    assert handle.browser_url == handle.url == "http://127.0.0.1:5000"
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/carol/")
    monkeypatch.delenv("JUPYTERHUB_PUBLIC_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_HOST", raising=False)
    assert handle.browser_url == "/user/carol/proxy/5000/"
    assert handle.url == "http://127.0.0.1:5000"  # code in the kernel still talks to the server directly


# -- a taken port: the message names the variable that moves the course's port ----------------


def _start_on_default_port(kind: str, variable: str, port: int) -> subprocess.CompletedProcess[str]:
    """A fresh Python (the port variable is read at import) that starts ``kind`` on its default port."""
    code = (
        "import course.servers as s\n"
        f"try:\n    s.start_{kind}()\n"
        "except s.ServerStartError as exc:\n    print(exc)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT), variable: str(port)},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("kind", "variable", "name"),
    [("mock_api", "COURSE_MOCK_API_PORT", "mock API"), ("messaging_app", "COURSE_MESSAGING_PORT", "messaging app")],
)
def test_taken_default_port_says_which_variable_moves_it(kind, variable, name):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        done = _start_on_default_port(kind, variable, port)
    assert f"Port {port} on 127.0.0.1 is taken by something that is not a {name}" in done.stdout, done
    assert f"set the environment variable {variable} (e.g. {variable}={port + 1} make lab)" in done.stdout
    assert "restart the kernel" in done.stdout and "port=None" in done.stdout
