"""The wizard's pages other than Provide Details: Welcome, Select CRM, Review, Terms, Complete.

Buttons are plain form submits named `action` (`back`, `save`, `continue`): the
wizard works without JavaScript.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import current_app, flash, redirect, request, session, url_for
from werkzeug.wrappers import Response

from accrue import tenants
from accrue.schema import utcnow
from onboarding_app import audit, notify, store
from onboarding_app.connection import crm, feeds, imports
from onboarding_app.connection.forms import FREQUENCY_LABELS
from onboarding_app.extensions import limiter, warehouse
from onboarding_app.forms import ActionForm
from onboarding_app.security import current_user, external_url
from onboarding_app.wizard import bp
from onboarding_app.wizard.details import run_test
from onboarding_app.wizard.flow import (
    back_or_save,
    current_wizard,
    form_action,
    gate,
    render,
    save,
    saved_step,
    step_endpoint,
    terms_version,
    wants_json,
)
from onboarding_app.wizard.forms import ReviewForm, SelectCrmForm, TermsForm


@bp.get("/")
def resume() -> Response:
    """U5: straight to the last saved step."""
    wizard, info, _ = gate("welcome")
    if wizard.complete:
        return redirect(url_for("status.page"))
    return redirect(url_for(step_endpoint(wizard, saved_step(wizard, info) or "welcome")))


@bp.get("/welcome")
def welcome() -> str | Response | tuple[str, int]:
    wizard, _, blocked = gate("welcome")
    if blocked:
        return blocked
    return render("onboarding/welcome.html", "welcome", wizard, form=ActionForm())


@bp.post("/start")
def start() -> Response:
    """ "Start Now": the P1 clock starts here (kept from the first click)."""
    wizard = current_wizard()
    if wizard.complete:
        return redirect(url_for("status.page"))
    session.pop("concierge_popup", None)
    values: dict[str, Any] = {}
    if wizard.started_at is None:
        values["started_at"] = utcnow()
    step = "crm" if wizard.step == "welcome" else wizard.step
    save(wizard, step, **values)
    audit.record(warehouse.engine, "onboarding.started")
    return redirect(url_for(step_endpoint(wizard, step)))


@bp.post("/defer")
def defer() -> Response:
    """ "Not now": remembered, and the pop-up comes back at the next login (U1)."""
    session.pop("concierge_popup", None)
    store.save_wizard(warehouse.engine, current_user().tenant_id, deferred_at=utcnow())
    audit.record(warehouse.engine, "onboarding.deferred")
    if wants_json():
        return Response(status=204)
    return redirect(url_for("main.home"))


# -- Select CRM -------------------------------------------------------------------------


@bp.route("/crm", methods=["GET", "POST"])
def select_crm() -> str | Response | tuple[str, int]:
    wizard, _, blocked = gate("crm")
    if blocked:
        return blocked
    form = SelectCrmForm()
    if request.method == "GET":
        form.crm.data = wizard.section("crm").get("key") or crm.spec_for(None).key
        return render("onboarding/select_crm.html", "crm", wizard, form=form,
                       options=crm.choices())
    action = form_action()
    if not form.validate():
        return render("onboarding/select_crm.html", "crm", wizard, 400, form=form,
                       options=crm.choices())
    if form.crm.data and form.crm.data != wizard.section("crm").get("key"):
        # Another CRM: what was entered and tested belongs to the one chosen before.
        for section in ("details", "connection", "discovery"):
            wizard.data.pop(section, None)
        wizard.data["crm"] = {"key": form.crm.data}
        # A feed's key is its crm_type too (a push tenant is never scheduled for CRM syncs).
        tenants.set_crm_type(warehouse.engine, wizard.tenant_id, form.crm.data)
    left = back_or_save(wizard, "crm", action, url_for("onboarding.welcome"))
    if left:
        return left
    if not form.crm.data:
        form.crm.errors = ["Choose your CRM to continue."]
        return render("onboarding/select_crm.html", "crm", wizard, 400, form=form,
                       options=crm.choices())
    save(wizard, "details")
    audit.record(warehouse.engine, "onboarding.saved", detail={"step": "crm",
                                                               "crm": form.crm.data})
    return redirect(url_for(step_endpoint(wizard, "details")))



# -- Review Data Import -----------------------------------------------------------------


@bp.route("/review", methods=["GET", "POST"])
def review() -> str | Response | tuple[str, int]:
    wizard, info, blocked = gate("review")
    if blocked:
        return blocked
    saved = wizard.section("review")
    switched = saved.get("imports", {})
    form = ReviewForm(data={**{k: bool(switched.get(k)) for k in imports.OPTIONAL_IMPORTS},
                            "frequency": str(saved.get("frequency", 60))})
    always, optional = imports.split(wizard.section("discovery").get("objects", []))
    context: dict[str, Any] = {"objects": always, "optional": optional, "form": form,
                               "info": info,
                               "total": sum(int(o.get("count") or 0) for o in always)}
    if request.method == "GET":
        return render("onboarding/review.html", "review", wizard, **context)
    if not form.validate():
        return render("onboarding/review.html", "review", wizard, 400, **context)
    action = form_action()
    frequency = int(form.frequency.data or 60)
    wizard.data["review"] = {
        "frequency": frequency,
        "saved": action == "continue" or bool(saved.get("saved")),
    }
    # On the tenant at once, as the frequency: what the syncs obey once setup is finished.
    imports.save(warehouse.engine, wizard.tenant_id,
                 {k: bool(getattr(form, k).data) for k in imports.OPTIONAL_IMPORTS}, wizard)
    tenants.set_sync_frequency(warehouse.engine, wizard.tenant_id, frequency)
    left = back_or_save(wizard, "review", action, url_for(step_endpoint(wizard, "details")))
    if left:
        return left
    save(wizard, "terms")
    audit.record(warehouse.engine, "onboarding.saved",
                 detail={"step": "review", "frequency": frequency,
                         "imports": wizard.data["review"]["imports"]})
    return redirect(url_for("onboarding.terms"))


@bp.post("/review/refresh")
@limiter.limit(lambda: str(current_app.config["CONNECTION_TEST_LIMIT"]))
def review_refresh() -> Response:
    """Count the records again (the CRM may have changed since the test)."""
    wizard, info, blocked = gate("review")
    if blocked:
        return blocked
    if info is None or feeds.get(wizard.section("crm").get("key")) is not None:
        return redirect(url_for("onboarding.review"))  # nothing to count (a feed pushes)
    run_test(wizard, info)
    save(wizard, "review")
    return redirect(url_for("onboarding.review"))


# -- Terms and Policies -----------------------------------------------------------------


@bp.route("/terms", methods=["GET", "POST"])
def terms() -> str | Response | tuple[str, int]:
    wizard, _, blocked = gate("terms")
    if blocked:
        return blocked
    agreed = wizard.terms_agreed_at is not None and wizard.terms_version == terms_version()
    form = TermsForm(data={"agree": agreed})
    context: dict[str, Any] = {"form": form, "version": terms_version(),
                               "agreed_at": wizard.terms_agreed_at if agreed else None}
    if request.method == "GET":
        return render("onboarding/terms.html", "terms", wizard, **context)
    form.validate()
    action = form_action()
    values: dict[str, Any] = {}
    if form.agree.data and not agreed:
        values = {"terms_version": terms_version(), "terms_agreed_at": utcnow(),
                  "terms_agreed_by": current_user().id}
        audit.record(warehouse.engine, "terms.agreed", detail={"version": terms_version()})
    elif not form.agree.data and agreed:
        values = {"terms_version": None, "terms_agreed_at": None, "terms_agreed_by": None}
    left = back_or_save(wizard, "terms", action, url_for("onboarding.review"), **values)
    if left:
        return left
    if not form.agree.data:
        form.agree.errors = ["Please agree to the Terms and Policies to finish the setup."]
        save(wizard, "terms", **values)
        return render("onboarding/terms.html", "terms", wizard, 400, **context)
    save(wizard, "complete", **values)
    return redirect(url_for("onboarding.complete"))


# -- Integration Complete ---------------------------------------------------------------


@bp.get("/complete")
def complete() -> str | Response | tuple[str, int]:
    wizard, info, blocked = gate("complete")
    if blocked:
        return blocked
    review_data = wizard.section("review")
    switched = review_data.get("imports", {})
    return render(
        "onboarding/complete.html", "complete", wizard, form=ActionForm(), info=info,
        objects=imports.imported(wizard.section("discovery").get("objects", []), switched),
        frequency=FREQUENCY_LABELS.get(int(review_data.get("frequency", 60)), ""),
        chosen=[crm.OBJECT_LABELS.get(o, o) for o in imports.chosen(switched)],
    )


@bp.post("/finish")
def finish() -> Response:
    """ "Finish and Close": the tenant becomes active and the pipelines take over."""
    wizard, info, blocked = gate("complete")
    if blocked:
        return blocked
    if wizard.complete:
        return redirect(url_for("status.page"))
    user = current_user()
    now = utcnow()
    switched = wizard.section("review").get("imports", {})
    # Again at the finish: answers saved before the switches were stored on the tenant.
    imports.save(warehouse.engine, user.tenant_id, switched, wizard)
    tenants.set_status(warehouse.engine, user.tenant_id, "active")
    save(wizard, "complete", completed_at=now)
    seconds = _elapsed(wizard.started_at, now)
    audit.record(warehouse.engine, "onboarding.completed", detail={"seconds": seconds})
    sent = notify.send(
        user.email, "Your CRM is connected to Accrue", "setup_complete.txt",
        name=user.full_name, crm_name=crm.chosen_name(wizard.section("crm").get("key")),
        feed=feeds.get(wizard.section("crm").get("key")) is not None,
        status_url=external_url("status.page"),
        objects=imports.imported(wizard.section("discovery").get("objects", []), switched),
    )
    audit.record(warehouse.engine, "email.setup_complete", outcome="ok" if sent else "failed")
    session.pop("concierge_popup", None)
    flash("Setup complete. Your first sync starts within a minute.", "success")
    return redirect(url_for("status.page"))


def _elapsed(start: datetime | None, end: datetime) -> float | None:
    return None if start is None else round((end - start).total_seconds(), 1)

