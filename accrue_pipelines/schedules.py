"""The nightly reconciliation: a full id comparison per tenant, catching what logs miss.

Delete logs expire and some deletes never reach them (hard deletes, purges),
so once a night each tenant's sync also compares every live id with the CRM.
"""

import dagster as dg

from accrue import tenants
from accrue_pipelines.jobs import sync_tenant_job
from accrue_pipelines.partitions import TENANT_PARTITIONS_NAME
from accrue_pipelines.resources import WarehouseResource
from accrue_pipelines.sync_assets import RECONCILE_TAG

RECONCILE_CRON = "0 3 * * *"


@dg.schedule(
    job=sync_tenant_job,
    cron_schedule=RECONCILE_CRON,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly sync with a full id reconciliation for every active tenant.",
)
def nightly_reconciliation(
    context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource
) -> list[dg.RunRequest]:
    partitions = set(context.instance.get_dynamic_partitions(TENANT_PARTITIONS_NAME))
    date = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        dg.RunRequest(
            partition_key=tenant.id,
            run_key=f"reconcile-{tenant.id}-{date}",
            tags={RECONCILE_TAG: "true", "accrue/tenant": tenant.id,
                  "accrue/trigger": "reconciliation"},
        )
        for tenant in tenants.list_tenants(warehouse.engine(), status="active")
        if tenant.id in partitions
    ]
