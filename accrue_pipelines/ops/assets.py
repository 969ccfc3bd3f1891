"""The on-call engineer's view: each tenant's health on its partition, the fleet on one page.

`ops/tenant_health` (one partition per tenant) rolls up the tenant's last successful
sync, lag, last day's records and changes, quarantine, quota stops, and the failure in
words with the action to take; its `tenant_fresh` check (checks.py) is the per-tenant
freshness (health.py says why it is not a Dagster FreshnessPolicy). `ops/fleet_health` is
one table of every tenant, most lagging first (never synced at the top). Both are
refreshed by `tenant_health_sensor` (sensors.py), which reports their materializations
without a run (a run per tenant would cost a process each), and read the warehouse only
through its read APIs; materializing them from the UI gives the same figures.
"""

from datetime import UTC, datetime

import dagster as dg

from accrue import tenants
from accrue_pipelines.constants import FLEET_HEALTH_KEY, OPS_GROUP, TENANT_HEALTH_KEY
from accrue_pipelines.ops.checks import FRESH_SPEC, fresh_result
from accrue_pipelines.ops.health import TenantHealth, fleet_health, tenant_health
from accrue_pipelines.platform import ui_metadata
from accrue_pipelines.platform.partitions import tenant_partitions
from accrue_pipelines.platform.resources import WarehouseResource

FLEET_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn("tenant_id", "string"),
    dg.TableColumn("status", "string", description="healthy, stale, failing, never synced"),
    dg.TableColumn("lag_minutes", "float",
                   description="since the last full successful sync (null: never)"),
    dg.TableColumn("frequency_minutes", "int"),
    dg.TableColumn("last_success_at", "string"),
    dg.TableColumn("records_last_day", "int"),
    dg.TableColumn("changes_last_day", "int",
                   description="new versions synced (a lookback's re-read is not a change)"),
    dg.TableColumn("quarantined", "int"),
    dg.TableColumn("quota_stops_last_day", "int"),
    dg.TableColumn("crm_type", "string"),
    dg.TableColumn("failing_objects", "string"),
    dg.TableColumn("reason", "string"),
    dg.TableColumn("action", "string"),
])


def now() -> datetime:
    return datetime.now(UTC)


def health_metadata(health: TenantHealth) -> dict[str, dg.MetadataValue]:
    """The tenant's roll-up as typed metadata (no empty entries)."""
    values = {
        "status": health.status, "reason": health.reason, "action": health.action,
        "frequency_minutes": health.frequency_minutes,
        "lag_minutes": health.lag_minutes,
        "records_last_day": health.records_last_day,
        "changes_last_day": health.changes_last_day,
        "quarantined": health.quarantined,
        "quota_stops_last_day": health.quota_stops_last_day,
        "failing_objects": list(health.failing_objects),
    }
    metadata = ui_metadata.typed_metadata(values)
    if health.last_success_at:
        metadata["last_success_at"] = dg.MetadataValue.timestamp(health.last_success_at)
    return metadata


def fleet_metadata(rows: list[TenantHealth]) -> dict[str, dg.MetadataValue]:
    """The fleet's table, most lagging first, and the number of tenants in each status."""
    counts = {status: sum(1 for r in rows if r.status == status)
              for status in ("healthy", "stale", "failing", "never synced")}
    return {
        "tenants": dg.MetadataValue.table([dg.TableRecord(row.as_row()) for row in rows],
                                          schema=FLEET_SCHEMA),
        **{f"{status.replace(' ', '_')}_tenants": dg.MetadataValue.int(n)
           for status, n in counts.items()},
    }


@dg.asset(
    key=TENANT_HEALTH_KEY, partitions_def=tenant_partitions, group_name=OPS_GROUP,
    check_specs=[FRESH_SPEC], kinds={"python"},
    description="One tenant's health: last successful sync, lag, last day's records and "
                "changes, quarantine, quota stops, failure reason and the action to take.",
)
def tenant_health_asset(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    store = warehouse.warehouse()
    health = tenant_health(store, tenants.require_tenant(store.engine, context.partition_key),
                           now())
    return dg.MaterializeResult(metadata=health_metadata(health),
                                check_results=[fresh_result(health)])


@dg.asset(
    key=FLEET_HEALTH_KEY, group_name=OPS_GROUP, kinds={"python"},
    description="Every active tenant's health in one table, most lagging first.",
)
def fleet_health_asset(warehouse: WarehouseResource) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=fleet_metadata(fleet_health(warehouse.warehouse(),
                                                                      now())))


ops_assets = [tenant_health_asset, fleet_health_asset]
