"""The Flask messaging app of Lesson A: private messages and notifications.

Run it with ``python -m server.messaging [--host 127.0.0.1] [--port 5000]
[--threads 64]`` (see ``__main__``); create demo data with ``python -m
server.messaging seed-demo``. On start it creates or upgrades its database
(Flask-Migrate, ``migrations/`` next to this file).

Configuration, from environment variables (or ``create_app(overrides)``):

``DATABASE_URL``             any SQLAlchemy URL; default a SQLite file
                             ``messaging.db`` in ``MESSAGING_INSTANCE_PATH``;
                             tested on SQLite and on PostgreSQL
                             (``postgresql+psycopg://user:pw@host/db``, needs
                             ``psycopg[binary]``; see README.md)
``MESSAGING_INSTANCE_PATH``  folder for that file (default ``./instance``)
``SECRET_KEY``               signs sessions and CSRF tokens (default: a
                             development key; set your own outside a classroom)
``MESSAGES_PER_PAGE``        page size of /messages (default 10)
``NOTIFY_TRANSPORT``         how pages get notifications: ``poll`` (default),
                             ``longpoll`` or ``sse``; ``?transport=`` on any
                             page overrides it for that browser session
``NOTIFY_POLL_INTERVAL_MS``  poll interval of the page script (default 10000)
``LONG_POLL_TIMEOUT``        seconds /notifications/wait holds (default 25)
``NOTIFY_RECHECK_SECONDS``   how often a waiting request re-reads the database
                             without being woken (default 5; see ``hub``)
``SSE_HEARTBEAT_SECONDS``    idle time before a keep-alive comment (default 15)
``SSE_RETRY_MS``             reconnection delay told to EventSource (default 2000)
``MAX_WAITING_REQUESTS``     how many long polls and streams may wait at once;
                             more get 503 + Retry-After (default: unlimited,
                             and ``--threads`` minus a reserve when served by
                             ``python -m server.messaging``)
``PASSWORD_HASH_METHOD``     werkzeug hash method (default ``scrypt``; tests and
                             load tests may pick a cheaper ``pbkdf2:sha256:1000``)
``MESSAGING_THREADS``        default of ``--threads`` (64)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import BadRequest
from werkzeug.wrappers import Response

from .database import configure_engine
from .extensions import bootstrap, csrf, db, login_manager, migrate
from .hub import NotificationHub

__all__ = ["ConfigError", "__version__", "config_from_env", "create_app", "upgrade_database"]

__version__ = "1.0.0"

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
MIGRATIONS = HERE / "migrations"

_DEFAULTS: dict[str, Any] = {
    "SECRET_KEY": "dev-only-secret-change-me",
    "MESSAGES_PER_PAGE": 10,
    "NOTIFY_TRANSPORT": "poll",
    "NOTIFY_POLL_INTERVAL_MS": 10000,
    "LONG_POLL_TIMEOUT": 25.0,
    "NOTIFY_RECHECK_SECONDS": 5.0,
    "SSE_HEARTBEAT_SECONDS": 15.0,
    "SSE_RETRY_MS": 2000,
    "PASSWORD_HASH_METHOD": "scrypt",
    "MAX_WAITING_REQUESTS": 0,  # 0: no limit
}


class ConfigError(ValueError):
    """A configuration value the app cannot use; the message names it."""


def config_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The app's settings: defaults, overridden by environment variables."""
    env = os.environ if environ is None else environ
    config: dict[str, Any] = {}
    for key, default in _DEFAULTS.items():
        if key not in env:
            config[key] = default
            continue
        try:
            config[key] = type(default)(env[key])
        except ValueError:
            raise ConfigError(
                f"{key}={env[key]!r} is not a valid {type(default).__name__}; "
                f"unset it to use the default {default!r}"
            ) from None
    if config["NOTIFY_TRANSPORT"] not in ("poll", "longpoll", "sse"):
        raise ConfigError(
            f"NOTIFY_TRANSPORT={config['NOTIFY_TRANSPORT']!r}: use poll, longpoll or sse"
        )
    instance = Path(env.get("MESSAGING_INSTANCE_PATH", "instance")).resolve()
    config["INSTANCE_PATH"] = str(instance)
    config["SQLALCHEMY_DATABASE_URI"] = env.get(
        "DATABASE_URL", f"sqlite:///{instance / 'messaging.db'}"
    )
    return config


def create_app(overrides: Mapping[str, Any] | None = None, *, upgrade: bool = True) -> Flask:
    """Build the app; with ``upgrade`` (default) bring its database up to date.

    ``overrides`` are config keys (as in the module docstring, plus
    ``SQLALCHEMY_DATABASE_URI``) that win over the environment.
    """
    config = config_from_env()
    config.update(overrides or {})
    Path(config["INSTANCE_PATH"]).mkdir(parents=True, exist_ok=True)
    app = Flask(__name__, instance_path=config["INSTANCE_PATH"])
    app.config.update(config)
    app.config.update(
        APP_VERSION=__version__,
        BOOTSTRAP_SERVE_LOCAL=True,  # no CDN: classrooms may be offline
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(app.config["SQLALCHEMY_DATABASE_URI"]),
    )

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS), render_as_batch=True)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    csrf.init_app(app)
    bootstrap.init_app(app)
    app.extensions["notification_hub"] = NotificationHub(app.config["MAX_WAITING_REQUESTS"] or None)

    from . import api, auth, main  # the blueprints import the models

    app.register_blueprint(main.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(api.bp)
    app.before_request(_refuse_nul_characters)

    with app.app_context():
        configure_engine(db.engine)
        if upgrade:
            upgrade_database(app)
    return app


NUL_MESSAGE = "text may not contain NUL characters (U+0000)"


def _refuse_nul_characters() -> tuple[Response, int] | None:
    """Answer 400 to a request whose path, query or form holds a NUL character.

    PostgreSQL cannot store NUL in text, nor compare text with it: without
    this check a message, a user name or a URL carrying one would be a 500
    there (and stored as is on SQLite). The API answers in JSON, as it does
    for its other 400s.
    """
    values = [request.path]
    for multidict in (request.args, request.form):
        for listed in multidict.listvalues():
            values.extend(listed)
    if not any("\x00" in value for value in values):
        return None
    if request.blueprint == "api":
        return jsonify(error=NUL_MESSAGE), 400
    raise BadRequest(NUL_MESSAGE)


def upgrade_database(app: Flask) -> None:
    """Create the database, or migrate it to the newest schema (``flask db upgrade``)."""
    from flask_migrate import upgrade

    with app.app_context():
        upgrade(directory=str(MIGRATIONS))


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite") and (url in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in url):
        return {}
    # Long polls and event streams return their connection while they wait,
    # but a busy server still runs many requests at once: let the pool grow.
    return {"pool_size": 10, "max_overflow": -1, "pool_pre_ping": not url.startswith("sqlite")}
