"""The settings page's forms: the wizard's fields and checks, reused rather than rewritten
(signing in again uses Provide Details' own form of the tenant's CRM).

WTForms keeps a form's fields as unbound class attributes, so a field defined once on a
wizard form is the same field here: same label, choices, length limits and validator.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, RadioField
from wtforms.validators import DataRequired

from onboarding_app.wizard.forms import ReviewForm


class FrequencyForm(FlaskForm):
    """The sync frequency, with Review Data Import's choices and validation."""

    frequency = ReviewForm.frequency


class ImportsForm(FlaskForm):
    """The optional imports, Review Data Import's switches."""

    activities = ReviewForm.activities


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
