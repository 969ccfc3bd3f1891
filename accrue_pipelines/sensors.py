"""Sensors that keep Dagster in step with the tenant registry.

Both compute everything first and return their cursor last, so a failing
tick never records progress it did not make.
"""

import json
import time

import dagster as dg

from accrue import tenants
from accrue_pipelines.jobs import sync_tenant_job
from accrue_pipelines.partitions import TENANT_PARTITIONS_NAME, tenant_partitions
from accrue_pipelines.resources import WarehouseResource

# Tenants that keep a partition: their data stays visible while they are paused.
PARTITIONED_STATUSES = ("active", "paused")
# SQLite instances fail on very large single partition requests (dagster#16260).
MAX_PARTITION_CHANGES_PER_TICK = 500
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
]


@dg.sensor(
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a tenant partition when a tenant is registered, removes it when deleted.",
)
def tenant_registry_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    wanted = {
        t.id for t in tenants.list_tenants(warehouse.engine()) if t.status in PARTITIONED_STATUSES
    }
    existing = set(context.instance.get_dynamic_partitions(TENANT_PARTITIONS_NAME))
    to_add = sorted(wanted - existing)[:MAX_PARTITION_CHANGES_PER_TICK]
    to_remove = sorted(existing - wanted)[:MAX_PARTITION_CHANGES_PER_TICK]
    if not to_add and not to_remove:
        return dg.SkipReason(f"{len(existing)} tenant partitions match the registry")
    requests = []
    if to_add:
        requests.append(tenant_partitions.build_add_request(to_add))
    if to_remove:
        requests.append(tenant_partitions.build_delete_request(to_remove))
    context.log.info(f"tenant partitions: adding {to_add}, removing {to_remove}")
    return dg.SensorResult(
        dynamic_partitions_requests=requests,
        cursor=json.dumps({"partitions": len(existing) + len(to_add) - len(to_remove)}),
    )


@dg.sensor(
    job=sync_tenant_job,
    minimum_interval_seconds=20,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Requests each active tenant's sync at the frequency its admin chose "
        "(a new tenant's first sync at once); skips tenants with a sync in flight."
    ),
)
def tenant_sync_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    now = time.time()
    last_requested: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
    partitions = set(context.instance.get_dynamic_partitions(TENANT_PARTITIONS_NAME))
    busy = {
        run.tags.get("dagster/partition")
        for run in context.instance.get_runs(
            filters=dg.RunsFilter(job_name=sync_tenant_job.name, statuses=IN_FLIGHT)
        )
    }
    run_requests = []
    active = [
        t for t in tenants.list_tenants(warehouse.engine(), status="active") if t.id in partitions
    ]
    for tenant in active:
        due_at = last_requested.get(tenant.id, 0.0) + tenant.sync_frequency_minutes * 60
        if now < due_at or tenant.id in busy:
            continue
        run_requests.append(
            dg.RunRequest(
                partition_key=tenant.id,
                run_key=f"{tenant.id}-{int(now)}",
                tags={"accrue/tenant": tenant.id, "accrue/trigger": "frequency"},
            )
        )
        last_requested[tenant.id] = now
    known = {t.id for t in active}
    cursor = json.dumps({k: v for k, v in last_requested.items() if k in known}, sort_keys=True)
    if not run_requests:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(f"no tenant due among {len(active)} active"), cursor=cursor
        )
    return dg.SensorResult(run_requests=run_requests, cursor=cursor)
