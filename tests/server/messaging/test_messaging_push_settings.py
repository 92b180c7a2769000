"""PUSH_URL: pages told where the push gateway is, and allowed to connect there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from messaging_helpers import FormClient, app_config

from server.messaging import ConfigError, config_from_env, content_security_policy, create_app


def signed_in_client(tmp_path, **config) -> FormClient:  # type: ignore[no-untyped-def]
    client = FormClient(create_app(app_config(tmp_path, **config)).test_client())
    assert client.register("alice").status_code == 302
    assert client.login("alice").status_code == 302
    return client


def connect_sources(policy: str) -> list[str]:
    [directive] = [d.strip() for d in policy.split(";") if d.strip().startswith("connect-src ")]
    return directive.split()[1:]


def test_without_push_url_pages_connect_to_this_site_only(tmp_path):
    alice = signed_in_client(tmp_path)
    page = alice.get("/")
    assert connect_sources(page.headers["Content-Security-Policy"]) == ["'self'"]
    assert 'data-push-url=""' in page.text


@pytest.mark.parametrize(
    ("push_url", "allowed"),
    [
        ("http://127.0.0.1:8001", ["http://127.0.0.1:8001", "ws://127.0.0.1:8001"]),
        ("https://push.example.org/base/", ["https://push.example.org", "wss://push.example.org"]),
    ],
)
def test_a_push_url_is_in_the_page_and_its_origin_in_connect_src(tmp_path, push_url, allowed):
    alice = signed_in_client(tmp_path, PUSH_URL=push_url)
    for path in ("/", "/messages"):
        page = alice.get(path)
        assert connect_sources(page.headers["Content-Security-Policy"]) == ["'self'", *allowed]
        assert f'data-push-url="{push_url.rstrip("/")}"' in page.text
    # Only connect-src widens: scripts still come from this site alone.
    assert "script-src 'self';" in alice.get("/").headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    "push_url",
    ["127.0.0.1:8001", "ftp://host", "http://", "http://host/?x=1", "http://host/#x", "http://h'; script-src *"],
)
def test_a_push_url_that_is_not_an_http_base_url_is_refused(tmp_path, push_url):
    with pytest.raises(ConfigError, match="PUSH_URL"):
        create_app(app_config(tmp_path, PUSH_URL=push_url))


def test_the_default_policy_is_the_one_without_a_gateway():
    assert connect_sources(content_security_policy()) == ["'self'"]


def test_websocket_is_a_transport_for_the_setting_and_the_query(tmp_path):
    assert config_from_env({"NOTIFY_TRANSPORT": "websocket"})["NOTIFY_TRANSPORT"] == "websocket"
    with pytest.raises(ConfigError, match="websocket"):
        config_from_env({"NOTIFY_TRANSPORT": "pigeon"})
    alice = signed_in_client(tmp_path, PUSH_URL="http://127.0.0.1:8001")
    assert 'data-transport="websocket"' in alice.get("/?transport=websocket").text


def test_a_bad_push_url_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    root = Path(__file__).resolve().parents[3]
    env = {"PUSH_URL": "nowhere", "MESSAGING_INSTANCE_PATH": str(tmp_path), "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-m", "server.messaging", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "PUSH_URL='nowhere'" in result.stderr and "Traceback" not in result.stderr


def test_a_forwarded_prefix_is_honoured_only_when_trusted(tmp_path):
    prefix = "/user/alice/proxy/5000"
    headers = {"X-Forwarded-Prefix": prefix}
    trusted = create_app(app_config(tmp_path / "trusted", TRUST_PROXY_PREFIX=True)).test_client()
    answer = trusted.get("/messages", headers=headers)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith(f"{prefix}/auth/login")
    assert f'href="{prefix}/auth/login' in trusted.get("/", headers=headers).text

    untrusted = create_app(app_config(tmp_path / "untrusted")).test_client()
    answer = untrusted.get("/messages", headers=headers)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/auth/login")
    assert prefix not in untrusted.get("/", headers=headers).text


def test_trust_proxy_prefix_is_a_yes_no_setting():
    assert config_from_env({"TRUST_PROXY_PREFIX": "1"})["TRUST_PROXY_PREFIX"] is True
    with pytest.raises(ConfigError, match="TRUST_PROXY_PREFIX"):
        config_from_env({"TRUST_PROXY_PREFIX": "maybe"})
