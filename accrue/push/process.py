"""`accrue push process TENANT`: apply a push tenant's inbox now, by hand.

The same path as the pipelines' sync (one way to do it): the sync engine
(accrue.sync.sync_object) over the push feed's connector (accrue.push.feed), object by
object, so the records get the same ordering, crash safety, quarantine, sync_run rows and
schema mapping as in a Dagster run. The pipelines do this by themselves when batches are
pending (the sync sensor); this command is for an operator who wants it now.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from accrue import tenants
from accrue.push import PUSH_CRM_TYPE
from accrue.push.feed import PushConnector
from accrue.sync import SyncResult, sync_object
from accrue.warehouse import Warehouse


@dataclass
class ProcessResult:
    tenant_id: str
    results: list[SyncResult] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(int(getattr(result, name)) for result in self.results)


def process_inbox(engine: Engine, tenant_id: str, *, page_batches: int | None = None
                  ) -> ProcessResult:
    """Apply the tenant's pushed batches to every object it syncs; one result per object."""
    tenant = tenants.require_tenant(engine, tenant_id)
    if tenant.crm_type != PUSH_CRM_TYPE:
        raise ValueError(f"tenant {tenant_id} syncs from {tenant.crm_type}, not the push API")
    warehouse = Warehouse(engine)
    result = ProcessResult(tenant_id)
    options = {"page_batches": page_batches} if page_batches else {}
    with PushConnector(engine, tenant_id, **options) as connector:
        for object_name in tenant.synced_objects():
            result.results.append(sync_object(warehouse, connector, tenant_id, object_name))
    return result
