"""The Push API page of the Integration settings: what a push tenant's admin manages.

The URL and client id, secret rotation (a new secret is shown once, on the page that
answers "Generate a new secret"; the old ones keep verifying until "Retire old secrets"),
the recent pushes with their result, and the examples. The tenant is always the
logged-in admin's; the blueprint's checks (integration.__init__) keep out everyone else
and send a push tenant's admin here from the CRM settings, which have nothing to manage.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from accrue import tenants
from accrue.push import PUSH_CRM_TYPE, credentials, inbox
from accrue.push.credentials import IssuedSecret
from accrue.warehouse import Warehouse
from onboarding_app import audit
from onboarding_app.extensions import warehouse
from onboarding_app.forms import ActionForm
from onboarding_app.integration import bp
from onboarding_app.push.guide import guide
from onboarding_app.security import current_user

RECENT_BATCHES = 20  # the page lists these; older ones are in the inbox, not on the page


def push_tenant() -> str:
    tenant = tenants.require_tenant(warehouse.engine, current_user().tenant_id)
    if tenant.crm_type != PUSH_CRM_TYPE:
        abort(404)  # a CRM tenant has no push API to manage
    return tenant.id


def _render(tenant_id: str, issued: IssuedSecret | None = None) -> tuple[str, int]:
    return render_template(
        "integration/push.html", form=ActionForm(), guide=guide(tenant_id, issued),
        secrets=credentials.list_credentials(warehouse.engine, tenant_id),
        batches=inbox.recent_batches(warehouse.engine, tenant_id, RECENT_BATCHES),
        received=inbox.totals(warehouse.engine, tenant_id),
        # Per tenant, not per batch: a record is quarantined when applied, not when pushed.
        quarantined=Warehouse(warehouse.engine).quarantine_count(tenant_id)), 200


@bp.get("/push")
def push_page() -> ResponseReturnValue:
    return _render(push_tenant())


@bp.post("/push/rotate")
def push_rotate() -> ResponseReturnValue:
    """A new secret beside the live ones: shown on this answer only."""
    ActionForm().validate_on_submit()  # CSRFProtect has already refused a bad token
    tenant_id = push_tenant()
    issued = credentials.issue_secret(warehouse.engine, tenant_id)
    audit.record(warehouse.engine, "push.secret_rotated",
                 detail={"credential_id": issued.credential_id})
    return _render(tenant_id, issued)


@bp.post("/push/retire")
def push_retire() -> Response:
    """End a rotation: every secret but the newest stops verifying pushes."""
    ActionForm().validate_on_submit()
    tenant_id = push_tenant()
    try:
        retired = credentials.retire_old_secrets(warehouse.engine, tenant_id)
    except credentials.PushCredentialError:
        flash("There is no live secret: generate one first.", "error")
        return redirect(url_for("integration.push_page", _anchor="secrets"))
    audit.record(warehouse.engine, "push.secrets_retired", detail={"retired": retired})
    flash(f"Retired {retired} old secret(s): only the newest one signs pushes now."
          if retired else "Only one secret is live: there was nothing to retire.",
          "success" if retired else "info")
    return redirect(url_for("integration.push_page", _anchor="secrets"))
