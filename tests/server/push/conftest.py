"""Fixtures of the push gateway's tests: a throwaway PostgreSQL server, the real
Flask app on it (users, sessions and messages come from there), real gateway
processes on free ports, two signed-in users and an HTTP client."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from push_helpers import SECRET_KEY, Person, sign_up

from course.postgres_server import PostgreSQLServer, start_postgresql
from course.servers import FAST_HASH, ServerHandle, start_messaging_app, start_server

StartGateway = Callable[..., ServerHandle]


def gateway_identity(url: str) -> dict[str, Any] | None:
    """The gateway's /healthz when a gateway answers at ``url``, else None."""
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1.0) as response:
            info = json.load(response)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("server") == "push" else None


@pytest.fixture(scope="session")
def postgresql() -> Iterator[PostgreSQLServer]:
    server = start_postgresql()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def database_url(postgresql: PostgreSQLServer) -> Iterator[str]:
    name = f"push_{uuid.uuid4().hex[:12]}"
    yield postgresql.create_database(name)
    postgresql.drop_database(name)


@pytest.fixture(scope="module")
def messaging_app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """The Flask app on the module's database (it creates the tables)."""
    handle = start_messaging_app(
        port=None,
        database_url=database_url,
        folder=tmp_path_factory.mktemp("push-app"),
        config={"SECRET_KEY": SECRET_KEY, "PASSWORD_HASH_METHOD": FAST_HASH},
        reuse=False,
    )
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def start_gateway(database_url: str, messaging_app: ServerHandle) -> Iterator[StartGateway]:
    """``start_gateway("--recheck", "0.5", port=None, **env)`` -> a gateway process.

    The app is started first (its tables must exist). Gateways still running
    at the end of the module are stopped.
    """
    started: list[ServerHandle] = []

    def start(*args: str, port: int | None = None, **env: str) -> ServerHandle:
        handle = start_server(
            "push gateway",
            "server.push",
            args,
            port=port,
            identify=gateway_identity,
            env={"DATABASE_URL": database_url, "SECRET_KEY": SECRET_KEY, **env},
            reuse=False,
        )
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


@pytest.fixture(scope="module")
def gateway(start_gateway: StartGateway) -> ServerHandle:
    """A gateway that only a NOTIFY wakes (its periodic re-check is an hour apart)."""
    return start_gateway("--recheck", "3600", "--heartbeat", "0.5")


@pytest.fixture
async def people(messaging_app: ServerHandle, database_url: str) -> AsyncIterator[tuple[Person, Person]]:
    """Alice and Bob, registered and signed in at the app (each with a session of their own)."""
    alice = await sign_up(messaging_app.url, database_url, "alice")
    bob = await sign_up(messaging_app.url, database_url, "bob")
    yield alice, bob
    await alice.session.close()
    await bob.session.close()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client with no cookies of its own (tests pass a person's headers)."""
    async with aiohttp.ClientSession() as session:
        yield session
