"""After "Finish and Close": how far the syncs are, per object, and what comes next.

Numbers come from the warehouse (rows stored, the `sync_run` ledger with a running
sync's count, the scheduler's memory) and from the counts the CRM reported at
setup; the computation lives in `accrue.onboarding_notify` (with `sync_progress`
and `recommendation_status`), which the pipelines' first-data e-mail sensor uses
too. Nothing here imports Dagster, so an analytics run is never claimed, only
owed (see `accrue.recommendation_status`). E-mail is promised only when this app
can send it (an SMTP host is configured).
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, jsonify, render_template
from werkzeug.wrappers import Response

from accrue import onboarding_notify, sync_progress, tenants
from accrue.warehouse import Warehouse
from onboarding_app import store
from onboarding_app.connection import crm, feeds
from onboarding_app.connection.forms import FREQUENCY_LABELS
from onboarding_app.extensions import warehouse
from onboarding_app.security import current_user, external_url, login_required
from onboarding_app.status import bp


@bp.before_request
@login_required
def _require_login() -> None:
    """Status pages belong to the logged-in admin's tenant only."""


def progress(tenant_id: str) -> dict[str, Any]:
    """Per-object progress and the milestones (shared with the pipelines' e-mail sensor)."""
    return onboarding_notify.progress(warehouse.engine, tenant_id)


def email_on() -> bool:
    """Whether this app sends e-mail at all (no SMTP host: no promise of one)."""
    return bool(onboarding_notify.SmtpSettings.from_config(current_app.config).host)


def _notify_first_data(tenant_id: str, report: dict[str, Any]) -> None:
    """E-mail 'your first data is ready' once; the same check the pipelines' sensor runs."""
    if not report["first_data_ready"]:
        return
    config = current_app.config
    status_url = external_url("status.page")
    onboarding_notify.notify_first_data(
        warehouse.engine, tenant_id, onboarding_notify.SmtpSettings.from_config(config),
        actor=f"user:{current_user().id}", status_url=status_url, report=report,
    )


@bp.get("")
def page() -> str | Response:
    tenant_id = current_user().tenant_id
    wizard = store.load_wizard(warehouse.engine, tenant_id)
    if not wizard.complete:
        return render_template("status/not_ready.html", wizard=wizard)
    report = progress(tenant_id)
    _notify_first_data(tenant_id, report)
    runs = Warehouse(warehouse.engine).recent_runs(tenant_id, limit=10)
    tenant = tenants.require_tenant(warehouse.engine, tenant_id)
    names = {option.key: option.name for option in crm.choices()}
    frequency = FREQUENCY_LABELS.get(tenant.sync_frequency_minutes,
                                     f"every {tenant.sync_frequency_minutes} minutes")
    return render_template(
        "status/page.html", report=report, runs=runs, email_on=email_on(),
        crm_name=names.get(tenant.crm_type, tenant.crm_type),
        cadence=(feed.cadence if (feed := feeds.get(tenant.crm_type))
                 else f"syncs {frequency.removesuffix(' (recommended)').lower()}"),
        # Read again: the check above may have just sent the e-mail.
        emailed_at=store.load_wizard(warehouse.engine, tenant_id).first_data_notified_at,
    )


@bp.get("/progress.json")
def report_json() -> Response:
    tenant_id = current_user().tenant_id
    report = progress(tenant_id)
    _notify_first_data(tenant_id, report)
    return jsonify(report)


@bp.get("/runs/<row_id:run_id>")
def run_detail(run_id: int) -> str:
    """One sync run of the admin's tenant; another tenant's run id is a 404."""
    run = Warehouse(warehouse.engine).run(current_user().tenant_id, run_id)
    if run is None:
        abort(404)
    failed = run["status"] in ("failed", "stopped")
    return render_template("status/run.html", run=run,
                           hint=sync_progress.explain(run["error_kind"]) if failed else None)
