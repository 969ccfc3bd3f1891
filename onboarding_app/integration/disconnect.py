"""Disconnecting: the credentials are forgotten at once, nothing syncs, and the synced
data is kept or deleted, as the admin chose on the confirmation page.

Deleting is accrue.erasure: each table deleted by the module that owns it, scoped to
the tenant. The tenant, its accounts, its concierge answers and the audit trail stay:
the admin can still log in, reconnect, and see what was done.
"""

from __future__ import annotations

from dataclasses import dataclass

from accrue import erasure, sync_schedule, tenants
from accrue.schema import utcnow
from onboarding_app import audit
from onboarding_app.extensions import warehouse
from onboarding_app.integration.history import running_since


@dataclass(frozen=True)
class Outcome:
    message: str
    refused: bool = False


def delete_synced_data(tenant_id: str) -> dict[str, int]:
    """Delete what Accrue synced or computed for the tenant; rows deleted per table."""
    return erasure.erase_synced_data(warehouse.engine, tenant_id)


def disconnect(tenant: tenants.Tenant, info: tenants.ConnectionInfo | None, crm_name: str,
               *, delete_data: bool) -> Outcome:
    """Forget the credentials and pause (if still connected); then delete the data if asked.

    The deletion waits while a sync is running: that sync's last pages would land after
    it and the data would come back in part. The credentials are gone by then, so no
    new sync starts, and the admin deletes a few minutes later from the same page.
    """
    engine = warehouse.engine
    said = ""
    if info is not None:
        removed = tenants.delete_connection(engine, tenant.id)
        tenants.set_status(engine, tenant.id, "paused")
        sync_schedule.cancel_request(engine, tenant.id)
        audit.record(engine, "integration.disconnected",
                     detail={"credentials_removed": removed,
                             "synced_data": "delete" if delete_data else "keep"})
        said = (f"Disconnected: Accrue has forgotten the {crm_name} credentials and syncs "
                "nothing more. ")
    if not delete_data:
        return Outcome(said + "The data synced so far is kept; you can delete it from this "
                       "page at any time, or sign in again to reconnect.")
    running = running_since(tenant.id, utcnow())
    if running is not None:
        audit.record(engine, "integration.data_deleted", outcome="refused",
                     detail={"reason": "a sync is running"})
        return Outcome(said + f"The data is not deleted yet: a sync that started at "
                       f"{running:%H:%M} UTC is still running. Delete it once that sync has "
                       "ended, in a few minutes, with “Delete synced data”.", refused=True)
    rows = delete_synced_data(tenant.id)
    total = sum(rows.values())
    audit.record(engine, "integration.data_deleted",
                 detail={"rows": total, "tables": sorted(name for name, n in rows.items() if n)})
    return Outcome(said + f"The synced data is deleted ({total:,} rows).")
