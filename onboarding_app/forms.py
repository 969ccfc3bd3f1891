"""One form per page. Flask-WTF adds the CSRF token to each; labels are the visible ones."""

from __future__ import annotations

import functools
import re
from typing import Any, ClassVar

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

from accrue.schema import SYNC_FREQUENCIES_MINUTES
from connectors.spec import ConnectorSpec, SetupField, SetupValueError, prepare_connection
from onboarding_app import crm

EMAIL = Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message="Enter an e-mail address like ana@acme.com.")
MIN_PASSWORD = 12
# zxcvbn's 0-4 scale; 3 is "safely unguessable: moderate protection from an offline attack".
GOOD_ENOUGH_SCORE = 3
SETUP_VALUE_MAX = 4000  # a pasted private key fits; the request limit caps the rest

FREQUENCY_LABELS = {
    5: "Every 5 minutes", 15: "Every 15 minutes", 30: "Every 30 minutes",
    60: "Every hour (recommended)", 360: "Every 6 hours", 1440: "Once a day",
}


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


class ActionForm(FlaskForm):
    """Pages whose only input is the button pressed (Welcome, Complete, logout)."""


class SelectCrmForm(FlaskForm):
    crm = RadioField(
        "Which CRM does your team use?",
        choices=[(o.key, o.name) for o in crm.choices()],
        validators=[Optional()],
    )

    def validate_crm(self, field: RadioField) -> None:
        supported = {o.key for o in crm.choices() if o.supported}
        if field.data and field.data not in supported:
            raise ValidationError("That CRM is coming soon: use the push API or a file import.")


def _setup_field(setup: SetupField) -> Any:
    """A WTForms field for one of the spec's setup fields (checked in full by the spec)."""
    limit = [Optional(), Length(max=SETUP_VALUE_MAX)]
    if setup.kind == "choice":
        return RadioField(setup.label, choices=list(setup.choices), default=setup.default)
    if setup.kind == "multiline":  # a pasted key or certificate: never rendered back
        return TextAreaField(setup.label, validators=limit)
    if setup.secret or setup.kind == "password":
        return PasswordField(setup.label, validators=limit)
    return StringField(setup.label, validators=limit, default=setup.default or None)


class DetailsForm(FlaskForm):
    """Provide Details for one CRM; built from its spec by `details_form`."""

    spec: ClassVar[ConnectorSpec]
    auth_method: RadioField

    def validate(self, extra_validators: Any = None) -> bool:
        """The fields' own checks, then the spec's (patterns, the CRM's own rules) on the
        values the chosen sign-in method uses; a value it cannot use marks its field."""
        ok = bool(super().validate(extra_validators))
        try:
            self.prepared(partial=True)
        except SetupValueError as exc:
            target = getattr(self, exc.field, None) or self.auth_method
            target.errors = [*target.errors, str(exc)]
            ok = False
        return ok

    def values(self) -> dict[str, str]:
        """The non-secret values typed, and the chosen method, as the wizard keeps them."""
        values = {"auth_method": self.auth_method.data or self.spec.auth(None).key}
        for setup in self.spec.fields:
            if not setup.secret:
                values[setup.name] = (getattr(self, setup.name).data or "").strip()
        return values

    def typed_secrets(self) -> dict[str, str]:
        """The secret fields filled in; a blank one means "keep the saved value"."""
        return {s.name: getattr(self, s.name).data for s in self.spec.fields
                if s.secret and getattr(self, s.name).data}

    def prepared(self, *, partial: bool = False,
                 kept: dict[str, str] | None = None) -> tuple[dict[str, str], dict[str, Any]]:
        """(secrets, config) from what was typed over the `kept` (saved) secrets, through
        the CRM's spec; `partial` lets required values be missing (a page saved for
        later)."""
        method = self.spec.auth(self.auth_method.data or None)
        values = {**(kept or {}), **self.values(), **self.typed_secrets(), "auth": method.key}
        return prepare_connection(self.spec, values, partial=partial)


@functools.cache
def details_form(key: str) -> type[DetailsForm]:
    """The Provide Details form of one registered CRM: its methods, then its fields."""
    spec = crm.spec_for(key)
    attributes: dict[str, Any] = {
        "spec": spec,
        "auth_method": RadioField(
            f"How should Accrue sign in to {spec.name}?",
            choices=[(m.key, m.label) for m in spec.auth_methods],
            default=spec.auth(None).key),
    }
    for setup in spec.fields:
        attributes[setup.name] = _setup_field(setup)
    return type(f"{key.title()}DetailsForm", (DetailsForm,), attributes)


class ReviewForm(FlaskForm):
    activities = BooleanField("Activities (calls, e-mails, meetings, to-dos)")
    frequency = SelectField(
        "How often should Accrue sync?",
        choices=[(str(m), FREQUENCY_LABELS[m]) for m in SYNC_FREQUENCIES_MINUTES],
        default="60",
    )


class TermsForm(FlaskForm):
    agree = BooleanField("I have read and agree to the Accrue Terms and Policies")
