"""One tenant-partitioned asset per common CRM object: an incremental sync each.

The assets know nothing about any CRM: the tenant's connector (chosen by the
registry from the tenant's connection) does the reading, the sync engine does
the committing, and this module only reports what happened to Dagster.
"""

import dagster as dg

from accrue.sync import sync_object
from accrue_pipelines.partitions import tenant_partitions
from accrue_pipelines.resources import CrmResource, WarehouseResource
from connectors.common_model import COMMON_OBJECTS, table_name

SYNC_GROUP = "crm_sync"
SYNC_RETRY = dg.RetryPolicy(
    max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
DUPLICATES_CHECK = "no_duplicate_keys"
COUNT_CHECK = "count_matches_source"


def sync_asset_key(object_name: str) -> dg.AssetKey:
    return dg.AssetKey(["crm", object_name])


def build_sync_asset(object_name: str) -> dg.AssetsDefinition:
    key = sync_asset_key(object_name)
    table = table_name(object_name)

    @dg.asset(
        key=key,
        partitions_def=tenant_partitions,
        group_name=SYNC_GROUP,
        retry_policy=SYNC_RETRY,
        kinds={"sql"},
        description=(
            f"Incremental sync of each tenant's CRM {object_name} records into `{table}` "
            "(upserts keyed on the CRM id, soft deletes flagged, checkpoint per page)."
        ),
        metadata={"dagster/table_name": table},
        check_specs=[
            dg.AssetCheckSpec(
                DUPLICATES_CHECK, asset=key,
                description="No CRM id appears twice for the tenant (F2).",
            ),
            dg.AssetCheckSpec(
                COUNT_CHECK, asset=key,
                description="Live rows in the warehouse equal the live records in the CRM.",
            ),
        ],
    )
    def _sync(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, crm: CrmResource
    ) -> dg.MaterializeResult:
        tenant_id = context.partition_key
        store = warehouse.warehouse()
        with crm.open(tenant_id) as connector:
            offered = {o.name for o in connector.objects()}
            if object_name not in offered:
                context.log.info(f"{tenant_id}: the CRM offers no {object_name}; nothing to sync")
                return _not_offered_result()
            result = sync_object(
                store, connector, tenant_id, object_name,
                progress=context.log.info, run_id=context.run_id,
            )
            source_count = connector.count(object_name)
        live = store.count(tenant_id, object_name)
        deleted = store.count(tenant_id, object_name, include_deleted=True) - live
        duplicates = store.duplicate_keys(tenant_id, object_name)
        summary = next(
            (row for row in store.summary(tenant_id) if row["object_name"] == object_name), {}
        )
        return dg.MaterializeResult(
            metadata={
                **result.as_metadata(),
                "dagster/row_count": live,
                "deleted_rows": deleted,
                "source_live_count": source_count,
            },
            data_version=dg.DataVersion(
                f"{live}:{deleted}:{summary.get('last_modified_at')}"
            ),
            check_results=[
                dg.AssetCheckResult(
                    check_name=DUPLICATES_CHECK,
                    passed=duplicates == 0,
                    metadata={"duplicate_keys": duplicates},
                ),
                dg.AssetCheckResult(
                    check_name=COUNT_CHECK,
                    passed=live == source_count,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={"warehouse_live": live, "source_live": source_count,
                              "difference": live - source_count},
                ),
            ],
        )

    return _sync


def _not_offered_result() -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={"offered_by_crm": False},
        data_version=dg.DataVersion("not-offered"),
        check_results=[
            dg.AssetCheckResult(check_name=DUPLICATES_CHECK, passed=True),
            dg.AssetCheckResult(check_name=COUNT_CHECK, passed=True),
        ],
    )


sync_assets = [build_sync_asset(name) for name in COMMON_OBJECTS]
sync_asset_keys = [sync_asset_key(name) for name in COMMON_OBJECTS]
