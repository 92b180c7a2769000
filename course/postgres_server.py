"""A throwaway PostgreSQL server for tests, benchmarks and lesson 10: ``start_postgresql()``.

initdb in a temp folder, then pg_ctl start.

Debian's ``postgresql`` package (``make postgresql``) puts the server
programs in ``/usr/lib/postgresql/<version>/bin``; ``PG_BINDIR`` overrides
where to look, and ``initdb`` on ``PATH`` is the last resort. The server
listens on 127.0.0.1 at a free port and on a unix socket in its own folder,
accepts only the user it was created with (password auth, a random
password), and trades durability for speed (``fsync=off``): its data lives
as long as the test session (or the notebook's kernel: a server
this process started and did not stop is stopped when it exits).

PostgreSQL refuses to run as root, so when the tests run as root (CI) the
programs run as the unprivileged ``postgres`` user (created by the Debian
package), which then owns the folder.
"""

from __future__ import annotations

import atexit
import logging
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL

from course.servers import free_port

__all__ = ["PostgreSQLNotFound", "PostgreSQLServer", "find_bindir", "start_postgresql"]

log = logging.getLogger(__name__)

SERVICE_USER = "postgres"  # who runs the server when we are root
SUPERUSER = "tests"  # the role initdb creates; the tests connect as it
DEBIAN_ROOT = Path("/usr/lib/postgresql")


# Servers this process started; those still running are stopped at exit.
_STARTED: list[PostgreSQLServer] = []


class PostgreSQLNotFound(RuntimeError):
    """The PostgreSQL server programs (initdb, pg_ctl) are not installed."""


class PostgreSQLStartError(RuntimeError):
    """initdb or pg_ctl failed; the message carries the server's log."""


@dataclass(frozen=True)
class PostgreSQLServer:
    """A running throwaway server; ``stop()`` ends it and deletes its folder."""

    bindir: Path
    folder: Path
    host: str
    port: int
    user: str
    password: str
    run_as: str | None  # the account the server runs as, when not ourselves

    @property
    def datadir(self) -> Path:
        return self.folder / "data"

    @property
    def socket_dir(self) -> Path:
        return self.folder / "socket"

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (psycopg 3 driver) for ``database`` on this server."""
        return URL.create(
            "postgresql+psycopg",
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=database,
        ).render_as_string(hide_password=False)

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        """A plain psycopg connection (autocommit), e.g. for CREATE DATABASE."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database,
            autocommit=True,
            connect_timeout=10,
        )

    def create_database(self, name: str) -> str:
        """Create an empty database ``name``; returns its SQLAlchemy URL."""
        with self.connect() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending any connection still open to it."""
        with self.connect() as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def stop(self) -> None:
        """``pg_ctl stop -m fast``, then remove the folder."""
        try:
            _run(
                [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.datadir), "-m", "fast", "-w", "-t", "60"],
                self.run_as,
                self.folder,
            )
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
            if self in _STARTED:
                _STARTED.remove(self)


def find_bindir() -> Path:
    """The folder holding initdb and pg_ctl (newest Debian version first)."""
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    if DEBIAN_ROOT.is_dir():
        versions = [p for p in DEBIAN_ROOT.iterdir() if re.fullmatch(r"\d+(\.\d+)?", p.name)]
        versions.sort(key=lambda p: tuple(int(n) for n in p.name.split(".")), reverse=True)
        candidates += [p / "bin" for p in versions]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise PostgreSQLNotFound(
        "PostgreSQL's initdb and pg_ctl were not found (looked in $PG_BINDIR, "
        f"{DEBIAN_ROOT}/<version>/bin and PATH): run `make postgresql` "
        "(it installs Debian's postgresql package), or set PG_BINDIR"
    )


def start_postgresql(host: str = "127.0.0.1", attempts: int = 3) -> PostgreSQLServer:
    """Create a cluster in a new temp folder and start it on a free port."""
    bindir = find_bindir()
    run_as = _service_user() if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="course-postgresql-"))
    try:
        password = secrets.token_urlsafe(16)
        (folder / "socket").mkdir()
        (folder / "password").write_text(password + "\n")
        if run_as is not None:
            account = pwd.getpwnam(run_as)
            for path in (folder, folder / "socket", folder / "password"):
                os.chown(path, account.pw_uid, account.pw_gid)
        _run(
            [
                str(bindir / "initdb"),
                "-D", str(folder / "data"),
                "--username", SUPERUSER,
                "--pwfile", str(folder / "password"),
                "--auth", "scram-sha-256",
                "--encoding", "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            run_as,
            folder,
        )
        (folder / "password").unlink()
        return _start_on_a_free_port(bindir, folder, host, password, run_as, attempts)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _start_on_a_free_port(
    bindir: Path, folder: Path, host: str, password: str, run_as: str | None, attempts: int
) -> PostgreSQLServer:
    for attempt in range(1, attempts + 1):
        server = PostgreSQLServer(bindir, folder, host, free_port(host), SUPERUSER, password, run_as)
        _write_settings(server)
        command = [
            str(bindir / "pg_ctl"), "start", "-D", str(server.datadir),
            "-l", str(folder / "server.log"), "-w", "-t", "120",
        ]
        try:
            _run(command, run_as, folder)
        except PostgreSQLStartError:
            if attempt == attempts:
                raise
            # Another process may have taken the port since free_port() saw it free.
            log.warning("PostgreSQL did not start on port %d; trying another", server.port)
            continue
        try:
            _wait_until_it_answers(server)
        except BaseException:
            server.stop()
            raise
        _STARTED.append(server)
        return server
    raise PostgreSQLStartError(f"no attempt to start PostgreSQL was made (attempts={attempts})")


def _write_settings(server: PostgreSQLServer) -> None:
    settings = {
        "listen_addresses": f"'{server.host}'",
        "port": str(server.port),
        "unix_socket_directories": f"'{server.socket_dir}'",
        "max_connections": "200",  # threaded tests and servers each keep a pool
        "shared_buffers": "32MB",
        "fsync": "off",  # throwaway data: no need to survive a crash
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "timezone": "'UTC'",
    }
    text = "".join(f"{key} = {value}\n" for key, value in settings.items())
    # postgresql.auto.conf is read last: it wins over the defaults initdb wrote.
    (server.datadir / "postgresql.auto.conf").write_text(text)


def _wait_until_it_answers(server: PostgreSQLServer, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with server.connect():
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise PostgreSQLStartError(
                    f"PostgreSQL on port {server.port} does not accept connections: {exc}\n"
                    + _tail(server.folder / "server.log")
                ) from exc
            time.sleep(0.1)


def _service_user() -> str:
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise PostgreSQLNotFound(
            f"running as root, and PostgreSQL refuses to: no {SERVICE_USER!r} user to run it as. "
            "run `make postgresql` (the Debian package creates that user), or run the tests "
            "as an ordinary user"
        ) from None
    return SERVICE_USER


def _run(command: Sequence[str], run_as: str | None, cwd: Path) -> None:
    if run_as is not None:
        command = ["runuser", "-u", run_as, "--", *command]
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )
    if done.returncode != 0:
        raise PostgreSQLStartError(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            + _tail(cwd / "server.log")
        )


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n--- server log ---\n" + "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return ""


@atexit.register
def _stop_all() -> None:
    for server in list(_STARTED):
        try:
            server.stop()
        except Exception as exc:  # exiting anyway: say what was left behind
            log.warning("could not stop PostgreSQL on port %d: %s", server.port, exc)
