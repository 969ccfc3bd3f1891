"""The forms that create and prove accounts: sign-up, an accepted invitation, login.

The password rules (length, guessability) live once, in `NewPasswordForm`.
"""

from __future__ import annotations

import re

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Regexp, ValidationError

EMAIL = Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message="Enter an e-mail address like ana@acme.com.")
MIN_PASSWORD = 12
# zxcvbn's 0-4 scale; 3 is "safely unguessable: moderate protection from an offline attack".
GOOD_ENOUGH_SCORE = 3


class NewPasswordForm(FlaskForm):
    """A form that sets a password: the length and guessability rules in one place."""

    password = PasswordField(
        "Password",
        validators=[DataRequired(), Length(min=MIN_PASSWORD, max=200,
                                           message=f"Use at least {MIN_PASSWORD} characters.")],
        description=f"At least {MIN_PASSWORD} characters. A passphrase is easiest.",
    )

    def own_inputs(self) -> list[str]:
        """What the person typed or is known by: a password made of it is refused."""
        return []

    def validate_password(self, field: PasswordField) -> None:
        """Refuse common, breached and guessable passwords, offline (ASVS 2.1.7).

        zxcvbn rates a password against the passwords of public breaches, dictionaries,
        keyboard patterns and what the person typed on this form; anything under
        GOOD_ENOUGH_SCORE ("safely unguessable") is refused with its advice.
        """
        from zxcvbn import zxcvbn  # its word lists take a moment to load: only when needed

        password = field.data or ""
        if len(password) < MIN_PASSWORD:
            return  # the length rule has said it
        own = self.own_inputs()
        parts = [[w for w in re.split(r"[\s@.\-_]+", text.lower()) if w] for text in own]
        joined = ["".join(words) for words in parts]  # "Acme Corp" is typed as "acmecorp"
        words = [w for text_words in parts for w in text_words]
        rating = zxcvbn(password[:100], user_inputs=[*own, *words, *joined, "accrue"])
        if rating["score"] < GOOD_ENOUGH_SCORE:
            feedback = rating["feedback"]
            why = feedback.get("warning") or "It is close to common or breached passwords."
            advice = " ".join(feedback.get("suggestions") or [])
            raise ValidationError(f"This password is too easy to guess. {why} {advice}".strip())


class SignupForm(NewPasswordForm):
    company = StringField("Company name", validators=[DataRequired(), Length(max=200)])
    full_name = StringField("Your name", validators=[DataRequired(), Length(max=200)])
    email = EmailField("Work e-mail", validators=[DataRequired(), EMAIL, Length(max=254)])

    def own_inputs(self) -> list[str]:
        return [self.company.data or "", self.full_name.data or "", self.email.data or ""]


class AcceptInvitationForm(NewPasswordForm):
    """An invited manager or seller names themselves and sets a password."""

    full_name = StringField("Your name", validators=[DataRequired(), Length(max=200)])

    def __init__(self, *args: object, email: str = "", **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.email = email

    def own_inputs(self) -> list[str]:
        return [self.full_name.data or "", self.email]


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])
    next = HiddenField()
