"""course.redis_server: a throwaway redis-server on a free port, nothing saved, gone when stopped."""

from __future__ import annotations

import pytest
import redis
from redis_fixture import requires_redis

import course.redis_server as redis_server_module
from course.redis_server import RedisNotInstalled, start_redis
from course.servers import ServerStartError, free_port


@requires_redis
def test_a_server_answers_saves_nothing_and_leaves_nothing_behind() -> None:
    handle = start_redis()
    try:
        assert handle.url == f"redis://127.0.0.1:{handle.port}/0" and handle.running
        client = redis.Redis.from_url(handle.url, decode_responses=True)
        assert client.ping()
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("dir")["dir"] == str(handle.folder)
        client.close()
    finally:
        handle.stop()
    assert not handle.running and not handle.folder.exists()
    handle.stop()  # twice is harmless


@requires_redis
def test_a_taken_port_is_a_clear_error() -> None:
    port = free_port()
    with start_redis(port) as first:
        with pytest.raises(ServerStartError, match=f"Port {port} on 127.0.0.1 is taken"):
            start_redis(port)
        assert first.running


def test_no_server_binary_says_how_to_install_one(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(redis_server_module, "REDIS_SERVER", str(tmp_path / "redis-server"))
    with pytest.raises(RedisNotInstalled, match="make redis"):
        start_redis()
