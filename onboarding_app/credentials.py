"""CRM credentials typed in a form, merged with the saved ones: one rule for the wizard's
Provide Details and the settings page's "sign in again".

A blank secret field keeps the saved value (U5), so changing the security token does not
mean typing the password again. The merged secrets go to the credential vault only.
"""

from __future__ import annotations

from typing import Any

from accrue import crypto, tenants
from onboarding_app import crm
from onboarding_app.extensions import warehouse

SECRET_FIELDS = ("password", "security_token")  # a password login's secret fields


def typed_secrets(form: Any) -> dict[str, Any]:
    """The secret fields the admin filled in; a blank one means "keep the saved value"."""
    return {name: getattr(form, name).data for name in SECRET_FIELDS if getattr(form, name).data}


def stored_secrets(tenant_id: str) -> dict[str, Any]:
    """The saved secrets, to merge blanks with; {} when none or no longer decryptable."""
    try:
        return dict(tenants.load_connection(warehouse.engine, tenant_id).secrets)
    except (tenants.ConnectionNotFound, crypto.DecryptionError):
        return {}


def password_credentials(tenant_id: str, info: tenants.ConnectionInfo | None,
                         details: dict[str, Any], typed: dict[str, Any],
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The secrets and connector config of a password login: what was typed over what is
    saved (only saved secrets of a password login: OAuth tokens are no password)."""
    stored = stored_secrets(tenant_id) if info and info.config.get("auth") == (
        "password") else {}
    secrets: dict[str, Any] = {key: stored[key] for key in SECRET_FIELDS if key in stored}
    secrets.update(typed)
    if details.get("username"):
        secrets["username"] = details["username"]
    config = crm.connector_config(details)
    config["stored_fields"] = sorted(k for k in secrets if k in SECRET_FIELDS)
    return secrets, config
