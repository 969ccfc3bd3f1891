"""The Push setup page: the wizard's step for a tenant fed by the push API (no CRM sign-in).

The first visit issues the tenant's client id and secret and shows the secret this once,
with a `curl` example signed by it; later visits show the example with a snippet that
signs (no secret is kept in clear anywhere to show again). A lost secret is replaced by
"Generate a new secret" (a rotation: the old one keeps working until retired in the
Integration settings). The page polls `push/status.json` and turns green when the first
batch arrives. Admins only, like every wizard page (security.ADMIN_BLUEPRINTS).
"""

from __future__ import annotations

from flask import jsonify, redirect, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from accrue.push import PUSH_CRM_TYPE, credentials, inbox
from accrue.push.credentials import IssuedSecret
from onboarding_app import audit, store
from onboarding_app.extensions import warehouse
from onboarding_app.forms import ActionForm
from onboarding_app.push.guide import guide
from onboarding_app.wizard import bp
from onboarding_app.wizard.flow import (
    back_or_save,
    form_action,
    gate,
    render,
    save,
    step_endpoint,
)


def _open() -> tuple[store.Wizard, Response | None]:
    """The wizard, or where to go instead: a step not reachable yet (gate), or the page of
    another choice than the push API."""
    wizard, _, blocked = gate("details")
    if blocked is None and wizard.section("crm").get("key") != PUSH_CRM_TYPE:
        blocked = redirect(url_for(step_endpoint(wizard, "details")))
    return wizard, blocked


def issue(tenant_id: str, event: str) -> IssuedSecret:
    """A new secret (the first, or one more beside the live ones), audited by name only."""
    issued = credentials.issue_secret(warehouse.engine, tenant_id)
    audit.record(warehouse.engine, event, detail={"credential_id": issued.credential_id})
    return issued


def _page(wizard: store.Wizard, issued: IssuedSecret | None) -> tuple[str, int]:
    return render("onboarding/push_setup.html", "details", wizard, title="Set up the push",
                  form=ActionForm(),
                  guide=guide(wizard.tenant_id, issued),
                  received=inbox.totals(warehouse.engine, wizard.tenant_id))


@bp.get("/push")
def push_setup() -> ResponseReturnValue:
    wizard, blocked = _open()
    if blocked:
        return blocked
    issued = None
    if not credentials.list_credentials(warehouse.engine, wizard.tenant_id):
        issued = issue(wizard.tenant_id, "push.secret_issued")
    return _page(wizard, issued)


@bp.post("/push/secret")
def push_new_secret() -> ResponseReturnValue:
    """ "Generate a new secret": shown once on the page this answers with."""
    wizard, blocked = _open()
    if blocked:
        return blocked
    ActionForm().validate_on_submit()  # CSRFProtect has already refused a bad token
    return _page(wizard, issue(wizard.tenant_id, "push.secret_rotated"))


@bp.post("/push")
def push_setup_post() -> ResponseReturnValue:
    wizard, blocked = _open()
    if blocked:
        return blocked
    left = back_or_save(wizard, "details", form_action(), url_for("onboarding.select_crm"))
    if left:
        return left
    save(wizard, "review")
    return redirect(url_for("onboarding.review"))


@bp.get("/push/status.json")
def push_status() -> ResponseReturnValue:
    """What the page's indicator shows: whether (and when) the first batch arrived."""
    wizard, _, blocked = gate("details")
    if blocked:
        return blocked
    got = inbox.totals(warehouse.engine, wizard.tenant_id)
    return jsonify(received=got.batches > 0, batches=got.batches, records=got.records,
                   last_received_at=got.last_received_at.isoformat()
                   if got.last_received_at else None)
