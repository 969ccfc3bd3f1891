"""After "Finish and Close": how far the first sync is, per object, and what comes next.

Numbers come from the warehouse (rows stored, sync runs and their outcome)
and from the counts the CRM reported at setup, so progress is "stored of
expected". Price recommendations are not computed by the platform yet: the
page says so plainly instead of promising a time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, jsonify, render_template, url_for
from werkzeug.wrappers import Response

from accrue import tenants
from accrue.schema import sync_run
from accrue.warehouse import Warehouse
from onboarding_app import audit, notify, store
from onboarding_app.extensions import warehouse
from onboarding_app.security import current_user, login_required

bp = Blueprint("status", __name__, url_prefix="/status")

ERROR_HINTS = {
    "credentials": "Salesforce refused the saved credentials: reconnect Salesforce.",
    "quota": "Salesforce's daily API limit is used up; the sync resumes when it resets.",
    "outage": "Salesforce did not answer; the sync retries by itself.",
    "error": "The sync failed; it is retried automatically.",
}


@bp.before_request
@login_required
def _require_login() -> None:
    """Status pages belong to the logged-in admin's tenant only."""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def progress(tenant_id: str) -> dict[str, Any]:
    """Per-object progress and the two milestones: first data, first recommendations."""
    engine = warehouse.engine
    wizard = store.load_wizard(engine, tenant_id)
    tenant = tenants.require_tenant(engine, tenant_id)
    wh = Warehouse(engine)
    stored = {row["object_name"]: row for row in wh.summary(tenant_id)}
    health = wh.sync_health(tenant_id)
    expected = {o["name"]: o for o in wizard.section("discovery").get("objects", [])}
    names = list(expected) or [n for n in stored if stored[n]["live_rows"]]
    objects = []
    for name in names:
        run = health.get(name, {})
        synced = int(stored.get(name, {}).get("live_rows", 0))
        total = int(expected.get(name, {}).get("count") or 0)
        last = run.get("last_status")
        if run.get("last_success_at") is not None and last != "running":
            state = "done"
        elif last == "running":
            state = "syncing"
        elif last in ("failed", "stopped"):
            state = "failed" if last == "failed" else "paused"
        else:
            state = "waiting"
        objects.append({
            "name": name,
            "label": expected.get(name, {}).get("label", name),
            "synced": synced,
            "expected": total,
            "percent": 100 if state == "done" else (min(99, synced * 100 // total) if total
                                                    else 0),
            "state": state,
            "hint": ERROR_HINTS.get(run.get("error_kind") or "") if state in (
                "failed", "paused") else None,
            "last_success_at": _iso(run.get("last_success_at")),
        })
    done = bool(objects) and all(o["state"] == "done" for o in objects)
    return {
        "tenant_status": tenant.status,
        "completed_at": _iso(wizard.completed_at),
        "setup_seconds": round((wizard.completed_at - wizard.started_at).total_seconds())
        if wizard.completed_at and wizard.started_at else None,
        "frequency_minutes": tenant.sync_frequency_minutes,
        "objects": objects,
        "first_data_ready": done,
        "records_synced": sum(o["synced"] for o in objects),
        "records_expected": sum(o["expected"] for o in objects),
        "recommendations": {
            "state": "not_available",
            "message": "Price recommendations are not computed by this release yet. They "
                       "will start from the data synced here, and we will e-mail you when "
                       "they do.",
        },
    }


def _notify_first_data(tenant_id: str, report: dict[str, Any]) -> None:
    """E-mail 'your first data is ready' once (claimed atomically, so never twice)."""
    if not report["first_data_ready"]:
        return
    engine = warehouse.engine
    if not store.mark_notified(engine, tenant_id):
        return
    user = current_user()
    sent = notify.send(
        user.email, "Your first Accrue data is ready", "first_data.txt", name=user.full_name,
        report=report, status_url=(current_app.config.get("PUBLIC_URL") or "").rstrip("/")
        + url_for("status.page") if current_app.config.get("PUBLIC_URL")
        else url_for("status.page", _external=True),
    )
    audit.record(engine, "email.first_data", outcome="ok" if sent else "failed")


@bp.get("")
def page() -> str | Response:
    tenant_id = current_user().tenant_id
    wizard = store.load_wizard(warehouse.engine, tenant_id)
    if not wizard.complete:
        return render_template("status/not_ready.html", wizard=wizard)
    report = progress(tenant_id)
    _notify_first_data(tenant_id, report)
    runs = Warehouse(warehouse.engine).recent_runs(tenant_id, limit=10)
    return render_template("status/page.html", report=report, runs=runs)


@bp.get("/progress.json")
def report_json() -> Response:
    tenant_id = current_user().tenant_id
    report = progress(tenant_id)
    _notify_first_data(tenant_id, report)
    return jsonify(report)


@bp.get("/runs/<int:run_id>")
def run_detail(run_id: int) -> str:
    """One sync run of the admin's tenant; another tenant's run id is a 404."""
    query = sa.select(sync_run).where(
        sync_run.c.id == run_id, sync_run.c.tenant_id == current_user().tenant_id)
    with warehouse.engine.connect() as conn:
        run = conn.execute(query).mappings().first()
    if run is None:
        abort(404)
    return render_template("status/run.html", run=run,
                           hint=ERROR_HINTS.get(run["error_kind"] or ""))
