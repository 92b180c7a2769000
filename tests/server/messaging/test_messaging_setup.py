"""Configuration, database creation/upgrade and the demo-data command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from messaging_helpers import FormClient, app_config
from sqlalchemy import func, select

from server.messaging import ConfigError, config_from_env, create_app
from server.messaging.extensions import db
from server.messaging.models import Message, User
from server.messaging.seed import DEMO_PASSWORD, seed_demo

ROOT = Path(__file__).resolve().parents[3]


def test_environment_variables_configure_the_app(tmp_path):
    config = config_from_env(
        {
            "DATABASE_URL": "sqlite:////tmp/x.db",
            "MESSAGES_PER_PAGE": "7",
            "NOTIFY_TRANSPORT": "sse",
            "NOTIFY_POLL_INTERVAL_MS": "250",
            "LONG_POLL_TIMEOUT": "2.5",
            "MESSAGING_INSTANCE_PATH": str(tmp_path),
        }
    )
    assert config["SQLALCHEMY_DATABASE_URI"] == "sqlite:////tmp/x.db"
    assert (config["MESSAGES_PER_PAGE"], config["NOTIFY_TRANSPORT"]) == (7, "sse")
    assert (config["NOTIFY_POLL_INTERVAL_MS"], config["LONG_POLL_TIMEOUT"]) == (250, 2.5)


def test_default_database_is_a_sqlite_file_in_the_instance_folder(tmp_path):
    config = config_from_env({"MESSAGING_INSTANCE_PATH": str(tmp_path)})
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'messaging.db'}"
    assert config["NOTIFY_POLL_INTERVAL_MS"] == 10000 and config["NOTIFY_TRANSPORT"] == "poll"


@pytest.mark.parametrize(
    "env, named",
    [({"NOTIFY_TRANSPORT": "pigeon"}, "NOTIFY_TRANSPORT"), ({"MESSAGES_PER_PAGE": "ten"}, "MESSAGES_PER_PAGE")],
)
def test_a_bad_setting_names_itself(env, named):
    with pytest.raises(ConfigError, match=named):
        config_from_env(env)


BOTH = pytest.mark.databases("sqlite", "postgresql")  # see conftest.py


@BOTH
def test_restarting_upgrades_in_place_and_keeps_the_data(tmp_path, database_url):
    first = create_app(app_config(tmp_path, SQLALCHEMY_DATABASE_URI=database_url))
    with first.app_context():
        db.session.add(User(username="kept", email="kept@example.com"))
        db.session.commit()
        db.engine.dispose()
    second = create_app(app_config(tmp_path, SQLALCHEMY_DATABASE_URI=database_url))
    with second.app_context():
        assert db.session.scalar(select(User.username)) == "kept"
        db.engine.dispose()


@BOTH
def test_seed_demo_creates_users_who_can_log_in_and_messages(tmp_path, database_url):
    app = create_app(app_config(tmp_path, SQLALCHEMY_DATABASE_URI=database_url))
    report = seed_demo(app, users=3, messages=5)
    assert report.usernames == ("user1", "user2", "user3") and report.password == DEMO_PASSWORD
    again = seed_demo(app, users=3, messages=0)
    assert again.users_created == 0
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Message)) == 5
        db.engine.dispose()
    client = FormClient(app.test_client())
    assert client.login("user2", DEMO_PASSWORD).headers["Location"] == "/index"


def test_seed_demo_command_prints_the_password(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MESSAGING_INSTANCE_PATH": str(tmp_path),
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
    }
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "server.messaging", "seed-demo", "--users", "2", "--messages", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "user1, user2" in done.stdout and "'password'" in done.stdout
    assert (tmp_path / "messaging.db").exists()


@BOTH
def test_seed_database_fills_the_database_a_server_uses(tmp_path, database_url):
    from server.messaging.seed import seed_database

    report = seed_database(
        database_url,
        users=2,
        messages=3,
        PASSWORD_HASH_METHOD="pbkdf2:sha256:1000",
        INSTANCE_PATH=str(tmp_path / "seeder"),
    )
    assert report.messages_sent == 3
    app = create_app(app_config(tmp_path, SQLALCHEMY_DATABASE_URI=database_url))
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 2
        db.engine.dispose()
