"""The Flask messaging app of Lesson A: private messages and notifications.

Run it with ``python -m server.messaging [--host 127.0.0.1] [--port 5000] [--workers N]
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
``SECRET_KEY``               signs sessions, remember-me cookies and CSRF
                             tokens. Unset: a random key is generated once and
                             kept in ``secret_key`` in the instance folder
                             (mode 0600); the command line refuses to listen on
                             anything but loopback without one
``SESSION_COOKIE_SECURE``    1: send the session and remember-me cookies over
                             HTTPS only (default 0; set it behind HTTPS)
``SESSION_COOKIE_SAMESITE``  ``Lax`` (default), ``Strict`` or ``None`` (needs
                             ``SESSION_COOKIE_SECURE=1``), for both cookies
``REMEMBER_COOKIE_DAYS``     how long "Remember me" keeps one signed in (14)
``MAX_CONTENT_LENGTH``       largest request body in bytes; more is a 413
                             (default 65536)
``MESSAGES_PER_PAGE``        page size of /messages (default 10)
``NOTIFY_TRANSPORT``         how pages get notifications: ``poll`` (default),
                             ``longpoll``, ``sse`` or ``websocket`` (needs
                             ``PUSH_URL``); ``?transport=`` on any page
                             overrides it for that browser session
``PUSH_URL``                 base URL of the push gateway (``python -m
                             server.push``), e.g. ``http://127.0.0.1:8001``:
                             pages then open their event stream at
                             ``PUSH_URL/stream`` and their WebSocket at
                             ``PUSH_URL/ws`` (the Content-Security-Policy
                             allows connecting there); default: none, the
                             app serves its own stream
``NOTIFY_LISTEN``            PostgreSQL only: 1 (default) runs a thread per
                             process that LISTENs for the NOTIFY of every
                             write, so a write in another process wakes this
                             one's waiters at once; 0: they find it at their
                             next re-check (see ``hub``)
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
``MAX_WAITING_PER_USER``     how many of them one user may hold; more get 429
                             + Retry-After (default 4; 0: unlimited)
``LOGIN_FAILURES_PER_ACCOUNT``  failed sign-ins allowed per user name within
                             ``LOGIN_THROTTLE_SECONDS``; then 429 + Retry-After
                             (default 10; 0: no limit)
``LOGIN_FAILURES_PER_ADDRESS``  the same per client address (default 50)
``LOGIN_THROTTLE_SECONDS``   the sliding window of both (default 600)
``PASSWORD_HASH_METHOD``     werkzeug hash method (default ``scrypt``; tests and
                             load tests may pick a cheaper ``pbkdf2:sha256:1000``)
``PASSWORD_HASH_WORKERS``    how many password hashes run at once (default 2;
                             scrypt takes 32 MiB each, see ``passwords``)
``PASSWORD_HASH_QUEUE``      how many more may wait for one; past that a sign-in
                             or registration gets 503 + Retry-After (default 256)
``TRUST_PROXY_PREFIX``       1: honour the ``X-Forwarded-Prefix`` header of one
                             proxy in front (jupyter-server-proxy on Binder
                             sends it), so links and redirects keep the
                             proxy's path (default 0: the header is ignored,
                             as a client could send it)
``MESSAGING_THREADS``        default of ``--threads`` (64)
``MESSAGING_CONNECTION_LIMIT``  default of ``--connection-limit`` (10000)
``MESSAGING_IDLE_TIMEOUT``   default of ``--idle-timeout`` (30 seconds)
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import weakref
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import BadRequest
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from .database import configure_engine
from .extensions import bootstrap, csrf, db, login_manager, migrate
from .hub import NotificationHub, NotifyListener
from .passwords import PasswordHasher
from .throttle import LoginThrottle

__all__ = [
    "SECRET_KEY_FILE",
    "TRANSPORTS",
    "ConfigError",
    "__version__",
    "config_from_env",
    "content_security_policy",
    "create_app",
    "instance_secret_key",
    "upgrade_database",
]

__version__ = "1.1.0"

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
MIGRATIONS = HERE / "migrations"
#: The file in the instance folder that keeps a generated ``SECRET_KEY``.
SECRET_KEY_FILE = "secret_key"

_DEFAULTS: dict[str, Any] = {
    "SESSION_COOKIE_SECURE": False,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "REMEMBER_COOKIE_DAYS": 14,
    "MAX_CONTENT_LENGTH": 64 * 1024,
    "MESSAGES_PER_PAGE": 10,
    "NOTIFY_TRANSPORT": "poll",
    "PUSH_URL": "",
    "NOTIFY_LISTEN": True,
    "TRUST_PROXY_PREFIX": False,
    "NOTIFY_POLL_INTERVAL_MS": 10000,
    "LONG_POLL_TIMEOUT": 25.0,
    "NOTIFY_RECHECK_SECONDS": 5.0,
    "SSE_HEARTBEAT_SECONDS": 15.0,
    "SSE_RETRY_MS": 2000,
    "MAX_WAITING_REQUESTS": 0,  # 0: no limit
    "MAX_WAITING_PER_USER": 4,  # 0: no limit
    "LOGIN_FAILURES_PER_ACCOUNT": 10,  # 0: no limit
    "LOGIN_FAILURES_PER_ADDRESS": 50,  # 0: no limit
    "LOGIN_THROTTLE_SECONDS": 600.0,
    "PASSWORD_HASH_METHOD": "scrypt",
    "PASSWORD_HASH_WORKERS": 2,
    "PASSWORD_HASH_QUEUE": 256,
}
# Numbers that must be above 0 (the others may be 0).
_POSITIVE = {
    "REMEMBER_COOKIE_DAYS",
    "MAX_CONTENT_LENGTH",
    "MESSAGES_PER_PAGE",
    "NOTIFY_POLL_INTERVAL_MS",
    "SSE_HEARTBEAT_SECONDS",
    "NOTIFY_RECHECK_SECONDS",
    "LOGIN_THROTTLE_SECONDS",
    "PASSWORD_HASH_WORKERS",
}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}
_SAMESITE = {"lax": "Lax", "strict": "Strict", "none": "None"}

#: How pages may get notifications (``NOTIFY_TRANSPORT``, ``?transport=``).
TRANSPORTS = ("poll", "longpoll", "sse", "websocket")


def content_security_policy(push_url: str = "") -> str:
    """The page policy: scripts and styles from this site only (Bootstrap is served
    locally), no framing by other sites; scripts may connect to this site and,
    given a ``PUSH_URL``, to that gateway's origin (HTTP for SSE, ws for WebSocket)."""
    connect = ["'self'"]
    if push_url:
        parts = urlsplit(push_url)
        secure = parts.scheme == "https"
        connect += [f"{parts.scheme}://{parts.netloc}", f"{'wss' if secure else 'ws'}://{parts.netloc}"]
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",  # Bootstrap's CSS draws some icons as data: SVGs
            f"connect-src {' '.join(connect)}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


#: Sent with every response (the policy of an app without ``PUSH_URL``).
CONTENT_SECURITY_POLICY = content_security_policy()
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class ConfigError(ValueError):
    """A configuration value the app cannot use; the message names it."""


def config_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The app's settings: defaults, overridden by environment variables."""
    env = os.environ if environ is None else environ
    config: dict[str, Any] = {}
    for key, default in _DEFAULTS.items():
        config[key] = default if key not in env else _parse(key, env[key], default)
    if config["NOTIFY_TRANSPORT"] not in TRANSPORTS:
        raise ConfigError(
            f"NOTIFY_TRANSPORT={config['NOTIFY_TRANSPORT']!r}: use poll, longpoll, sse or websocket"
        )
    if "SECRET_KEY" in env:
        config["SECRET_KEY"] = env["SECRET_KEY"]
    instance = Path(env.get("MESSAGING_INSTANCE_PATH", "instance")).resolve()
    config["INSTANCE_PATH"] = str(instance)
    config["SQLALCHEMY_DATABASE_URI"] = env.get(
        "DATABASE_URL", f"sqlite:///{instance / 'messaging.db'}"
    )
    return config


def _parse(key: str, text: str, default: Any) -> Any:
    """``text`` as the type of ``default``, within the bounds the app can use."""
    kind = type(default).__name__
    if isinstance(default, bool):
        if text.strip().lower() not in _TRUE | _FALSE:
            raise ConfigError(f"{key}={text!r} is not a yes/no value: use 1 or 0")
        return text.strip().lower() in _TRUE
    if isinstance(default, str):
        if key == "SESSION_COOKIE_SAMESITE":
            if text.lower() not in _SAMESITE:
                raise ConfigError(f"{key}={text!r}: use Lax, Strict or None")
            return _SAMESITE[text.lower()]
        return text
    try:
        value = type(default)(text)
    except ValueError:
        raise ConfigError(
            f"{key}={text!r} is not a valid {kind}; unset it to use the default {default!r}"
        ) from None
    positive = key in _POSITIVE
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ConfigError(
            f"{key}={text!r} must be a finite number {'> 0' if positive else '>= 0'}; "
            f"unset it to use the default {default!r}"
        )
    return value


def create_app(overrides: Mapping[str, Any] | None = None, *, upgrade: bool = True) -> Flask:
    """Build the app; with ``upgrade`` (default) bring its database up to date.

    ``overrides`` are config keys (as in the module docstring, plus
    ``SQLALCHEMY_DATABASE_URI``) that win over the environment.
    """
    config = config_from_env()
    config.update(overrides or {})
    instance = Path(config["INSTANCE_PATH"])
    instance.mkdir(parents=True, exist_ok=True)
    if "SECRET_KEY" not in config or config["SECRET_KEY"] is None:
        config["SECRET_KEY"] = instance_secret_key(instance)
    elif not config["SECRET_KEY"]:
        raise ConfigError("SECRET_KEY is empty: set a long random value, or unset it to use a generated one")
    config["PUSH_URL"] = _push_url(config.get("PUSH_URL") or "")
    if config["SESSION_COOKIE_SAMESITE"] == "None" and not config["SESSION_COOKIE_SECURE"]:
        raise ConfigError("SESSION_COOKIE_SAMESITE=None needs SESSION_COOKIE_SECURE=1 (browsers refuse it otherwise)")
    app = Flask(__name__, instance_path=str(instance))
    app.config.update(config)
    if app.config["TRUST_PROXY_PREFIX"]:
        # Only the path prefix: the client's address, scheme and host stay what the socket says.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=0, x_proto=0, x_host=0, x_port=0, x_prefix=1)  # type: ignore[method-assign]
    app.config.update(
        APP_VERSION=__version__,
        BOOTSTRAP_SERVE_LOCAL=True,  # no CDN: classrooms may be offline
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(app.config["SQLALCHEMY_DATABASE_URI"]),
        # The remember-me cookie gets the session cookie's flags (Flask-Login's own defaults
        # are no SameSite and a year's duration).
        REMEMBER_COOKIE_DURATION=timedelta(days=app.config["REMEMBER_COOKIE_DAYS"]),
        REMEMBER_COOKIE_SECURE=app.config["SESSION_COOKIE_SECURE"],
        REMEMBER_COOKIE_SAMESITE=app.config["SESSION_COOKIE_SAMESITE"],
        REMEMBER_COOKIE_HTTPONLY=True,
    )

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS), render_as_batch=True)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    csrf.init_app(app)
    bootstrap.init_app(app)
    app.extensions["notification_hub"] = NotificationHub(
        app.config["MAX_WAITING_REQUESTS"] or None, app.config["MAX_WAITING_PER_USER"] or None
    )
    app.extensions["security_headers"] = {
        **SECURITY_HEADERS,
        "Content-Security-Policy": content_security_policy(app.config["PUSH_URL"]),
    }
    hasher = app.extensions["password_hasher"] = PasswordHasher(
        app.config["PASSWORD_HASH_METHOD"],
        workers=app.config["PASSWORD_HASH_WORKERS"],
        queue=app.config["PASSWORD_HASH_QUEUE"],
    )
    weakref.finalize(app, hasher.close)  # its threads end with the app (tests make many apps)
    app.extensions["login_throttle"] = LoginThrottle(
        per_account=app.config["LOGIN_FAILURES_PER_ACCOUNT"] or None,
        per_address=app.config["LOGIN_FAILURES_PER_ADDRESS"] or None,
        window=app.config["LOGIN_THROTTLE_SECONDS"],
    )

    from . import api, auth, main  # the blueprints import the models

    app.register_blueprint(main.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(api.bp)
    app.before_request(_refuse_nul_characters)
    app.after_request(_add_security_headers)

    with app.app_context():
        configure_engine(db.engine)
        if upgrade:
            upgrade_database(app)
        if db.engine.dialect.name == "postgresql" and app.config["NOTIFY_LISTEN"]:
            listener = app.extensions["notify_listener"] = _listener(app)
            weakref.finalize(app, listener.stop, 0)  # tests make many apps
            listener.start()
    return app


def _listener(app: Flask) -> NotifyListener:
    """This process's LISTEN thread, on a connection of its own to the app's database."""
    import psycopg

    engine = db.engine
    args, options = engine.dialect.create_connect_args(engine.url)
    options.pop("context", None)  # SQLAlchemy's type adapters, not a connection parameter

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(*args, autocommit=True, **options)

    return NotifyListener(app.extensions["notification_hub"], connect)


def _push_url(text: str) -> str:
    """``PUSH_URL`` without a trailing slash; ``ConfigError`` unless it is an http(s) base URL."""
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            f"PUSH_URL={text!r}: give the push gateway's base URL, e.g. http://127.0.0.1:8001"
        )
    if any(character in text for character in " \"'<>;,"):
        raise ConfigError(f"PUSH_URL={text!r} holds characters a URL may not")
    return text.rstrip("/")


def instance_secret_key(folder: Path) -> str:
    """The secret key kept in ``folder/secret_key``, generated on first use.

    The file is created with mode 0600 (only its owner may read it), and
    atomically: two processes starting at once end up with the same key. A
    key is generated only when ``SECRET_KEY`` is not set; a server that others
    can reach must be given one (``python -m server.messaging`` refuses to
    listen on a non-loopback address without it).
    """
    path = folder / SECRET_KEY_FILE
    key = _read_key(path)
    if key:
        if path.stat().st_mode & 0o077:
            log.warning("%s can be read by other users: chmod 600 it", path)
        return key
    draft = folder / f".{SECRET_KEY_FILE}-{os.getpid()}-{secrets.token_hex(4)}"
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(32) + "\n")
    try:
        os.link(draft, path)  # fails if another process got there first: use its key
        log.info("no SECRET_KEY set: generated one and kept it in %s (mode 0600)", path)
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links
        if not path.exists():
            os.replace(draft, path)
            log.info("no SECRET_KEY set: generated one and kept it in %s (mode 0600)", path)
    finally:
        draft.unlink(missing_ok=True)
    key = _read_key(path)
    if not key:
        raise ConfigError(f"{path} holds no key: delete it (a new one is generated) or set SECRET_KEY")
    return key


def _read_key(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return ""
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a key this app wrote: delete it or set SECRET_KEY") from None


def _add_security_headers(response: Response) -> Response:
    """Headers every response carries (``SECURITY_HEADERS``, with this app's policy)."""
    for name, value in current_app.extensions["security_headers"].items():
        response.headers.setdefault(name, value)
    return response


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
