"""The sync history and the change trail, in words an admin can act on.

The run ledger (`sync_run`) keeps each run's error text, which can quote the CRM's
answer or a stack trace: it is never shown here. The page shows what kind of error it
was (`error_kind`, set by the connector) as a sentence that says what to do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from accrue.schema import app_user
from accrue.warehouse import Warehouse
from onboarding_app import audit
from onboarding_app.connection import crm
from onboarding_app.extensions import warehouse

# What each error kind means for the admin, and what to do (`{crm}`: the CRM's name).
ERROR_ADVICE = {
    "credentials": "{crm} refused the saved credentials. Sign in again under “Credentials” "
                   "on this page; the next sync uses the new ones.",
    "quota": "{crm}'s daily API allowance was used up. Nothing to do: the sync continues "
             "where it stopped once the allowance resets. If this happens often, choose a "
             "less frequent sync.",
    "outage": "{crm} did not answer. Nothing to do: Accrue retries by itself. If it lasts "
              "for hours, check {crm}'s status page.",
    "error": "The sync failed on Accrue's side. It is retried by itself; if it keeps "
             "failing, tell your Accrue contact.",
}
STATUS_WORDS = {"succeeded": "Completed", "failed": "Failed", "stopped": "Stopped early",
                "running": "Running"}
# The audit actions of this page and the wizard's credential events, as the page names them.
CHANGE_WORDS = {
    "integration.paused": "Paused the integration",
    "integration.resumed": "Resumed the integration",
    "integration.frequency_changed": "Changed the sync frequency",
    "integration.imports_changed": "Changed the optional imports",
    "integration.sync_requested": "Asked for a sync now",
    "integration.reauthenticated": "Signed in to the CRM again",
    "integration.disconnected": "Disconnected the CRM",
    "integration.data_deleted": "Deleted the synced data",
    "onboarding.completed": "Finished the setup",
}


def advice(error_kind: str | None, crm_name: str) -> str | None:
    """The sentence for a run's error kind; None for a run without an error."""
    if not error_kind:
        return None
    return ERROR_ADVICE.get(error_kind, ERROR_ADVICE["error"]).format(crm=crm_name)


def _label(object_name: str) -> str:
    return crm.OBJECT_LABELS.get(object_name, object_name.replace("_", " ").capitalize())


def by_object(tenant_id: str, crm_name: str) -> list[dict[str, Any]]:
    """Each object's latest run: outcome, when, failures in a row, the last success."""
    health = Warehouse(warehouse.engine).sync_health(tenant_id)
    return [{
        "label": _label(name), "status": STATUS_WORDS.get(h["last_status"], h["last_status"]),
        "failed": h["last_status"] == "failed", "started_at": h["last_started_at"],
        "finished_at": h["last_finished_at"], "failures": h["consecutive_failures"],
        "last_success_at": h["last_success_at"], "advice": advice(h["error_kind"], crm_name),
    } for name, h in health.items()]


def latest_runs(tenant_id: str, crm_name: str, limit: int = 15) -> list[dict[str, Any]]:
    """The latest runs, newest first, with records stored and advice (never the raw error)."""
    runs = Warehouse(warehouse.engine).recent_runs(tenant_id, limit=limit)
    return [{
        "label": _label(r["object_name"]), "status": STATUS_WORDS.get(r["status"], r["status"]),
        "started_at": r["started_at"], "finished_at": r["finished_at"],
        "records": int(r["records_upserted"]) + int(r["records_deleted"]),
        "advice": advice(r["error_kind"], crm_name),
    } for r in runs]


def running_since(tenant_id: str, now: datetime, within_hours: int = 2) -> datetime | None:
    """When the sync running now started (None if none is): its writes would outlive a
    deletion. A run 'running' for longer belonged to a process that died."""
    runs = Warehouse(warehouse.engine).recent_runs(tenant_id, limit=50)
    started = [r["started_at"] for r in runs if r["status"] == "running"
               and (now - r["started_at"]).total_seconds() < within_hours * 3600]
    return min(started) if started else None


def changes(tenant_id: str, limit: int = 10) -> list[dict[str, Any]]:
    """The latest changes to the integration: who (their e-mail), what, when, outcome."""
    with warehouse.engine.connect() as conn:
        emails = dict(conn.execute(sa.select(app_user.c.id, app_user.c.email)
                                   .where(app_user.c.tenant_id == tenant_id)).tuples().all())
    found = []
    for event in audit.events(warehouse.engine, tenant_id, limit=200):
        if event["action"] not in CHANGE_WORDS:
            continue
        actor = str(event["actor"])
        user_id = int(actor[5:]) if actor.startswith("user:") and actor[5:].isdigit() else None
        found.append({"what": CHANGE_WORDS[event["action"]], "at": event["created_at"],
                      "who": emails.get(user_id, actor) if user_id is not None else actor,
                      "outcome": event["outcome"]})
        if len(found) == limit:
            break
    return found
