"""The wizard's own forms: Select CRM, Review Data Import, Terms and Policies.

Provide Details' form is the connection's (`onboarding_app.connection.forms`): the
integration settings sign in again with it.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, RadioField, SelectField
from wtforms.validators import Optional, ValidationError

from accrue.schema import SYNC_FREQUENCIES_MINUTES
from onboarding_app.connection import crm
from onboarding_app.connection.forms import FREQUENCY_LABELS


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


class ReviewForm(FlaskForm):
    activities = BooleanField("Activities (calls, e-mails, meetings, to-dos)")
    frequency = SelectField(
        "How often should Accrue sync?",
        choices=[(str(m), FREQUENCY_LABELS[m]) for m in SYNC_FREQUENCIES_MINUTES],
        default="60",
    )


class TermsForm(FlaskForm):
    agree = BooleanField("I have read and agree to the Accrue Terms and Policies")
