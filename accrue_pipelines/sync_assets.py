"""One tenant-partitioned asset per common CRM object: an incremental sync each.

The assets know nothing about any CRM: the tenant's connector (chosen by the
registry from the tenant's connection) does the reading, the sync engine does
the committing, and this module only reports what happened to Dagster.
"""

import dagster as dg

from accrue.sync import SyncResult, sync_object
from accrue.warehouse import Warehouse
from accrue_pipelines import run_tags
from accrue_pipelines.partitions import tenant_partitions
from accrue_pipelines.pools import crm_api_slot
from accrue_pipelines.resources import CrmResource, WarehouseResource
from connectors.base import AuthenticationError
from connectors.common_model import COMMON_OBJECTS, REFERENCES, table_name

SYNC_GROUP = "crm_sync"
SYNC_RETRY = dg.RetryPolicy(
    max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
RECONCILE_TAG = run_tags.RECONCILE

DUPLICATES_CHECK = "no_duplicate_keys"
COUNT_CHECK = "count_matches_source"
COMPLETE_CHECK = "sync_complete"
QUARANTINE_CHECK = "quarantine_empty"
ORPHANS_CHECK = "no_orphans"
HEALTH_CHECK = "sync_healthy"


def sync_asset_key(object_name: str) -> dg.AssetKey:
    return dg.AssetKey(["crm", object_name])


def _check_specs(object_name: str) -> list[dg.AssetCheckSpec]:
    key = sync_asset_key(object_name)
    specs = [
        dg.AssetCheckSpec(DUPLICATES_CHECK, asset=key,
                          description="No CRM id appears twice for the tenant (F2)."),
        dg.AssetCheckSpec(COUNT_CHECK, asset=key,
                          description="Live rows in the warehouse equal the CRM's live records."),
        dg.AssetCheckSpec(COMPLETE_CHECK, asset=key,
                          description="The sync read everything (not stopped at the API quota)."),
        dg.AssetCheckSpec(QUARANTINE_CHECK, asset=key,
                          description="No record waits in quarantine (warning: none is lost)."),
        dg.AssetCheckSpec(HEALTH_CHECK, asset=key,
                          description="The tenant's last sync succeeded; on failure, says why "
                          "(credentials, quota, CRM outage) and what to do."),
    ]
    if object_name in REFERENCES:
        specs.append(dg.AssetCheckSpec(
            ORPHANS_CHECK, asset=key,
            description="Every reference (e.g. an opportunity's account) points to a live row.",
        ))
    return specs


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
            "(upserts keyed on the CRM id, soft deletes flagged, every version kept in "
            "crm_change_log, checkpoint per page)."
        ),
        metadata={"dagster/table_name": table},
        check_specs=_check_specs(object_name),
        # Parents sync first, so references (checked below) point at rows already there.
        deps=sorted({sync_asset_key(target) for _, target in REFERENCES.get(object_name, ())}),
    )
    def _sync(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, crm: CrmResource
    ) -> dg.MaterializeResult:
        tenant_id = context.partition_key
        store = warehouse.warehouse()
        reconcile = context.run.tags.get(RECONCILE_TAG) == "true"
        try:
            with crm_api_slot(context, crm.crm_type(tenant_id)), crm.open(tenant_id) as connector:
                if object_name not in {o.name for o in connector.objects()}:
                    context.log.info(f"{tenant_id}: the CRM offers no {object_name}")
                    return _not_offered_result(object_name)
                result = sync_object(
                    store, connector, tenant_id, object_name, reconcile=reconcile,
                    progress=context.log.info, run_id=context.run_id,
                )
                source_count = connector.count(object_name) if result.complete else None
        except AuthenticationError as exc:
            # Retrying cannot fix credentials: fail now, with what to do.
            raise dg.Failure(
                description=f"{tenant_id}: {exc}" + (f" — {exc.hint}" if exc.hint else ""),
                metadata={"error_kind": exc.kind},
                allow_retries=False,
            ) from exc
        if result.new_fields or result.removed_fields:
            context.log.warning(
                f"{tenant_id}/{object_name}: schema drift: new fields {result.new_fields}, "
                f"removed fields {result.removed_fields}"
            )
        return _materialize_result(store, tenant_id, object_name, result, source_count)

    return _sync


def _materialize_result(
    store: Warehouse, tenant_id: str, object_name: str, result: SyncResult,
    source_count: int | None,
) -> dg.MaterializeResult:
    live = store.count(tenant_id, object_name)
    deleted = store.count(tenant_id, object_name, include_deleted=True) - live
    duplicates = store.duplicate_keys(tenant_id, object_name)
    quarantined = store.quarantine_count(tenant_id, object_name)
    summary = next(
        (row for row in store.summary(tenant_id) if row["object_name"] == object_name), {}
    )
    checks = [
        dg.AssetCheckResult(check_name=DUPLICATES_CHECK, passed=duplicates == 0,
                            metadata={"duplicate_keys": duplicates}),
        dg.AssetCheckResult(check_name=COMPLETE_CHECK, passed=result.complete,
                            severity=dg.AssetCheckSeverity.WARN,
                            metadata={"stop_reason": result.stop_reason or ""}),
        dg.AssetCheckResult(check_name=QUARANTINE_CHECK, passed=quarantined == 0,
                            severity=dg.AssetCheckSeverity.WARN,
                            metadata={"quarantined_records": quarantined}),
        dg.AssetCheckResult(check_name=HEALTH_CHECK, passed=True,
                            metadata={"last_sync_run": result.sync_run_id or 0}),
    ]
    if source_count is None:  # stopped early: comparing counts now would only mislead
        checks.append(dg.AssetCheckResult(
            check_name=COUNT_CHECK, passed=False, severity=dg.AssetCheckSeverity.WARN,
            metadata={"reason": "sync incomplete; compared after the next full sync"},
        ))
    else:
        checks.append(dg.AssetCheckResult(
            check_name=COUNT_CHECK, passed=live == source_count,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"warehouse_live": live, "source_live": source_count,
                      "difference": live - source_count},
        ))
    if object_name in REFERENCES:
        orphans = store.orphans(tenant_id, object_name)
        checks.append(dg.AssetCheckResult(
            check_name=ORPHANS_CHECK, passed=not any(orphans.values()),
            severity=dg.AssetCheckSeverity.WARN, metadata={f"orphan_{k}": v
                                                           for k, v in orphans.items()},
        ))
    metadata = result.as_metadata()
    metadata["new_fields"] = ", ".join(result.new_fields)
    metadata["removed_fields"] = ", ".join(result.removed_fields)
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "dagster/row_count": live,
            "deleted_rows": deleted,
            "source_live_count": source_count if source_count is not None else -1,
        },
        data_version=dg.DataVersion(f"{live}:{deleted}:{summary.get('last_modified_at')}"),
        check_results=checks,
    )


def _not_offered_result(object_name: str) -> dg.MaterializeResult:
    names = [spec.name for spec in _check_specs(object_name)]
    return dg.MaterializeResult(
        metadata={"offered_by_crm": False},
        data_version=dg.DataVersion("not-offered"),
        check_results=[dg.AssetCheckResult(check_name=name, passed=True) for name in names],
    )


sync_assets = [build_sync_asset(name) for name in COMMON_OBJECTS]
sync_asset_keys = [sync_asset_key(name) for name in COMMON_OBJECTS]
