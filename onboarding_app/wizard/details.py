"""Provide Details: the CRM credentials (the fields its spec declares), its OAuth sign-in
when it has one, and the live test.

Secrets go to the credential vault and are never rendered back; a test always
uses what is stored, never what the browser sent. The outcome is said once, in
the page's result box, with the field to fix marked when the CRM says which.
"""

from __future__ import annotations

from typing import Any

from flask import (
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from accrue import crypto, tenants
from accrue.schema import utcnow
from connectors.spec import ConnectorSpec
from onboarding_app import audit, store
from onboarding_app.connection import credentials, crm, oauth
from onboarding_app.connection.forms import DetailsForm, details_form
from onboarding_app.extensions import limiter, warehouse
from onboarding_app.security import current_user, external_url
from onboarding_app.wizard import bp
from onboarding_app.wizard.flow import (
    connection_ok,
    current_connection,
    current_wizard,
    fingerprint,
    form_action,
    gate,
    render,
    save,
    saved_for_later,
    step_endpoint,
    wants_json,
)


def chosen_spec(wizard: store.Wizard) -> ConnectorSpec:
    return crm.spec_for(wizard.section("crm").get("key"))


def _gate() -> tuple[store.Wizard, tenants.ConnectionInfo | None, Response | None]:
    """`gate("details")`, and a feed's own setup page when one was chosen (no CRM to sign
    in to)."""
    wizard, info, blocked = gate("details")
    endpoint = step_endpoint(wizard, "details")
    if blocked is None and endpoint != "onboarding.details":
        blocked = redirect(url_for(endpoint))
    return wizard, info, blocked


def _layout(spec: ConnectorSpec, form: DetailsForm, sandbox_mode: bool) -> dict[str, Any]:
    """Which fields show above the sign-in choice (every method asks for them) and which in
    each method's panel. In demo mode, what the sandbox makes meaningless is left out,
    unless it already holds something (a saved value, or an error to fix)."""

    def shown_in_demo(setup: Any) -> bool:
        value = form[setup.name].data
        return bool(form[setup.name].errors) or value not in (None, "", setup.default)

    shown = [f for f in spec.fields
             if not (sandbox_mode and f.demo_hidden) or shown_in_demo(f)]
    everywhere = [f for f in shown if all(f.name in m.fields for m in spec.auth_methods)]
    panels = [(m, [f for f in shown if f.name in m.fields and f not in everywhere])
              for m in spec.auth_methods]
    return {"shared_fields": everywhere, "panels": panels}


def _details_context(wizard: store.Wizard, form: DetailsForm,
                     info: tenants.ConnectionInfo | None,
                     focus: str | None = None) -> dict[str, Any]:
    """What the page shows; `focus` is the id the browser scrolls to and focuses on load
    (an error after a full-page submit: no script needed, the CSP allows none inline)."""
    spec = chosen_spec(wizard)
    stored = set(info.config.get("stored_fields", [])) if info else set()
    tested = wizard.section("connection")
    oauth_keys = {m.key for m in spec.auth_methods if m.kind == "oauth2_code"}
    sandbox_mode = crm.sandbox_url(spec) is not None
    return {
        "spec": spec,
        **_layout(spec, form, sandbox_mode),
        "info": info,
        "saved_secrets": {f.name for f in spec.fields if f.secret and f.name in stored},
        "oauth_connected": bool(info and info.config.get("auth") in oauth_keys),
        "oauth_host": info.config.get("instance_host") if info else None,
        "oauth_available": bool(oauth_keys) and oauth.client_id(spec) is not None,
        "sandbox_mode": sandbox_mode,
        "tested": tested,
        "tested_current": connection_ok(wizard, info),
        # A failed test's field is marked, its words stay in the result box (said once).
        "blamed_field": tested.get("field") if tested and not tested.get("ok") else None,
        "focus": focus,
    }


def _error_focus(form: DetailsForm, outcome: crm.TestOutcome | None) -> str | None:
    """The first field in error, else the failed test's result box, else nothing."""
    if form.auth_method.errors:
        return "auth-error"
    for setup in form.spec.fields:
        if getattr(form, setup.name).errors:
            return setup.name
    return "test-result" if outcome is not None and not outcome.ok else None


@bp.get("/details")
def details() -> str | Response | tuple[str, int]:
    wizard, info, blocked = _gate()
    if blocked:
        return blocked
    spec = chosen_spec(wizard)
    form = details_form(spec.key)(data=wizard.section("details"))
    if not wizard.section("details") and spec.auth(None).kind == "oauth2_code" and (
            oauth.client_id(spec) is None):
        other = next((m for m in spec.auth_methods if m.kind != "oauth2_code"), None)
        form.auth_method.data = other.key if other else form.auth_method.data
    # Back from the CRM's consent page: bring the test's outcome into view.
    focus = "test-result" if session.pop("details_focus_result", False) else None
    return render("onboarding/details.html", "details", wizard, form=form,
                  **_details_context(wizard, form, info, focus))


def _save_details(wizard: store.Wizard, form: DetailsForm,
                  info: tenants.ConnectionInfo | None) -> list[str]:
    """Store the non-secret answers in the wizard and the secrets in the vault.

    A blank secret field keeps the saved value (U5). Returns the names (never
    the values) of the fields that changed, for the audit log.
    """
    user = current_user()
    spec = form.spec
    details = form.values()
    previous = wizard.section("details")
    changed = [k for k, v in details.items() if previous.get(k) != v]
    wizard.data["details"] = details
    method = spec.auth(details["auth_method"])
    if method.kind == "oauth2_code":
        org_fields = {f.name for f in spec.fields if f.identifies_account}
        if info is not None and info.config.get("auth") == method.key and (
                org_fields & set(changed)):
            # A different org or environment: the old tokens belong elsewhere.
            tenants.delete_connection(warehouse.engine, user.tenant_id)
        return changed
    if not form.typed_secrets() and not changed:
        return changed
    changed.extend(credentials.store_typed(spec, user.tenant_id, form, info))
    return changed


def _in_sentence(spec: ConnectorSpec, label: str) -> str:
    """A label inside a sentence: "Password" → "password", "Salesforce username" and
    "API key" unchanged."""
    first = label.split()[0] if label else ""
    if first in spec.name.split() or first.isupper():
        return label
    return label[:1].lower() + label[1:]


def _precheck(form: DetailsForm, info: tenants.ConnectionInfo | None) -> bool:
    """Missing fields are reported without contacting anyone."""
    spec = form.spec
    method = spec.auth(form.auth_method.data or None)
    if method.kind == "oauth2_code":
        if info is None or info.config.get("auth") != method.key:
            form.auth_method.errors = [
                *form.auth_method.errors, f"Click “Connect with {spec.name}” to sign in first."]
            return False
        return True
    stored = set(info.config.get("stored_fields", [])) if info and info.config.get(
        "auth") == method.key else set()
    ok = True
    for setup in spec.fields_for(method.key):
        typed = getattr(form, setup.name).data
        if setup.required and not (typed or "").strip() and not (
                setup.secret and setup.name in stored):
            field = getattr(form, setup.name)
            field.errors = [*field.errors, f"Enter the {_in_sentence(spec, setup.label)}."]
            ok = False
    return ok


def run_test(wizard: store.Wizard, info: tenants.ConnectionInfo) -> crm.TestOutcome:
    """Test the stored credentials (never what the browser sent) and remember the outcome."""
    user = current_user()
    try:
        connection = tenants.load_connection(warehouse.engine, user.tenant_id)
    except crypto.DecryptionError:
        outcome = crm.TestOutcome(
            False, "The saved credentials can no longer be read.", None,
            "Remove them and enter them again.")
    else:
        outcome = crm.test_connection(chosen_spec(wizard), connection.secrets,
                                      connection.config)
        del connection
    if outcome.ok is False and info.config.get("auth") == "oauth":
        outcome.field = None
    wizard.data["connection"] = {
        "ok": outcome.ok, "message": outcome.message, "hint": outcome.hint,
        "field": outcome.field, "tested_at": utcnow().isoformat(),
        "fingerprint": fingerprint(info),
    }
    if outcome.ok:
        wizard.data["discovery"] = {"objects": outcome.objects, "at": utcnow().isoformat()}
    audit.record(warehouse.engine, "connection.tested",
                 outcome="ok" if outcome.ok else "failed",
                 detail={"connection_id": info.id, "field": outcome.field,
                         "seconds": round(outcome.seconds, 2)})
    return outcome


@bp.post("/details")
@limiter.limit(lambda: str(current_app.config["CONNECTION_TEST_LIMIT"]), methods=["POST"],
               exempt_when=lambda: request.form.get("action") not in ("test", "continue"))
def details_post() -> ResponseReturnValue:
    wizard, info, blocked = _gate()
    if blocked:
        return blocked
    form = details_form(chosen_spec(wizard).key)()
    action = form_action()
    if not form.validate():
        if wants_json():
            return jsonify(ok=False, errors=form.errors), 400
        return render("onboarding/details.html", "details", wizard, 400, form=form,
                      **_details_context(wizard, form, info, _error_focus(form, None)))
    changed = _save_details(wizard, form, info)
    info = current_connection()
    if changed:
        audit.record(warehouse.engine, "credentials.saved", detail={"fields": changed})
    if action in ("back", "save"):
        save(wizard, "details")
        if action == "back":
            return redirect(url_for("onboarding.select_crm"))
        return saved_for_later("details")
    if not _precheck(form, info):
        save(wizard, "details")
        if wants_json():
            return jsonify(ok=False, errors=form.errors, message="Some details are missing."), 400
        return render("onboarding/details.html", "details", wizard, 400, form=form,
                      **_details_context(wizard, form, info, _error_focus(form, None)))
    assert info is not None
    outcome = None
    if action == "test" or not connection_ok(wizard, info):
        outcome = run_test(wizard, info)
    ok = connection_ok(wizard, info)
    save(wizard, "review" if ok and action == "continue" else "details")
    if wants_json():
        body = outcome.public() if outcome else {"ok": ok, "message": "Connected."}
        return jsonify(**body, next=url_for("onboarding.review") if ok else None)
    if ok and action == "continue":
        return redirect(url_for("onboarding.review"))
    return render("onboarding/details.html", "details", wizard, 200 if ok else 400, form=form,
                  **_details_context(wizard, form, info, _error_focus(form, outcome)))


@bp.post("/details/oauth")
def oauth_start() -> Response:
    """ "Connect with <CRM>": save the page, then off to the CRM's consent page."""
    wizard, info, blocked = _gate()
    if blocked:
        return blocked
    spec = chosen_spec(wizard)
    form = details_form(spec.key)()
    method = next((m for m in spec.auth_methods if m.kind == "oauth2_code"), None)
    if method is None:
        abort(404)
    form.auth_method.data = method.key
    if not form.validate():
        flash("Check the highlighted fields first.", "error")
        return redirect(url_for("onboarding.details"))
    _save_details(wizard, form, info)
    save(wizard, "details")
    redirect_uri = external_url("onboarding.oauth_callback")
    try:
        _, config = form.prepared(partial=True)
        target = oauth.begin(warehouse.engine, current_user(), spec, config, redirect_uri)
    except oauth.OAuthFlowError as exc:
        flash(str(exc), "error")
        return redirect(url_for("onboarding.details"))
    audit.record(warehouse.engine, "oauth.started")
    return redirect(target)


@bp.get("/oauth/callback")
def oauth_callback() -> str | Response | tuple[str, int]:
    """The CRM sends the browser back here with `code` and `state` (or `error`)."""
    user = current_user()
    wizard = current_wizard()
    spec = chosen_spec(wizard)
    try:
        verifier, redirect_uri = oauth.consume_state(
            warehouse.engine, user, request.args.get("state", ""))
    except oauth.OAuthFlowError as exc:
        audit.record(warehouse.engine, "oauth.callback", outcome="refused",
                     detail={"reason": "state"})
        return render_template("error.html", title="Connection not completed",
                               message=str(exc), back=url_for("onboarding.details")), 400
    if request.args.get("error"):
        denied = request.args.get("error") == "access_denied"
        audit.record(warehouse.engine, "oauth.callback", outcome="failed",
                     detail={"error": request.args.get("error", "")[:64]})
        flash(f"You chose not to allow access in {spec.name}. Click “Connect with "
              f"{spec.name}” to try again." if denied else f"{spec.name} did not complete "
              "the connection. Please try again.", "error")
        return redirect(url_for("onboarding.details"))
    method = next(m for m in spec.auth_methods if m.kind == "oauth2_code")
    details = {**wizard.section("details"), "auth_method": method.key}
    config = credentials.oauth_config(spec, details)
    try:
        tokens = oauth.exchange(spec, config, request.args.get("code", ""), verifier,
                                redirect_uri)
    except oauth.OAuthFlowError as exc:
        audit.record(warehouse.engine, "oauth.callback", outcome="failed")
        flash(str(exc), "error")
        return redirect(url_for("onboarding.details"))
    wizard.data["details"] = details
    if tokens.instance_host:
        config["instance_host"] = tokens.instance_host
    tenants.save_credentials(warehouse.engine, user.tenant_id, spec.key, tokens.secrets,
                             config)
    audit.record(warehouse.engine, "credentials.saved", detail={"fields": ["oauth"]})
    info = current_connection()
    assert info is not None
    run_test(wizard, info)
    save(wizard, "details")
    # The page says how the test went, once, in its result box (no flash to repeat it).
    session["details_focus_result"] = True
    return redirect(url_for("onboarding.details"))


@bp.post("/connections/<row_id:connection_id>/test")
@limiter.limit(lambda: str(current_app.config["CONNECTION_TEST_LIMIT"]))
def test_connection(connection_id: int) -> Response | tuple[Response, int]:
    """Re-test the saved connection (JSON); another tenant's id is a 404."""
    info = current_connection()
    if info is None or info.id != connection_id:
        abort(404)
    wizard = current_wizard()
    outcome = run_test(wizard, info)
    store.save_wizard(warehouse.engine, wizard.tenant_id, data=wizard.data)
    return jsonify(**outcome.public())


@bp.post("/connections/<row_id:connection_id>/delete")
def delete_connection(connection_id: int) -> Response:
    """Forget the saved credentials (works even when they can no longer be decrypted)."""
    info = current_connection()
    if info is None or info.id != connection_id:
        abort(404)
    tenants.delete_connection(warehouse.engine, current_user().tenant_id, info.crm_type)
    wizard = current_wizard()
    wizard.data.pop("connection", None)
    save(wizard, "details")
    audit.record(warehouse.engine, "credentials.deleted", detail={"connection_id": info.id})
    flash(f"The saved {crm.spec_for(info.crm_type).name} credentials were removed.", "info")
    return redirect(url_for("onboarding.details"))

