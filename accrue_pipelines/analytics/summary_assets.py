"""Downstream of the syncs: a per-tenant pipeline summary, refreshed when data changes
(analytics/sensors.py requests it)."""

import dagster as dg

from accrue_pipelines.constants import SUMMARY_GROUP, SYNC_ASSET_KEYS
from accrue_pipelines.platform.partitions import tenant_partitions
from accrue_pipelines.platform.resources import WarehouseResource

SUMMARY_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn("object", "string"),
    dg.TableColumn("live", "int", description="live rows"),
    dg.TableColumn("deleted", "int", description="soft-deleted rows"),
    dg.TableColumn("last_modified_at", "string", description="newest change in the CRM"),
    dg.TableColumn("last_synced_at", "string", description="last successful sync"),
])


@dg.asset(
    partitions_def=tenant_partitions,
    deps=SYNC_ASSET_KEYS,
    group_name=SUMMARY_GROUP,
    kinds={"sql"},
    metadata={"dagster/table_name": "pipeline_summary"},
)
def pipeline_summary(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Per tenant and object: live and deleted rows, newest change, last sync."""
    tenant_id = context.partition_key
    store = warehouse.warehouse()
    rows = store.summary(tenant_id)
    store.write_summary(tenant_id, rows)
    return dg.MaterializeResult(
        metadata={
            "summary": dg.MetadataValue.table(
                [dg.TableRecord({
                    "object": r["object_name"], "live": int(r["live_rows"]),
                    "deleted": int(r["deleted_rows"]),
                    # A table's records share their fields: "never" for a time not yet seen.
                    **{k: str(r[k] or "never") for k in ("last_modified_at", "last_synced_at")},
                }) for r in rows],
                schema=SUMMARY_SCHEMA),
            "total_live_rows": sum(int(r["live_rows"]) for r in rows),
            "total_deleted_rows": sum(int(r["deleted_rows"]) for r in rows),
        }
    )
