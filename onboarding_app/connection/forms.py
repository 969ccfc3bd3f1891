"""The forms of a tenant's CRM connection, shared by the wizard and the integration settings:
Provide Details (built from the CRM's spec) and the sync frequencies' labels.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from flask_wtf import FlaskForm
from wtforms import PasswordField, RadioField, StringField, TextAreaField
from wtforms.validators import Length, Optional

from connectors.spec import ConnectorSpec, SetupField, SetupValueError, prepare_connection
from onboarding_app.connection import crm

SETUP_VALUE_MAX = 4000  # a pasted private key fits; the request limit caps the rest

FREQUENCY_LABELS = {
    5: "Every 5 minutes", 15: "Every 15 minutes", 30: "Every 30 minutes",
    60: "Every hour (recommended)", 360: "Every 6 hours", 1440: "Once a day",
}


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
