r"""The app's forms (Flask-WTF: each carries a CSRF token).

User names and email addresses are compared in lower case (``normalize_name``)
and checked whole: each pattern ends in ``\Z``, because ``$`` also matches
before a final line break, which would let ``"user1\n"`` pass for ``user1``.
Such input is refused with a form error, never quietly cleaned up.
"""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, Field, PasswordField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, EqualTo, Length, Regexp, ValidationError

from .extensions import db
from .models import MAX_BODY_LENGTH, User, normalize_name

#: Letters, digits, dots, dashes and underscores, beginning with a letter or digit.
USERNAME_PATTERN = r"[a-z0-9][a-z0-9_.-]*\Z"
#: Something, an @, something: no spaces, line breaks or control characters.
EMAIL_PATTERN = r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\Z"


def _lower(value: Any) -> Any:
    return normalize_name(value) if isinstance(value, str) else value


class LoginForm(FlaskForm):
    username = StringField("Username", filters=[_lower], validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])
    remember_me = BooleanField("Remember me")
    submit = SubmitField("Sign in")


class LogoutForm(FlaskForm):
    """Only a CSRF token: signing out is a POST, so another site cannot do it for you."""

    submit = SubmitField("Sign out")


class RegistrationForm(FlaskForm):
    username = StringField(
        "Username",
        filters=[_lower],
        validators=[
            DataRequired(),
            Length(max=64),
            Regexp(
                USERNAME_PATTERN,
                message="Letters, digits, dots, dashes and underscores only, starting with a letter or digit.",
            ),
        ],
    )
    email = StringField(
        "Email",
        filters=[_lower],
        validators=[
            DataRequired(),
            Length(max=120),
            Regexp(EMAIL_PATTERN, message="That does not look like an email address."),
        ],
    )
    password = PasswordField("Password", validators=[DataRequired()])
    password2 = PasswordField("Repeat password", validators=[DataRequired(), EqualTo("password")])
    submit = SubmitField("Register")

    def validate_username(self, field: Field) -> None:
        if db.session.scalar(select(User.id).where(User.username == field.data)) is not None:
            raise ValidationError("That username is taken; choose another.")

    def validate_email(self, field: Field) -> None:
        if db.session.scalar(select(User.id).where(User.email == field.data)) is not None:
            raise ValidationError("That email address is already registered.")


class MessageForm(FlaskForm):
    message = TextAreaField(
        "Message", validators=[DataRequired(), Length(min=1, max=MAX_BODY_LENGTH)]
    )
    submit = SubmitField("Send")
