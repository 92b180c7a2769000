"""Fixtures shared across the test tree."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

# FAST_HASH: quick password hashing; the tests create many users, the hash is not what they test.
from course.servers import FAST_HASH, ServerHandle, start_messaging_app

StartMessaging = Callable[..., ServerHandle]


@pytest.fixture(scope="session")
def start_messaging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartMessaging]:
    """``start_messaging("name", SETTING="value", ...)`` -> a new messaging app process.

    Each app gets a free port, a folder (and SQLite database, unless
    ``database_url=`` names another) of its own and quick password hashing;
    settings are the app's environment variables.
    Apps still running at the end of the session are stopped.
    """
    started: list[ServerHandle] = []

    def start(name: str, database_url: str | None = None, **settings: str) -> ServerHandle:
        handle = start_messaging_app(
            port=None,
            database_url=database_url,
            folder=tmp_path_factory.mktemp(name),
            config={"PASSWORD_HASH_METHOD": FAST_HASH, **settings},
            reuse=False,
        )
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()
