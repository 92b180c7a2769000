"""The Flask extensions, created unbound and attached in ``create_app``."""

from __future__ import annotations

from flask_bootstrap import Bootstrap5
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase, declared_attr


class Base(DeclarativeBase):
    """Declarative base of the app's models (SQLAlchemy 2.0 style).

    The models subclass it directly, not ``db.Model``: Flask-SQLAlchemy
    builds ``db.Model`` at run time, so a type checker cannot follow it.
    Both share one registry and one ``MetaData`` (``db.metadata``), which
    the migrations compare against. A model's table is its class name in
    lower case (``User`` -> ``user``), as Flask-SQLAlchemy would name it.
    """

    @declared_attr.directive
    def __tablename__(cls) -> str:
        return cls.__name__.lower()


db = SQLAlchemy(model_class=Base)
login_manager = LoginManager()
csrf = CSRFProtect()
migrate = Migrate()
bootstrap = Bootstrap5()
