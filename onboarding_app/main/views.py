"""Public pages and the admin's home, where the concierge pop-up lives (U1)."""

from __future__ import annotations

from flask import g, jsonify, redirect, render_template, session, url_for
from sqlalchemy import text
from werkzeug.wrappers import Response

from onboarding_app import store
from onboarding_app.connection import crm
from onboarding_app.extensions import warehouse
from onboarding_app.forms import ActionForm
from onboarding_app.main import bp
from onboarding_app.results import summaries
from onboarding_app.results.scope import scope_for
from onboarding_app.security import current_user, login_required
from onboarding_app.wizard import STEP_TITLES, STEPS


@bp.get("/")
def index() -> str | Response:
    if g.get("user") is not None:
        return redirect(url_for("main.home"))
    # The CRMs by their proper names (NetSuite, HubSpot, SugarCRM), as Select CRM lists them.
    return render_template("index.html", crms=crm.catalog())


@bp.get("/healthz")
def healthz() -> Response:
    with warehouse.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return jsonify(status="ok")


@bp.get("/home")
@login_required
def home() -> str:
    """The product's home: the person's results in figures; for the admin, until setup is
    complete, the setup prompt and the pop-up (once per login). Managers and sellers
    never see setup prompts: the integration is the admin's (U1)."""
    user = current_user()
    wizard = store.load_wizard(warehouse.engine, user.tenant_id)
    popup = (bool(session.pop("concierge_popup", False)) and not wizard.complete
             and user.is_admin)
    resume_step = wizard.step if wizard.step != "welcome" else None
    return render_template(
        "home.html", wizard=wizard, popup=popup, form=ActionForm(),
        resume_step=resume_step,
        resume_title=STEP_TITLES.get(resume_step or "", ""),
        resume_number=STEPS.index(resume_step) + 1 if resume_step else None,
        step_count=len(STEPS),
        resume_url=url_for("onboarding.resume"),
        summary=summaries.home(warehouse.engine, scope_for(warehouse.engine, user)),
    )
