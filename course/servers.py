"""Start the course's servers as separate processes, from a notebook or a test.

A server runs in its own process so that memory and CPU measured in the
notebook belong to the client alone. ``start_server`` launches
``python -m <module> --host H --port P ...``, waits until the server answers,
and registers it to be stopped when the Python process (the kernel) exits.

Calling a ``start_*`` function twice is safe: if a server of the right kind
already answers on that port it is reused, whether this process started it or
not. Pass ``port=None`` to get a free port (tests do this so that parallel
runs never fight over one port).

    >>> api = start_mock_api()              # http://127.0.0.1:8080, the lesson's port
    >>> api.url
    'http://127.0.0.1:8080'
    >>> api.stop()
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from course.mockapi_control import ControlError, MockAPIControl

__all__ = [
    "FAST_HASH",
    "ServerHandle",
    "ServerStartError",
    "free_port",
    "json_identity",
    "proxied_url",
    "start_messaging_app",
    "start_mock_api",
    "start_server",
    "stop_all",
]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
# The lesson's ports. An environment variable moves them, e.g. when two
# courses (or two maintainers executing notebooks) share one machine.
MOCK_API_PORT_VARIABLE = "COURSE_MOCK_API_PORT"
MESSAGING_PORT_VARIABLE = "COURSE_MESSAGING_PORT"
MOCK_API_PORT = int(os.environ.get(MOCK_API_PORT_VARIABLE, "8080"))
MESSAGING_PORT = int(os.environ.get(MESSAGING_PORT_VARIABLE, "5000"))

#: A cheap password hash for the messaging app's simulated users (its
#: ``PASSWORD_HASH_METHOD`` setting): the default, scrypt, costs ~50 ms a
#: login, and lessons, tests and benchmarks log users in by the dozen.
#: Never use it for real accounts.
FAST_HASH = "pbkdf2:sha256:1000"


class ServerStartError(RuntimeError):
    """A server did not come up; the message carries what it printed."""


@dataclass
class ServerHandle:
    """A running server: where it answers and, if we started it, its process."""

    name: str
    host: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: How to tell that this kind of server answers (the ``identify`` of start_server).
    probe: Callable[[str], dict[str, Any] | None] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Where code in this machine (the kernel, the tests) reaches the server."""
        return f"http://{self.host}:{self.port}"

    @property
    def browser_url(self) -> str:
        """Where a person opens the server in a browser: ``url``, or on Binder / a JupyterHub the
        path through the Jupyter server's proxy (jupyter-server-proxy), since 127.0.0.1 there is the
        container's, not the learner's machine. Print this one; send requests to ``url``."""
        return proxied_url(self.port) or self.url

    @property
    def owned(self) -> bool:
        """True if this Python process started the server (and will stop it)."""
        return self.process is not None

    @property
    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        if self.probe is not None:  # a control route: not counted, never faulted
            return self.probe(self.url) is not None
        return _answers(self.url + "/")

    def output(self, last_lines: int = 40) -> str:
        """The tail of what the server printed (only for servers we started)."""
        return _tail(self.log_path, last_lines)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server if we started it; a reused server is left running."""
        if self.process is None:
            log.info("%s at %s was not started here; leaving it running", self.name, self.url)
            return
        _terminate(self.process, timeout)
        _REGISTRY.pop((self.host, self.port), None)

    def __repr__(self) -> str:
        state = "running" if self.process is None or self.process.poll() is None else "stopped"
        origin = "started here" if self.owned else "reused"
        return f"<{self.name} {self.url} ({state}, {origin})>"


# Servers this process started, keyed by (host, port). Process-wide on
# purpose: they must be found again by a later cell and stopped at exit.
_REGISTRY: dict[tuple[str, int], ServerHandle] = {}


def proxied_url(port: int, environ: Mapping[str, str] | None = None) -> str | None:
    """The browser's way to ``port`` through jupyter-server-proxy when Jupyter runs under a
    JupyterHub (Binder is one), else None.

    JupyterHub gives the single-user server (and so each kernel) its URL prefix in
    ``JUPYTERHUB_SERVICE_PREFIX``, e.g. ``/user/alice/``; the proxy serves
    ``<prefix>proxy/<port>/``. With ``JUPYTERHUB_PUBLIC_URL`` (or ``JUPYTERHUB_HOST``)
    set the URL is absolute; otherwise it is a path on the site that serves JupyterLab.
    """
    environ = os.environ if environ is None else environ
    prefix = environ.get("JUPYTERHUB_SERVICE_PREFIX", "").strip()
    if not prefix:
        return None
    path = "/" + prefix.strip("/") + f"/proxy/{port}/"
    site = urlsplit((environ.get("JUPYTERHUB_PUBLIC_URL") or environ.get("JUPYTERHUB_HOST") or "").strip())
    if site.scheme in ("http", "https") and site.netloc:  # the prefix already holds the hub's base path
        return f"{site.scheme}://{site.netloc}{path}"
    return path


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_server(
    name: str,
    module: str,
    args: Sequence[str] = (),
    *,
    host: str = DEFAULT_HOST,
    port: int | None,
    identify: Callable[[str], dict[str, Any] | None],
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    reuse: bool = True,
    port_variable: str | None = None,
) -> ServerHandle:
    """Run ``python -m module --host host --port port *args`` and wait for it.

    ``identify(url)`` returns the server's self-description (a dict) when the
    right kind of server answers at ``url``, else None. It decides both when a
    new server is ready and whether an existing one can be reused.
    ``port=None`` picks a free port. ``port_variable`` names the environment
    variable that moves this server's default port (said when the port is taken).
    """
    if port is not None:
        known = _REGISTRY.get((host, port))
        if known is not None and known.process is not None and known.process.poll() is None:
            return known
        if reuse:
            info = identify(f"http://{host}:{port}")
            if info is not None:
                log.info("reusing %s already answering at %s:%s", name, host, port)
                return ServerHandle(name, host, port, None, None, info, probe=identify)
        if _port_in_use(host, port):
            raise ServerStartError(
                f"Port {port} on {host} is taken by something that is not a {name}. "
                f"Stop that program, or {_move_port_advice(port_variable, port)}"
            )

    attempts = 3 if port is None else 1
    last_error: ServerStartError | None = None
    for _ in range(attempts):
        chosen = port if port is not None else free_port(host)
        try:
            return _launch(name, module, args, host, chosen, identify, env, timeout)
        except ServerStartError as exc:  # a free port can be taken before we bind it
            last_error = exc
            if "address already in use" not in str(exc).lower():
                raise
    assert last_error is not None
    raise last_error


def _launch(
    name: str,
    module: str,
    args: Sequence[str],
    host: str,
    port: int,
    identify: Callable[[str], dict[str, Any] | None],
    env: Mapping[str, str] | None,
    timeout: float,
) -> ServerHandle:
    cmd = [sys.executable, "-m", module, "--host", host, "--port", str(port), *args]
    child_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    # The servers must import from the same place as this process does
    # (a source checkout run with PYTHONPATH, or an installed package).
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in [_project_root(), child_env.get("PYTHONPATH", "")] if p
    )
    # The child keeps writing to the log after our handle on it is closed.
    with tempfile.NamedTemporaryFile(
        prefix=f"{name.replace(' ', '-')}-{port}-", suffix=".log", delete=False
    ) as log_file:
        process = _spawn(cmd, log_file, child_env)
    handle = ServerHandle(name, host, port, process, Path(log_file.name), probe=identify)
    url = handle.url
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise ServerStartError(
                f"{name} exited with code {process.returncode} before answering at {url}.\n"
                f"Command: {' '.join(cmd)}\nIts output:\n{handle.output()}"
            )
        info = identify(url)
        if info is not None:
            handle.info = info
            _REGISTRY[(host, port)] = handle
            return handle
        if time.monotonic() > deadline:
            _terminate(process, 3.0)
            raise ServerStartError(
                f"{name} did not answer at {url} within {timeout:.0f} s.\n"
                f"Command: {' '.join(cmd)}\nIts output:\n{handle.output()}"
            )
        time.sleep(0.05)


def _move_port_advice(port_variable: str | None, port: int) -> str:
    """How to get out of the way of a program on ``port``: another port, by variable or by argument."""
    if port_variable is None:
        return "pass port=None to use a free port."
    return (
        f"give the course another port: set the environment variable {port_variable} "
        f"(e.g. {port_variable}={port + 1} make lab) and restart the kernel, or pass port=None to use a free port."
    )


def stop_all() -> None:
    """Stop every server this process started (runs at exit by itself)."""
    for handle in list(_REGISTRY.values()):
        handle.stop()


atexit.register(stop_all)


# -- the course's two servers ------------------------------------------------


def json_identity(path: str, kind: str) -> Callable[[str], dict[str, Any] | None]:
    """An ``identify`` for ``start_server``: the JSON at ``url + path`` when its ``"server"`` is ``kind``
    (so a server of another kind on the port is not taken for ours), else None."""

    def identify(url: str) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(url + path, timeout=1.0) as response:
                info = json.load(response)
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) and info.get("server") == kind else None

    return identify


def start_mock_api(
    port: int | None = MOCK_API_PORT,
    *,
    host: str = DEFAULT_HOST,
    items: int = 1000,
    seed: int = 0,
    scenario: Mapping[str, Any] | None = None,
    reuse: bool = True,
    timeout: float = 30.0,
) -> ServerHandle:
    """Start (or reuse) the mock items API: ``python -m server.mockapi``.

    A reused server must have the same ``items`` and ``seed``; its counters
    are reset and its scenario replaced by ``scenario`` (default: no faults),
    so a notebook cell gives the same result on every run.
    """
    args = ["--items", str(items), "--seed", str(seed)]
    if scenario:
        args += ["--scenario", json.dumps(dict(scenario))]
    handle = start_server(
        "mock API",
        "server.mockapi",
        args,
        host=host,
        port=port,
        identify=json_identity("/_info", "mockapi"),
        timeout=timeout,
        reuse=reuse,
        port_variable=MOCK_API_PORT_VARIABLE if port == MOCK_API_PORT else None,
    )
    if handle.info.get("items") != items or handle.info.get("seed") != seed:
        raise ServerStartError(
            f"The mock API at {handle.url} serves items={handle.info.get('items')}, "
            f"seed={handle.info.get('seed')}, not items={items}, seed={seed}. "
            f"Stop it (or restart the kernel that started it), or "
            f"{_move_port_advice(MOCK_API_PORT_VARIABLE if port == MOCK_API_PORT else None, handle.port)}"
        )
    # Always, even for a server this process just started or started earlier
    # (a registry hit): the scenario clock starts now and the counters are empty.
    try:
        MockAPIControl(handle.url, timeout=5.0).use(scenario)
    except ControlError as exc:
        raise ServerStartError(f"The mock API at {handle.url} refused its set-up: {exc}") from exc
    return handle


def start_messaging_app(
    port: int | None = MESSAGING_PORT,
    *,
    host: str = DEFAULT_HOST,
    database_url: str | None = None,
    folder: str | os.PathLike[str] | None = None,
    config: Mapping[str, str] | None = None,
    reuse: bool = True,
    timeout: float = 30.0,
) -> ServerHandle:
    """Start (or reuse) the Flask messaging app: ``python -m server.messaging``.

    ``database_url`` is any SQLAlchemy URL (default: the app's SQLite file).
    ``folder`` keeps everything of this app in one folder (its instance files
    and, unless ``database_url`` says otherwise, ``folder/messaging.db``): the
    way to give a test or a lesson a database of its own.
    ``config`` entries are passed as environment variables (e.g.
    ``{"NOTIFY_POLL_INTERVAL_MS": "200"}``).

    No secret key is passed unless ``config`` (or the environment) has a
    ``SECRET_KEY``: the app then generates a random one, kept in its instance
    folder (``folder``, else ``./instance``) so that a restarted server
    still accepts the sessions it signed.
    """
    env = dict(config or {})
    if proxied_url(0) is not None:  # under JupyterHub (Binder): pages are reached through jupyter-server-proxy
        env.setdefault("TRUST_PROXY_PREFIX", "1")
    if folder is not None:
        folder = Path(folder)
        env.setdefault("MESSAGING_INSTANCE_PATH", str(folder))
        database_url = database_url or f"sqlite:///{folder / 'messaging.db'}"
    if database_url:
        env["DATABASE_URL"] = database_url
    return start_server(
        "messaging app",
        "server.messaging",
        host=host,
        port=port,
        identify=json_identity("/healthz", "messaging"),
        env=env,
        timeout=timeout,
        reuse=reuse,
        port_variable=MESSAGING_PORT_VARIABLE if port == MESSAGING_PORT else None,
    )


# -- plumbing -----------------------------------------------------------------


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


def _tail(path: Path | None, last_lines: int) -> str:
    if path is None or not path.exists():
        return "(no output recorded)"
    lines = path.read_text(errors="replace").splitlines()
    return "\n".join(lines[-last_lines:]) or "(no output)"


def _project_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def _spawn(cmd: list[str], log_file: IO[bytes], env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start the server process from a thread that lives as long as this process.

    Linux's parent-death signal (``_die_with_parent``) fires when the *thread*
    that forked the child ends, not the process: a server started from a
    short-lived thread (an exercise's check, ``asyncio.to_thread``) would be
    killed as soon as that thread returns. So only the main thread, or one
    long-lived spawner thread, ever starts a server.
    """

    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            cmd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )

    if threading.current_thread() is threading.main_thread():
        return popen()
    return _SPAWNER.submit(popen).result()


_SPAWNER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="course-server-spawner")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: ask the kernel to SIGTERM the server if its parent dies."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
