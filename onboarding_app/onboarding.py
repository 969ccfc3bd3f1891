"""The concierge wizard: Welcome → Select CRM → Provide Details → Review → Terms → Complete.

Every page saves to the database (U4) and records where the admin is, so the
next login resumes there (U5). Buttons are plain form submits named `action`
(`back`, `save`, `continue`, `test`): the wizard works without JavaScript,
and app.js only adds the unsaved-changes prompts and an inline connection
test. Secrets go to the credential vault and are never rendered back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
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
from onboarding_app import audit, crm, notify, oauth, store
from onboarding_app.extensions import limiter, warehouse
from onboarding_app.forms import (
    FREQUENCY_LABELS,
    ActionForm,
    ReviewForm,
    SalesforceDetailsForm,
    SelectCrmForm,
    TermsForm,
)
from onboarding_app.security import (
    current_user,
    external_url,
    get_logger,
    login_required,
    safe_next,
)

bp = Blueprint("onboarding", __name__, url_prefix="/onboarding")
logger = get_logger(__name__)

STEP_TITLES = {
    "welcome": "Welcome",
    "crm": "Select CRM",
    "details": "Provide Details",
    "review": "Review Data Import",
    "terms": "Terms and Policies",
    "complete": "Integration Complete",
}
STEP_ENDPOINTS = {
    "welcome": "onboarding.welcome", "crm": "onboarding.select_crm",
    "details": "onboarding.details", "review": "onboarding.review",
    "terms": "onboarding.terms", "complete": "onboarding.complete",
}
STEPS = list(STEP_TITLES)
SECRET_FIELDS = ("password", "security_token")
OPTIONAL_IMPORTS = ("activities", "market_data", "vendor_price_lists")


@bp.before_request
@login_required
def _require_login() -> None:
    """Every wizard page needs a logged-in admin (login_required returns a redirect if not)."""


# -- state helpers --------------------------------------------------------------------


def _wizard() -> store.Wizard:
    return store.load_wizard(warehouse.engine, current_user().tenant_id)


def _connection() -> tenants.ConnectionInfo | None:
    return tenants.connection_info(warehouse.engine, current_user().tenant_id)


def _fingerprint(info: tenants.ConnectionInfo | None) -> str | None:
    return None if info is None else f"{info.id}:{info.updated_at.isoformat()}"


def _connection_ok(wizard: store.Wizard, info: tenants.ConnectionInfo | None) -> bool:
    """The saved credentials passed a test, and have not changed since."""
    tested = wizard.section("connection")
    return bool(tested.get("ok")) and tested.get("fingerprint") == _fingerprint(info)


def furthest_step(wizard: store.Wizard, info: tenants.ConnectionInfo | None) -> str:
    """The last step the admin may open: each needs what the ones before it produce."""
    if wizard.complete:
        return "complete"
    if wizard.section("crm").get("key") != "salesforce":
        return "crm"
    if not _connection_ok(wizard, info):
        return "details"
    if not wizard.section("review").get("saved"):
        return "review"
    if wizard.terms_agreed_at is None or wizard.terms_version != _terms_version():
        return "terms"
    return "complete"


def _terms_version() -> str:
    return str(current_app.config["TERMS_VERSION"])


def _gate(step: str) -> tuple[store.Wizard, tenants.ConnectionInfo | None, Response | None]:
    """Load the state; a redirect when the step is not reachable yet (or setup is done)."""
    wizard = _wizard()
    info = _connection()
    if wizard.complete and step != "complete":
        return wizard, info, redirect(url_for("status.page"))
    furthest = furthest_step(wizard, info)
    if STEPS.index(step) > STEPS.index(furthest):
        return wizard, info, redirect(url_for(STEP_ENDPOINTS[furthest]))
    return wizard, info, None


def _save(wizard: store.Wizard, step: str, **values: Any) -> None:
    store.save_wizard(warehouse.engine, wizard.tenant_id, step=step, data=wizard.data, **values)


def _action() -> str:
    action = request.form.get("action", "continue")
    return action if action in ("back", "save", "continue", "test") else "continue"


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


def _saved_for_later(step: str) -> Response:
    audit.record(warehouse.engine, "onboarding.saved", detail={"step": step})
    flash(f"Saved. Next time you log in you will continue at “{STEP_TITLES[step]}”.", "success")
    return redirect(safe_next(request.form.get("next_url")) or url_for("main.home"))


def _render(template: str, step: str, wizard: store.Wizard, status: int = 200,
            **context: Any) -> tuple[str, int]:
    info = context.pop("info", _connection())
    furthest = furthest_step(wizard, info)
    steps = [
        {"key": key, "title": STEP_TITLES[key], "url": url_for(STEP_ENDPOINTS[key]),
         "reachable": STEPS.index(key) <= STEPS.index(furthest), "number": number,
         "done": STEPS.index(key) < STEPS.index(step) or wizard.complete}
        for number, key in enumerate(STEPS[1:], start=1)
    ]
    # U1 after a U5 landing: the login's pop-up shows on the step the admin lands on.
    welcome_back = bool(session.pop("concierge_popup", False)) and not wizard.complete
    return render_template(
        template, step=step, steps=steps, title=STEP_TITLES[step], wizard=wizard,
        step_number=STEPS.index(step), welcome_back=welcome_back,
        popup_form=ActionForm() if welcome_back else None, **context,
    ), status


# -- Welcome ----------------------------------------------------------------------------


def saved_step(wizard: store.Wizard, info: tenants.ConnectionInfo | None) -> str | None:
    """U5: the step to resume at, or None when setup is done or nothing was saved yet.

    The saved step, unless what it depends on changed since (e.g. the
    credentials were removed): then the furthest step that can open.
    """
    if wizard.complete or wizard.step == "welcome":
        return None
    furthest = furthest_step(wizard, info)
    return wizard.step if STEPS.index(wizard.step) <= STEPS.index(furthest) else furthest


def login_landing(tenant_id: str) -> str | None:
    """Where a login lands (U5): the saved step's URL, or None for the home page."""
    wizard = store.load_wizard(warehouse.engine, tenant_id)
    step = saved_step(wizard, tenants.connection_info(warehouse.engine, tenant_id))
    return url_for(STEP_ENDPOINTS[step]) if step else None


@bp.get("/")
def resume() -> Response:
    """U5: straight to the last saved step."""
    wizard, info, _ = _gate("welcome")
    if wizard.complete:
        return redirect(url_for("status.page"))
    return redirect(url_for(STEP_ENDPOINTS[saved_step(wizard, info) or "welcome"]))


@bp.get("/welcome")
def welcome() -> str | Response | tuple[str, int]:
    wizard, _, blocked = _gate("welcome")
    if blocked:
        return blocked
    return _render("onboarding/welcome.html", "welcome", wizard, form=ActionForm())


@bp.post("/start")
def start() -> Response:
    """ "Start Now": the P1 clock starts here (kept from the first click)."""
    wizard = _wizard()
    if wizard.complete:
        return redirect(url_for("status.page"))
    session.pop("concierge_popup", None)
    values: dict[str, Any] = {}
    if wizard.started_at is None:
        values["started_at"] = utcnow()
    step = "crm" if wizard.step == "welcome" else wizard.step
    _save(wizard, step, **values)
    audit.record(warehouse.engine, "onboarding.started")
    return redirect(url_for(STEP_ENDPOINTS[step]))


@bp.post("/defer")
def defer() -> Response:
    """ "Not now": remembered, and the pop-up comes back at the next login (U1)."""
    session.pop("concierge_popup", None)
    store.save_wizard(warehouse.engine, current_user().tenant_id, deferred_at=utcnow())
    audit.record(warehouse.engine, "onboarding.deferred")
    if _wants_json():
        return Response(status=204)
    return redirect(url_for("main.home"))


# -- Select CRM -------------------------------------------------------------------------


@bp.route("/crm", methods=["GET", "POST"])
def select_crm() -> str | Response | tuple[str, int]:
    wizard, _, blocked = _gate("crm")
    if blocked:
        return blocked
    form = SelectCrmForm()
    if request.method == "GET":
        form.crm.data = wizard.section("crm").get("key") or "salesforce"
        return _render("onboarding/select_crm.html", "crm", wizard, form=form,
                       options=crm.catalog())
    action = _action()
    if not form.validate():
        return _render("onboarding/select_crm.html", "crm", wizard, 400, form=form,
                       options=crm.catalog())
    if form.crm.data:
        wizard.data["crm"] = {"key": form.crm.data}
    if action == "back":
        _save(wizard, "crm")
        return redirect(url_for("onboarding.welcome"))
    if action == "save":
        _save(wizard, "crm")
        return _saved_for_later("crm")
    if not form.crm.data:
        form.crm.errors = ["Choose your CRM to continue."]
        return _render("onboarding/select_crm.html", "crm", wizard, 400, form=form,
                       options=crm.catalog())
    _save(wizard, "details")
    audit.record(warehouse.engine, "onboarding.saved", detail={"step": "crm",
                                                               "crm": form.crm.data})
    return redirect(url_for("onboarding.details"))


# -- Provide Details --------------------------------------------------------------------


def _details_context(wizard: store.Wizard, info: tenants.ConnectionInfo | None) -> dict[str, Any]:
    stored = set(info.config.get("stored_fields", [])) if info else set()
    return {
        "help": crm.SALESFORCE_HELP,
        "info": info,
        "saved_secrets": {name for name in SECRET_FIELDS if name in stored},
        "oauth_connected": bool(info and info.config.get("auth") == "oauth"),
        "oauth_host": info.config.get("instance_host") if info else None,
        "oauth_available": oauth.client_id() is not None,
        "sandbox_mode": crm.sandbox_url() is not None,
        "tested": wizard.section("connection"),
        "tested_current": _connection_ok(wizard, info),
    }


@bp.get("/details")
def details() -> str | Response | tuple[str, int]:
    wizard, info, blocked = _gate("details")
    if blocked:
        return blocked
    form = SalesforceDetailsForm(data=wizard.section("details"))
    if not oauth.client_id() and not wizard.section("details"):
        form.auth_method.data = "password"
    return _render("onboarding/details.html", "details", wizard, form=form,
                   **_details_context(wizard, info))


def _stored_secrets(tenant_id: str) -> dict[str, Any]:
    """The saved secrets, to merge blanks with; {} when none or no longer decryptable."""
    try:
        return dict(tenants.load_connection(warehouse.engine, tenant_id).secrets)
    except (tenants.ConnectionNotFound, crypto.DecryptionError):
        return {}


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
    typed = {name: getattr(form, name).data for name in SECRET_FIELDS if getattr(form, name).data}
    if not typed and not changed:
        return changed
    stored = _stored_secrets(user.tenant_id) if info and info.config.get("auth") == (
        "password") else {}
    secrets: dict[str, Any] = {
        key: stored[key] for key in ("password", "security_token") if key in stored
    }
    secrets.update(typed)
    if details["username"]:
        secrets["username"] = details["username"]
    changed.extend(sorted(typed))
    if "password" in secrets and secrets.get("username"):
        config = crm.connector_config(details)
        config["stored_fields"] = sorted(k for k in secrets if k in SECRET_FIELDS)
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
        "fingerprint": _fingerprint(info),
    }
    if outcome.ok:
        wizard.data["discovery"] = {"objects": outcome.objects, "at": utcnow().isoformat()}
    audit.record(warehouse.engine, "connection.tested",
                 outcome="ok" if outcome.ok else "failed",
                 detail={"connection_id": info.id, "field": outcome.field,
                         "seconds": round(outcome.seconds, 2)})
    return outcome


def _apply_outcome(form: SalesforceDetailsForm, outcome: crm.TestOutcome) -> None:
    if not outcome.ok and outcome.field and hasattr(form, outcome.field):
        target = getattr(form, outcome.field)
        target.errors = [*target.errors, outcome.hint or outcome.message]


@bp.post("/details")
@limiter.limit(lambda: str(current_app.config["CONNECTION_TEST_LIMIT"]), methods=["POST"],
               exempt_when=lambda: request.form.get("action") not in ("test", "continue"))
def details_post() -> ResponseReturnValue:
    wizard, info, blocked = _gate("details")
    if blocked:
        return blocked
    form = SalesforceDetailsForm()
    action = _action()
    if not form.validate():
        if _wants_json():
            return jsonify(ok=False, errors=form.errors), 400
        return _render("onboarding/details.html", "details", wizard, 400, form=form,
                       **_details_context(wizard, info))
    changed = _save_details(wizard, form, info)
    info = _connection()
    if changed:
        audit.record(warehouse.engine, "credentials.saved", detail={"fields": changed})
    if action in ("back", "save"):
        _save(wizard, "details")
        if action == "back":
            return redirect(url_for("onboarding.select_crm"))
        return _saved_for_later("details")
    if not _precheck(form, info):
        _save(wizard, "details")
        if _wants_json():
            return jsonify(ok=False, errors=form.errors, message="Some details are missing."), 400
        return _render("onboarding/details.html", "details", wizard, 400, form=form,
                       **_details_context(wizard, info))
    assert info is not None
    outcome = None
    if action == "test" or not _connection_ok(wizard, info):
        outcome = run_test(wizard, info)
        _apply_outcome(form, outcome)
    ok = _connection_ok(wizard, info)
    _save(wizard, "review" if ok and action == "continue" else "details")
    if _wants_json():
        body = outcome.public() if outcome else {"ok": ok, "message": "Connected."}
        return jsonify(**body, next=url_for("onboarding.review") if ok else None)
    if ok and action == "continue":
        return redirect(url_for("onboarding.review"))
    return _render("onboarding/details.html", "details", wizard, 200 if ok else 400, form=form,
                   **_details_context(wizard, info))


@bp.post("/details/oauth")
def oauth_start() -> Response:
    """ "Connect with Salesforce": save the page, then off to Salesforce's consent page."""
    wizard, info, blocked = _gate("details")
    if blocked:
        return blocked
    form = SalesforceDetailsForm()
    if not form.validate():
        flash("Check the highlighted fields first.", "error")
        return redirect(url_for("onboarding.details"))
    form.auth_method.data = "oauth"
    _save_details(wizard, form, info)
    _save(wizard, "details")
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
    wizard = _wizard()
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
    info = _connection()
    assert info is not None
    outcome = run_test(wizard, info)
    _save(wizard, "details")
    if outcome.ok:
        flash("Connected to Salesforce.", "success")
    else:
        flash(f"Connected, but the test failed: {outcome.message}", "error")
    return redirect(url_for("onboarding.details"))


@bp.post("/connections/<row_id:connection_id>/test")
@limiter.limit(lambda: str(current_app.config["CONNECTION_TEST_LIMIT"]))
def test_connection(connection_id: int) -> Response | tuple[Response, int]:
    """Re-test the saved connection (JSON); another tenant's id is a 404."""
    info = _connection()
    if info is None or info.id != connection_id:
        abort(404)
    wizard = _wizard()
    outcome = run_test(wizard, info)
    store.save_wizard(warehouse.engine, wizard.tenant_id, data=wizard.data)
    return jsonify(**outcome.public())


@bp.post("/connections/<row_id:connection_id>/delete")
def delete_connection(connection_id: int) -> Response:
    """Forget the saved credentials (works even when they can no longer be decrypted)."""
    info = _connection()
    if info is None or info.id != connection_id:
        abort(404)
    tenants.delete_connection(warehouse.engine, current_user().tenant_id, "salesforce")
    wizard = _wizard()
    wizard.data.pop("connection", None)
    _save(wizard, "details")
    audit.record(warehouse.engine, "credentials.deleted", detail={"connection_id": info.id})
    flash("The saved Salesforce credentials were removed.", "info")
    return redirect(url_for("onboarding.details"))


# -- Review Data Import -----------------------------------------------------------------


@bp.route("/review", methods=["GET", "POST"])
def review() -> str | Response | tuple[str, int]:
    wizard, info, blocked = _gate("review")
    if blocked:
        return blocked
    saved = wizard.section("review")
    imports = saved.get("imports", {})
    form = ReviewForm(data={**{k: bool(imports.get(k)) for k in OPTIONAL_IMPORTS},
                            "frequency": str(saved.get("frequency", 60))})
    objects = wizard.section("discovery").get("objects", [])
    context = {"objects": objects, "form": form, "info": info,
               "total": sum(int(o.get("count") or 0) for o in objects)}
    if request.method == "GET":
        return _render("onboarding/review.html", "review", wizard, **context)
    if not form.validate():
        return _render("onboarding/review.html", "review", wizard, 400, **context)
    action = _action()
    frequency = int(form.frequency.data or 60)
    wizard.data["review"] = {
        "imports": {k: bool(getattr(form, k).data) for k in OPTIONAL_IMPORTS},
        "frequency": frequency,
        "saved": action == "continue" or bool(saved.get("saved")),
    }
    tenants.set_sync_frequency(warehouse.engine, wizard.tenant_id, frequency)
    if action == "back":
        _save(wizard, "review")
        return redirect(url_for("onboarding.details"))
    if action == "save":
        _save(wizard, "review")
        return _saved_for_later("review")
    _save(wizard, "terms")
    audit.record(warehouse.engine, "onboarding.saved",
                 detail={"step": "review", "frequency": frequency,
                         "imports": wizard.data["review"]["imports"]})
    return redirect(url_for("onboarding.terms"))


@bp.post("/review/refresh")
@limiter.limit(lambda: str(current_app.config["CONNECTION_TEST_LIMIT"]))
def review_refresh() -> Response:
    """Count the records again (the CRM may have changed since the test)."""
    wizard, info, blocked = _gate("review")
    if blocked:
        return blocked
    assert info is not None
    run_test(wizard, info)
    _save(wizard, "review")
    return redirect(url_for("onboarding.review"))


# -- Terms and Policies -----------------------------------------------------------------


@bp.route("/terms", methods=["GET", "POST"])
def terms() -> str | Response | tuple[str, int]:
    wizard, _, blocked = _gate("terms")
    if blocked:
        return blocked
    agreed = wizard.terms_agreed_at is not None and wizard.terms_version == _terms_version()
    form = TermsForm(data={"agree": agreed})
    context: dict[str, Any] = {"form": form, "version": _terms_version(),
                               "agreed_at": wizard.terms_agreed_at if agreed else None}
    if request.method == "GET":
        return _render("onboarding/terms.html", "terms", wizard, **context)
    form.validate()
    action = _action()
    values: dict[str, Any] = {}
    if form.agree.data and not agreed:
        values = {"terms_version": _terms_version(), "terms_agreed_at": utcnow(),
                  "terms_agreed_by": current_user().id}
        audit.record(warehouse.engine, "terms.agreed", detail={"version": _terms_version()})
    elif not form.agree.data and agreed:
        values = {"terms_version": None, "terms_agreed_at": None, "terms_agreed_by": None}
    if action == "back":
        _save(wizard, "terms", **values)
        return redirect(url_for("onboarding.review"))
    if action == "save":
        _save(wizard, "terms", **values)
        return _saved_for_later("terms")
    if not form.agree.data:
        form.agree.errors = ["Please agree to the Terms and Policies to finish the setup."]
        _save(wizard, "terms", **values)
        return _render("onboarding/terms.html", "terms", wizard, 400, **context)
    _save(wizard, "complete", **values)
    return redirect(url_for("onboarding.complete"))


# -- Integration Complete ---------------------------------------------------------------


@bp.get("/complete")
def complete() -> str | Response | tuple[str, int]:
    wizard, info, blocked = _gate("complete")
    if blocked:
        return blocked
    review_data = wizard.section("review")
    return _render(
        "onboarding/complete.html", "complete", wizard, form=ActionForm(), info=info,
        objects=wizard.section("discovery").get("objects", []),
        frequency=FREQUENCY_LABELS.get(int(review_data.get("frequency", 60)), ""),
        imports=review_data.get("imports", {}),
    )


@bp.post("/finish")
def finish() -> Response:
    """ "Finish and Close": the tenant becomes active and the pipelines take over."""
    wizard, info, blocked = _gate("complete")
    if blocked:
        return blocked
    if wizard.complete:
        return redirect(url_for("status.page"))
    user = current_user()
    now = utcnow()
    tenants.set_status(warehouse.engine, user.tenant_id, "active")
    _save(wizard, "complete", completed_at=now)
    seconds = _elapsed(wizard.started_at, now)
    audit.record(warehouse.engine, "onboarding.completed", detail={"seconds": seconds})
    sent = notify.send(
        user.email, "Your CRM is connected to Accrue", "setup_complete.txt",
        name=user.full_name, status_url=external_url("status.page"),
        objects=wizard.section("discovery").get("objects", []),
    )
    audit.record(warehouse.engine, "email.setup_complete", outcome="ok" if sent else "failed")
    session.pop("concierge_popup", None)
    flash("Setup complete. Your first sync starts within a minute.", "success")
    return redirect(url_for("status.page"))


def _elapsed(start: datetime | None, end: datetime) -> float | None:
    return None if start is None else round((end - start).total_seconds(), 1)


@bp.app_context_processor
def _inject() -> dict[str, Any]:
    return {"step_titles": STEP_TITLES, "current_admin": g.get("user")}
