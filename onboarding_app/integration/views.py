"""The Integration settings page and its actions; each POST redirects back to the page.

The tenant is always the logged-in admin's (`_tenant`). A change is made only when the
tenant is in a state where it means something (nothing syncs while paused, "Sync now"
needs an active integration, resuming needs credentials), and recorded in the audit
trail with names and choices, never values of secrets.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from accrue import sync_schedule, tenants
from accrue.schema import utcnow
from onboarding_app import audit, store
from onboarding_app.connection import credentials as credentials_rule
from onboarding_app.connection import crm, imports, oauth
from onboarding_app.connection.forms import FREQUENCY_LABELS, DetailsForm, details_form
from onboarding_app.extensions import limiter, warehouse
from onboarding_app.forms import ActionForm
from onboarding_app.integration import bp, history
from onboarding_app.integration.disconnect import disconnect
from onboarding_app.integration.forms import (
    DisconnectForm,
    FrequencyForm,
    ImportsForm,
)
from onboarding_app.security import current_user, external_url

PAGE = "integration.page"


def _tenant() -> tenants.Tenant:
    return tenants.require_tenant(warehouse.engine, current_user().tenant_id)


def _crm_name(tenant: tenants.Tenant) -> str:
    names = {option.key: option.name for option in crm.choices()}
    return names.get(tenant.crm_type, tenant.crm_type.title())


def _reauth_form(tenant: tenants.Tenant) -> DetailsForm:
    """Provide Details' form of the tenant's CRM; the page shows each sign-in method's fields
    except those choosing the org (another org's records would mix with these)."""
    details = _details()
    return details_form(tenant.crm_type)(data={k: v for k, v in details.items()
                                               if k != "auth_method"})


def _state(tenant: tenants.Tenant, info: tenants.ConnectionInfo | None) -> str:
    """active, paused, or disconnected (no credentials: nothing can sync)."""
    return "disconnected" if info is None else tenant.status


def _details() -> dict[str, Any]:
    """The wizard's non-secret answers about the connection (environment, My Domain...)."""
    return store.load_wizard(warehouse.engine, current_user().tenant_id).section("details")


def _remember_details(**values: Any) -> None:
    """Keep the wizard's saved answers in step with the connection now in use."""
    wizard = store.load_wizard(warehouse.engine, current_user().tenant_id)
    wizard.data["details"] = {**wizard.section("details"), **values}
    store.save_wizard(warehouse.engine, wizard.tenant_id, data=wizard.data)


def _render(status: int = 200, **forms: Any) -> tuple[str, int]:
    tenant = _tenant()
    info = tenants.connection_info(warehouse.engine, tenant.id)
    crm_name = _crm_name(tenant)
    schedule = sync_schedule.load(warehouse.engine, [tenant.id]).get(
        tenant.id, sync_schedule.TenantSchedule(tenant.id))
    context = {
        "tenant": tenant, "info": info, "state": _state(tenant, info), "crm_name": crm_name,
        "schedule": schedule, "action_form": ActionForm(),
        "running_since": history.running_since(tenant.id, utcnow()),
        "frequency_label": FREQUENCY_LABELS.get(tenant.sync_frequency_minutes, ""),
        "frequency_form": FrequencyForm(data={"frequency": str(tenant.sync_frequency_minutes)}),
        "imports_form": ImportsForm(data=imports.switches(tenant)),
        "reauth_form": _reauth_form(tenant),
        "spec": crm.spec_for(tenant.crm_type),
        "oauth_available": oauth.client_id(crm.spec_for(tenant.crm_type)) is not None,
        "objects": history.by_object(tenant.id, crm_name),
        "runs": history.latest_runs(tenant.id, crm_name),
        "changes": history.changes(tenant.id),
    }
    context.update(forms)
    return render_template("integration/page.html", **context), status


def _back(anchor: str) -> Response:
    return redirect(url_for(PAGE, _anchor=anchor))


@bp.get("")
def page() -> tuple[str, int]:
    return _render()


# -- pause and resume --------------------------------------------------------------------


@bp.post("/pause")
def pause() -> Response:
    """Nothing syncs while paused (the scheduler only syncs `active` tenants); data stays."""
    ActionForm().validate_on_submit()  # CSRFProtect has already refused a bad token
    tenant = _tenant()
    if tenant.status != "active":
        flash("The integration is not running: there is nothing to pause.", "info")
        return _back("state")
    tenants.set_status(warehouse.engine, tenant.id, "paused")
    sync_schedule.cancel_request(warehouse.engine, tenant.id)
    audit.record(warehouse.engine, "integration.paused")
    flash("Paused. Accrue does not sync until you resume; the data synced so far stays "
          "available.", "success")
    return _back("state")


@bp.post("/resume")
def resume() -> Response:
    ActionForm().validate_on_submit()
    tenant = _tenant()
    if tenants.connection_info(warehouse.engine, tenant.id) is None:
        flash("Sign in to your CRM again first: Accrue has no credentials to sync with.",
              "error")
        return _back("credentials")
    if tenant.status != "paused":
        flash("The integration is already running.", "info")
        return _back("state")
    tenants.set_status(warehouse.engine, tenant.id, "active")
    audit.record(warehouse.engine, "integration.resumed")
    flash(f"Resumed. Accrue syncs {FREQUENCY_LABELS[tenant.sync_frequency_minutes].lower()} "
          "again; an overdue sync starts within a minute.", "success")
    return _back("state")


# -- frequency and "Sync now" --------------------------------------------------------------


@bp.post("/frequency")
def frequency() -> ResponseReturnValue:
    form = FrequencyForm()
    if not form.validate():
        return _render(400, frequency_form=form)
    tenant = _tenant()
    minutes = int(form.frequency.data)
    if minutes != tenant.sync_frequency_minutes:
        tenants.set_sync_frequency(warehouse.engine, tenant.id, minutes)
        wizard = store.load_wizard(warehouse.engine, tenant.id)
        wizard.data["review"] = {**wizard.section("review"), "frequency": minutes}
        store.save_wizard(warehouse.engine, tenant.id, data=wizard.data)
        audit.record(warehouse.engine, "integration.frequency_changed",
                     detail={"from": tenant.sync_frequency_minutes, "to": minutes})
    flash(f"Accrue syncs {FREQUENCY_LABELS[minutes].lower()}.", "success")
    return _back("frequency")


@bp.post("/imports")
def optional_imports() -> ResponseReturnValue:
    """Switch optional imports on or off: the next sync reads exactly what is switched on."""
    form = ImportsForm()
    if not form.validate():
        return _render(400, imports_form=form)
    tenant = _tenant()
    wanted = {k: bool(getattr(form, k).data) for k in imports.OPTIONAL_IMPORTS}
    before = imports.switches(tenant)
    if wanted != before:
        imports.save(warehouse.engine, tenant.id, wanted)
        audit.record(warehouse.engine, "integration.imports_changed",
                     detail={"from": before, "to": wanted})
    if wanted["activities"]:
        flash("Activities are imported: the next sync reads them, and stalled deals are "
              "found from them.", "success")
    else:
        flash("Activities are not imported: no sync reads them. Those synced so far are "
              "kept.", "success")
    return _back("imports")


@bp.post("/sync-now")
def sync_now() -> Response:
    """Ask the scheduler for a sync at its next tick; one pending request at a time."""
    ActionForm().validate_on_submit()
    tenant = _tenant()
    if _state(tenant, tenants.connection_info(warehouse.engine, tenant.id)) != "active":
        audit.record(warehouse.engine, "integration.sync_requested", outcome="refused",
                     detail={"reason": "not active"})
        flash("Resume the integration first: nothing syncs while it is paused or "
              "disconnected.", "error")
        return _back("sync")
    if not sync_schedule.request_sync(warehouse.engine, tenant.id, utcnow()):
        audit.record(warehouse.engine, "integration.sync_requested", outcome="refused",
                     detail={"reason": "already pending"})
        flash("A sync is already requested; it starts within a minute.", "info")
        return _back("sync")
    audit.record(warehouse.engine, "integration.sync_requested")
    running = history.running_since(tenant.id, utcnow()) is not None
    flash("Sync requested: it starts " + ("when the sync in progress has ended." if running
                                          else "within a minute."), "success")
    return _back("sync")


# -- signing in again ------------------------------------------------------------------


def _test_then_save(tenant: tenants.Tenant, secrets: dict[str, Any], config: dict[str, Any],
                    method: str) -> crm.TestOutcome:
    """The Provide Details test on the new credentials; saved only if it passes, so a
    mistake never replaces credentials that work. Audited either way."""
    outcome = crm.test_connection(crm.spec_for(tenant.crm_type), secrets, config,
                                  discover=False)
    if outcome.ok:
        tenants.save_credentials(warehouse.engine, tenant.id, tenant.crm_type, secrets, config)
    audit.record(warehouse.engine, "integration.reauthenticated",
                 outcome="ok" if outcome.ok else "failed",
                 detail={"method": method, "field": outcome.field,
                         "seconds": round(outcome.seconds, 2)})
    return outcome


def _signed_in(tenant: tenants.Tenant) -> None:
    follow = (" Resume the integration to sync again." if tenant.status != "active" else
              " The next sync uses them.")
    flash("Signed in again: the new credentials work and are saved." + follow, "success")


@bp.post("/credentials")
@limiter.limit(lambda: str(current_app.config["CONNECTION_TEST_LIMIT"]))
def credentials() -> ResponseReturnValue:
    """New credentials for one sign-in method (a blank secret keeps the saved value)."""
    tenant = _tenant()
    spec = crm.spec_for(tenant.crm_type)
    form = details_form(spec.key)()
    details = _details()
    for setup in spec.fields:  # the org stays the one connected, whatever was posted
        if setup.identifies_account and setup.name in details:
            getattr(form, setup.name).data = details[setup.name]
    typed_in = [m for m in spec.auth_methods if m.kind != "oauth2_code"]
    if not request.form.get("auth_method") and typed_in:  # the form's hidden choice, or
        form.auth_method.data = typed_in[0].key  # the first method that types secrets in
    method = spec.auth(form.auth_method.data or None)
    if method.kind == "oauth2_code" or not form.validate():
        return _render(400, reauth_form=form)
    info = tenants.connection_info(warehouse.engine, tenant.id)
    kept = credentials_rule.saved_for_method(info, method.key)
    missing = [s for s in spec.fields_for(method.key) if s.required and not (
        (getattr(form, s.name).data or "").strip() or (s.secret and s.name in kept))]
    for setup in missing:
        field = getattr(form, setup.name)
        field.errors = [*field.errors, "Enter it to sign in again."]
    if missing:
        return _render(400, reauth_form=form)
    secrets, config = form.prepared(kept=kept)
    config.update(crm.sandbox_config(spec))
    config["stored_fields"] = sorted(s.name for s in spec.fields if s.secret and s.name in secrets)
    outcome = _test_then_save(tenant, secrets, config, method.key)
    del secrets
    if not outcome.ok:  # said once, above the form (as the wizard says it in its result box)
        why = (outcome.hint or outcome.message).rstrip(".")
        return _render(400, reauth_form=form, reauth_error=(
            f"These credentials did not work: {why}. The saved ones are unchanged."))
    _remember_details(**form.values())
    _signed_in(tenant)
    return _back("credentials")


@bp.post("/oauth")
def oauth_start() -> Response:
    """Sign in on the CRM's own page again (the wizard's OAuth flow, back to this page)."""
    ActionForm().validate_on_submit()
    spec = crm.spec_for(_tenant().crm_type)
    try:
        target = oauth.begin(warehouse.engine, current_user(), spec,
                             credentials_rule.oauth_config(spec, _details()),
                             external_url("integration.oauth_callback"))
    except oauth.OAuthFlowError as exc:
        flash(str(exc), "error")
        return _back("credentials")
    audit.record(warehouse.engine, "integration.oauth_started")
    return redirect(target)


@bp.get("/oauth/callback")
def oauth_callback() -> ResponseReturnValue:
    """Back from the CRM: exchange the code, test the tokens, save them only if they work."""
    tenant = _tenant()
    spec = crm.spec_for(tenant.crm_type)
    method = next(m for m in spec.auth_methods if m.kind == "oauth2_code")
    config = credentials_rule.oauth_config(spec, _details())
    try:
        tokens = oauth.complete(warehouse.engine, current_user(), spec, config, request.args)
    except oauth.OAuthFlowError as exc:
        audit.record(warehouse.engine, "integration.reauthenticated",
                     outcome="refused" if exc.reason == "state" else "failed",
                     detail={"method": "oauth", "reason": exc.reason})
        if exc.reason == "state":
            return render_template("error.html", title="Sign-in not completed",
                                   message=str(exc), back=url_for(PAGE)), 400
        flash(f"{exc} The saved credentials are unchanged.", "error")
        return _back("credentials")
    if tokens.instance_host:
        config["instance_host"] = tokens.instance_host
    outcome = _test_then_save(tenant, tokens.secrets, config, method.key)
    if not outcome.ok:
        flash(f"Signed in, but the test failed: {outcome.hint or outcome.message} The saved "
              "credentials are unchanged.", "error")
        return _back("credentials")
    _remember_details(auth_method=method.key)
    _signed_in(tenant)
    return _back("credentials")


# -- disconnecting ---------------------------------------------------------------------


@bp.route("/disconnect", methods=["GET", "POST"])
def disconnect_page() -> ResponseReturnValue:
    """The confirmation page; also where kept data is deleted after a disconnection."""
    tenant = _tenant()
    info = tenants.connection_info(warehouse.engine, tenant.id)
    form = DisconnectForm()
    if info is None and request.method == "GET":
        form.synced_data.data = "delete"  # already disconnected: deleting is what is left
    if request.method == "GET" or not form.validate():
        status = 400 if request.method == "POST" else 200
        return render_template("integration/disconnect.html", form=form, info=info,
                               crm_name=_crm_name(tenant)), status
    outcome = disconnect(tenant, info, _crm_name(tenant),
                         delete_data=form.synced_data.data == "delete")
    flash(outcome.message, "error" if outcome.refused else "success")
    return _back("state")
