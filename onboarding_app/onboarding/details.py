"""Provide Details: the CRM credentials, Salesforce's OAuth sign-in, and the live test.

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
from onboarding_app import audit, crm, oauth, store
from onboarding_app.credentials import password_credentials, typed_secrets
from onboarding_app.extensions import limiter, warehouse
from onboarding_app.forms import SalesforceDetailsForm
from onboarding_app.onboarding.flow import (
    SECRET_FIELDS,
    bp,
    connection_ok,
    current_connection,
    current_wizard,
    fingerprint,
    form_action,
    gate,
    render,
    save,
    saved_for_later,
    wants_json,
)
from onboarding_app.security import current_user, external_url


def _details_context(wizard: store.Wizard, info: tenants.ConnectionInfo | None,
                     focus: str | None = None) -> dict[str, Any]:
    """What the page shows; `focus` is the id the browser scrolls to and focuses on load
    (an error after a full-page submit: no script needed, the CSP allows none inline)."""
    stored = set(info.config.get("stored_fields", [])) if info else set()
    tested = wizard.section("connection")
    return {
        "help": crm.SALESFORCE_HELP,
        "info": info,
        "saved_secrets": {name for name in SECRET_FIELDS if name in stored},
        "oauth_connected": bool(info and info.config.get("auth") == "oauth"),
        "oauth_host": info.config.get("instance_host") if info else None,
        "oauth_available": oauth.client_id() is not None,
        "sandbox_mode": crm.sandbox_url() is not None,
        "tested": tested,
        "tested_current": connection_ok(wizard, info),
        # A failed test's field is marked, its words stay in the result box (said once).
        "blamed_field": tested.get("field") if tested and not tested.get("ok") else None,
        "focus": focus,
    }


def _error_focus(form: SalesforceDetailsForm, outcome: crm.TestOutcome | None) -> str | None:
    """The first field in error, else the failed test's result box, else nothing."""
    if form.auth_method.errors:
        return "auth-error"
    for name in ("my_domain", "username", "password", "security_token"):
        if getattr(form, name).errors:
            return name
    return "test-result" if outcome is not None and not outcome.ok else None


@bp.get("/details")
def details() -> str | Response | tuple[str, int]:
    wizard, info, blocked = gate("details")
    if blocked:
        return blocked
    form = SalesforceDetailsForm(data=wizard.section("details"))
    if not oauth.client_id() and not wizard.section("details"):
        form.auth_method.data = "password"
    # Back from Salesforce's consent page: bring the test's outcome into view.
    focus = "test-result" if session.pop("details_focus_result", False) else None
    return render("onboarding/details.html", "details", wizard, form=form,
                  **_details_context(wizard, info, focus))


def _save_details(wizard: store.Wizard, form: SalesforceDetailsForm,
                  info: tenants.ConnectionInfo | None) -> list[str]:
    """Store the non-secret answers in the wizard and the secrets in the vault.

    A blank secret field keeps the saved value (U5). Returns the names (never
    the values) of the fields that changed, for the audit log.
    """
    user = current_user()
    details = {
        "auth_method": form.auth_method.data or "oauth",
        "environment": form.environment.data or "production",
        "my_domain": form.my_domain.data or "",
        "username": (form.username.data or "").strip(),
    }
    previous = wizard.section("details")
    changed = [k for k, v in details.items() if previous.get(k) != v]
    wizard.data["details"] = details
    if details["auth_method"] != "password":
        moved = {"environment", "my_domain"} & set(changed)
        if info is not None and info.config.get("auth") == "oauth" and moved:
            # A different org or environment: the old tokens belong elsewhere.
            tenants.delete_connection(warehouse.engine, user.tenant_id)
        return changed
    typed = typed_secrets(form)
    if not typed and not changed:
        return changed
    secrets, config = password_credentials(user.tenant_id, info, details, typed)
    changed.extend(sorted(typed))
    if "password" in secrets and secrets.get("username"):
        tenants.save_credentials(warehouse.engine, user.tenant_id, "salesforce", secrets, config)
    return changed


def _precheck(form: SalesforceDetailsForm, info: tenants.ConnectionInfo | None) -> bool:
    """Missing fields are reported without contacting anyone."""
    ok = True
    if form.auth_method.data == "password":
        stored = set(info.config.get("stored_fields", [])) if info and info.config.get(
            "auth") == "password" else set()
        if not (form.username.data or "").strip():
            form.username.errors = [*form.username.errors, "Enter the Salesforce username."]
            ok = False
        if not form.password.data and "password" not in stored:
            form.password.errors = [*form.password.errors, "Enter the password."]
            ok = False
    elif info is None or info.config.get("auth") != "oauth":
        form.auth_method.errors = [
            *form.auth_method.errors, "Click “Connect with Salesforce” to sign in first."]
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
        outcome = crm.test_salesforce(connection.secrets, connection.config)
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
    wizard, info, blocked = gate("details")
    if blocked:
        return blocked
    form = SalesforceDetailsForm()
    action = form_action()
    if not form.validate():
        if wants_json():
            return jsonify(ok=False, errors=form.errors), 400
        return render("onboarding/details.html", "details", wizard, 400, form=form,
                      **_details_context(wizard, info, _error_focus(form, None)))
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
                      **_details_context(wizard, info, _error_focus(form, None)))
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
                  **_details_context(wizard, info, _error_focus(form, outcome)))


@bp.post("/details/oauth")
def oauth_start() -> Response:
    """ "Connect with Salesforce": save the page, then off to Salesforce's consent page."""
    wizard, info, blocked = gate("details")
    if blocked:
        return blocked
    form = SalesforceDetailsForm()
    if not form.validate():
        flash("Check the highlighted fields first.", "error")
        return redirect(url_for("onboarding.details"))
    form.auth_method.data = "oauth"
    _save_details(wizard, form, info)
    save(wizard, "details")
    redirect_uri = external_url("onboarding.oauth_callback")
    try:
        target = oauth.begin(warehouse.engine, current_user(), wizard.section("details"),
                             redirect_uri)
    except oauth.OAuthFlowError as exc:
        flash(str(exc), "error")
        return redirect(url_for("onboarding.details"))
    audit.record(warehouse.engine, "oauth.started")
    return redirect(target)


@bp.get("/oauth/callback")
def oauth_callback() -> str | Response | tuple[str, int]:
    """Salesforce sends the browser back here with `code` and `state` (or `error`)."""
    user = current_user()
    wizard = current_wizard()
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
        flash("You chose not to allow access in Salesforce. Click “Connect with Salesforce” "
              "to try again." if denied else "Salesforce did not complete the connection. "
              "Please try again.", "error")
        return redirect(url_for("onboarding.details"))
    details = wizard.section("details") or {"auth_method": "oauth"}
    try:
        tokens = oauth.exchange(details, request.args.get("code", ""), verifier, redirect_uri)
    except oauth.OAuthFlowError as exc:
        audit.record(warehouse.engine, "oauth.callback", outcome="failed")
        flash(str(exc), "error")
        return redirect(url_for("onboarding.details"))
    details["auth_method"] = "oauth"
    wizard.data["details"] = details
    config = crm.connector_config(details)
    config["instance_host"] = tokens.instance_host
    tenants.save_credentials(warehouse.engine, user.tenant_id, "salesforce", tokens.secrets,
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
    tenants.delete_connection(warehouse.engine, current_user().tenant_id, "salesforce")
    wizard = current_wizard()
    wizard.data.pop("connection", None)
    save(wizard, "details")
    audit.record(warehouse.engine, "credentials.deleted", detail={"connection_id": info.id})
    flash("The saved Salesforce credentials were removed.", "info")
    return redirect(url_for("onboarding.details"))

