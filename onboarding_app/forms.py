"""One form per page. Flask-WTF adds the CSRF token to each; labels are the visible ones."""

from __future__ import annotations

import re

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
)
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

from accrue.schema import SYNC_FREQUENCIES_MINUTES
from onboarding_app import crm

EMAIL = Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message="Enter an e-mail address like ana@acme.com.")
MIN_PASSWORD = 12
# zxcvbn's 0-4 scale; 3 is "safely unguessable: moderate protection from an offline attack".
GOOD_ENOUGH_SCORE = 3

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
        choices=[(o.key, o.name) for o in crm.catalog()],
        validators=[Optional()],
    )

    def validate_crm(self, field: RadioField) -> None:
        supported = {o.key for o in crm.catalog() if o.supported}
        if field.data and field.data not in supported:
            raise ValidationError("That CRM is coming soon: use the push API or a file import.")


class SalesforceDetailsForm(FlaskForm):
    auth_method = RadioField(
        "How should Accrue sign in to Salesforce?",
        choices=[("oauth", "Connect with Salesforce (recommended)"),
                 ("password", "Username, password and security token")],
        default="oauth",
    )
    environment = RadioField(
        crm.SALESFORCE_HELP["environment"].label,
        choices=[("production", "Production"), ("sandbox", "Sandbox")],
        default="production",
    )
    my_domain = StringField(crm.SALESFORCE_HELP["my_domain"].label,
                            validators=[Optional(), Length(max=253)])
    username = StringField(crm.SALESFORCE_HELP["username"].label,
                           validators=[Optional(), Length(max=254)])
    password = PasswordField(crm.SALESFORCE_HELP["password"].label,
                             validators=[Optional(), Length(max=200)])
    security_token = PasswordField(crm.SALESFORCE_HELP["security_token"].label,
                                   validators=[Optional(), Length(max=100)])

    def validate_my_domain(self, field: StringField) -> None:
        try:
            field.data = crm.normalise_my_domain(field.data or "")
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    def validate_username(self, field: StringField) -> None:
        if field.data and not EMAIL.regex.match(field.data.strip()):
            raise ValidationError("A Salesforce username looks like an e-mail address.")


class ReviewForm(FlaskForm):
    activities = BooleanField("Activities (calls, e-mails, meetings, to-dos)")
    frequency = SelectField(
        "How often should Accrue sync?",
        choices=[(str(m), FREQUENCY_LABELS[m]) for m in SYNC_FREQUENCIES_MINUTES],
        default="60",
    )


class TermsForm(FlaskForm):
    agree = BooleanField("I have read and agree to the Accrue Terms and Policies")
