"""The app's forms (Flask-WTF: each carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, Field, PasswordField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, EqualTo, Length, Regexp, ValidationError

from .extensions import db
from .models import MAX_BODY_LENGTH, User


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])
    remember_me = BooleanField("Remember me")
    submit = SubmitField("Sign in")


class LogoutForm(FlaskForm):
    """Only a CSRF token: signing out is a POST, so another site cannot do it for you."""

    submit = SubmitField("Sign out")


class RegistrationForm(FlaskForm):
    username = StringField(
        "Username",
        validators=[
            DataRequired(),
            Length(max=64),
            Regexp(r"^[A-Za-z0-9_.-]+$", message="Letters, digits, dots, dashes and underscores only."),
        ],
    )
    email = StringField(
        "Email",
        validators=[
            DataRequired(),
            Length(max=120),
            Regexp(r"^[^@\s]+@[^@\s]+$", message="That does not look like an email address."),
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
