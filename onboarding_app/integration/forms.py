"""The settings page's forms: the wizard's fields and checks, reused rather than rewritten.

WTForms keeps a form's fields as unbound class attributes, so a field defined once on a
wizard form is the same field here: same label, choices, length limits and validator.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, RadioField
from wtforms.validators import DataRequired

from onboarding_app.forms import ReviewForm, SalesforceDetailsForm


class FrequencyForm(FlaskForm):
    """The sync frequency, with Review Data Import's choices and validation."""

    frequency = ReviewForm.frequency


class ImportsForm(FlaskForm):
    """The optional imports, Review Data Import's switches."""

    activities = ReviewForm.activities


class ReauthenticateForm(FlaskForm):
    """New credentials for the connected account: Provide Details' fields without the choice
    of environment or My Domain (signing in again must not switch to another org, whose
    records would mix with the ones Accrue holds). Never pre-filled with a secret."""

    username = SalesforceDetailsForm.username
    password = SalesforceDetailsForm.password
    security_token = SalesforceDetailsForm.security_token
    validate_username = SalesforceDetailsForm.validate_username


class DisconnectForm(FlaskForm):
    """Disconnecting needs an explicit choice about the data and a ticked confirmation."""

    synced_data = RadioField(
        "What should happen to the data Accrue has synced?",
        choices=[("keep", "Keep it: results stay readable, nothing new comes in"),
                 ("delete", "Delete it now: records, sync history and results")],
        default="keep",
    )
    confirm = BooleanField(
        "I understand: Accrue forgets the credentials at once and stops syncing",
        validators=[DataRequired(message="Tick the box to confirm.")],
    )
