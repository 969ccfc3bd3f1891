"""CRM credentials typed in a form, merged with the saved ones: one rule for the wizard's
Provide Details and the settings page's "sign in again", for any CRM's spec.

A blank secret field keeps the saved value (U5), so changing the security token does not
mean typing the password again. The merged secrets go to the credential vault only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from accrue import crypto, tenants
from connectors.spec import ConnectorSpec, SetupValueError, prepare_connection
from onboarding_app.connection import crm, oauth
from onboarding_app.connection.forms import DetailsForm
from onboarding_app.extensions import warehouse


def stored_secrets(tenant_id: str) -> dict[str, Any]:
    """The saved secrets, to merge blanks with; {} when none or no longer decryptable."""
    try:
        return dict(tenants.load_connection(warehouse.engine, tenant_id).secrets)
    except (tenants.ConnectionNotFound, crypto.DecryptionError):
        return {}


def saved_for_method(info: tenants.ConnectionInfo | None, method_key: str) -> dict[str, Any]:
    """The saved secrets of a sign-in by this method, to keep behind blank fields (OAuth
    tokens are no password: they are not kept behind another method's fields)."""
    if info is None or info.config.get("auth") != method_key:
        return {}
    return stored_secrets(info.tenant_id)


def store_typed(spec: ConnectorSpec, tenant_id: str, form: DetailsForm,
                info: tenants.ConnectionInfo | None) -> list[str]:
    """Typed secrets over the saved ones, sealed in the vault once the method has every
    value it needs; returns the names (never the values) of the secret fields typed."""
    method = spec.auth(form.auth_method.data or None)
    typed = form.typed_secrets()
    try:
        secrets, config = form.prepared(kept=saved_for_method(info, method.key))
    except SetupValueError:
        return sorted(typed)  # still incomplete: the page says what is missing
    secret_names = {f.name for f in spec.fields if f.secret}
    config.update(crm.sandbox_config(spec))
    config["stored_fields"] = sorted(k for k in secrets if k in secret_names)
    tenants.save_credentials(warehouse.engine, tenant_id, spec.key, secrets, config)
    return sorted(typed)


def oauth_config(spec: ConnectorSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """The connector config of a browser sign-in, from the non-secret values the admin chose
    (an org's login host, say): what the adapter needs to refresh its tokens."""
    method = next(m for m in spec.auth_methods if m.kind == "oauth2_code")
    _, config = prepare_connection(spec, {**values, "auth": method.key}, partial=True)
    config.update(crm.sandbox_config(spec))
    client_id = oauth.client_id(spec)
    if client_id:
        config["client_id"] = client_id
    return config
