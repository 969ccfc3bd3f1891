"""Downstream of the syncs: a per-tenant pipeline summary, refreshed when data changes
(`refresh_sensor.py` requests it)."""

import dagster as dg

from accrue_pipelines.partitions import tenant_partitions
from accrue_pipelines.resources import WarehouseResource
from accrue_pipelines.sync_assets import sync_asset_keys

SUMMARY_GROUP = "tenant_overview"


@dg.asset(
    partitions_def=tenant_partitions,
    deps=sync_asset_keys,
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
    lines = ["| object | live | deleted | newest change | last synced |", "|---|---:|---:|---|---|"]
    lines += [
        f"| {r['object_name']} | {r['live_rows']:,} | {r['deleted_rows']:,} | "
        f"{r['last_modified_at'] or '—'} | {r['last_synced_at'] or '—'} |"
        for r in rows
    ]
    return dg.MaterializeResult(
        metadata={
            "summary": dg.MetadataValue.md("\n".join(lines)),
            "total_live_rows": sum(r["live_rows"] for r in rows),
            "total_deleted_rows": sum(r["deleted_rows"] for r in rows),
        }
    )
