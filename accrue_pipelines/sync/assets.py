"""The tenant's CRM objects: one asset per object, all synced in one step per tenant.

The assets know nothing about any CRM: the tenant's connector (chosen by the
registry from the tenant's connection) does the reading, the sync engine does
the committing, and this module only reports what happened to Dagster.

Why one step: a Dagster step costs its own events, a CRM login and a claim on the
CRM's API pool, about half a second, which is more than an incremental sync of an
object that has not changed. So the objects share one step (a subsettable
multi-asset): one login, one pool slot, and still one asset per object in the
catalog, each with its own materialization, checks and history. One object's
failure does not stop the others: the step syncs every object it can, then fails
naming those that did not sync, and the retry resumes each from its checkpoint.

A tenant fed by the push API or file uploads is no different here: its connector reads
the records it received (accrue.sources), with the same checkpoints, sync_run rows and
checks.

An optional object the tenant's admin did not switch on (`Tenant.syncs`) is reported as
not selected before the CRM is even opened: no API call reads it, and neither the
checks nor the failure sensor count it as unsynced.
"""

import time
from collections.abc import Iterator
from typing import Any

import dagster as dg

from accrue import tenants
from accrue.sync import SyncResult, record_failed_attempt, sync_object
from accrue.warehouse import Warehouse
from accrue_pipelines.constants import SYNC_GROUP, object_of, sync_asset_key
from accrue_pipelines.platform import run_tags, ui_metadata
from accrue_pipelines.platform.partitions import tenant_partitions
from accrue_pipelines.platform.pools import crm_api_slot
from accrue_pipelines.platform.resources import CrmResource, WarehouseResource
from accrue_pipelines.sync import checks
from connectors.base import AuthenticationError, Connector
from connectors.common_model import COMMON_OBJECTS, REFERENCES, table_name

SYNC_STEP = "crm_sync"
SYNC_RETRY = dg.RetryPolicy(
    max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def parents(object_name: str) -> list[str]:
    """The objects this one references: synced first, so its references can be checked."""
    return sorted({target for _, target in REFERENCES.get(object_name, ())})


def sync_order() -> list[str]:
    """Every common object, parents before children, otherwise in the common model's order."""
    ordered: list[str] = []
    pending = list(COMMON_OBJECTS)
    while pending:
        ready = next(name for name in pending if set(parents(name)) <= set(ordered))
        ordered.append(ready)
        pending.remove(ready)
    return ordered


def _asset_spec(object_name: str) -> dg.AssetSpec:
    table = table_name(object_name)
    return dg.AssetSpec(
        key=sync_asset_key(object_name),
        group_name=SYNC_GROUP,
        kinds={"sql"},
        description=(
            f"Incremental sync of each tenant's CRM {object_name} records into `{table}` "
            "(upserts keyed on the CRM id, soft deletes flagged, every version kept in "
            "crm_change_log, checkpoint per page)."
        ),
        metadata={"dagster/table_name": table},
        # No deps between the crm/* assets: parents sync first inside the step (sync_order),
        # and a reference is not a derivation. As deps inside one multi-asset, Dagster would
        # look up each parent's latest materialization of *any* tenant for provenance, and
        # warn of a "data version mismatch" whenever another tenant synced meanwhile.
    )


class ObjectsFailed(Exception):
    """Some objects did not sync; the others did. Carries the first error as its cause."""

    def __init__(self, tenant_id: str, failed: dict[str, BaseException]):
        self.failed = failed
        detail = "; ".join(f"{name}: {type(exc).__name__}: {exc}" for name, exc in failed.items())
        super().__init__(f"{tenant_id}: {len(failed)} object(s) did not sync ({detail})")


@dg.multi_asset(
    name=SYNC_STEP,
    specs=[_asset_spec(name) for name in COMMON_OBJECTS],
    check_specs=[spec for name in COMMON_OBJECTS for spec in checks.check_specs(name)],
    partitions_def=tenant_partitions,
    can_subset=True,
    retry_policy=SYNC_RETRY,
    description="Incremental sync of one tenant's CRM objects, parents first, in one step.",
)
def crm_sync(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, crm: CrmResource
) -> Iterator[dg.MaterializeResult]:
    tenant_id = context.partition_key
    selected = {object_of(key) for key in context.selected_asset_keys}
    store = warehouse.warehouse()
    # Objects with their own outcome (synced, failed, not offered, not chosen).
    handled: set[str] = set()
    failed: dict[str, BaseException] = {}
    tenant = tenants.require_tenant(warehouse.engine(), tenant_id)
    for object_name in sync_order():
        if object_name in selected and not tenant.syncs(object_name):
            handled.add(object_name)
            context.log.info(f"{tenant_id}: {object_name} not chosen by the tenant; not read")
            yield _selected_checks(context, _not_chosen_result(object_name), {})
    try:
        with crm_api_slot(context, crm.crm_type(tenant_id)):
            began = time.monotonic()
            with crm.open(tenant_id) as connector:
                offered = {o.name for o in connector.objects()}
                # Login and describe, once per step: reported with the first object.
                connect = ui_metadata.seconds(time.monotonic() - began)
                extra: dict[str, Any] = {"connect_seconds": connect}
                for result in _sync_objects(context, store, connector, selected, offered,
                                            handled, failed):
                    yield _selected_checks(context, result, extra)
                    extra = {}
    except Exception as exc:
        # Failed before reaching these objects (login, describe, refused credentials):
        # their attempt is on record too.
        unreached = [o for o in sync_order() if o in selected and o not in handled]
        record_failed_attempt(store, tenant_id, unreached, exc, run_id=context.run_id)
        if isinstance(exc, AuthenticationError):
            # Retrying cannot fix credentials: fail now, with what to do.
            raise dg.Failure(
                description=f"{tenant_id}: {exc}" + (f" — {exc.hint}" if exc.hint else ""),
                metadata={"error_kind": exc.kind, "objects": ", ".join(sorted(selected))},
                allow_retries=False,
            ) from exc
        raise
    if failed:
        # Retried by SYNC_RETRY: objects already synced cost one incremental read each.
        raise ObjectsFailed(tenant_id, failed) from next(iter(failed.values()))


def _sync_objects(
    context: dg.AssetExecutionContext, store: Warehouse, connector: Connector,
    selected: set[str], offered: set[str], handled: set[str],
    failed: dict[str, BaseException],
) -> Iterator[dg.MaterializeResult]:
    """Each selected object's result, parents first; an object's error is kept in `failed`
    and the others go on, except refused credentials, which fail every object alike."""
    tenant_id = context.partition_key
    for object_name in sync_order():
        if object_name not in selected or object_name in handled:
            continue
        handled.add(object_name)
        if object_name not in offered:
            context.log.info(f"{tenant_id}: the CRM offers no {object_name}")
            yield _not_offered_result(object_name)
            continue
        try:
            result = _sync_one(context, store, connector, object_name)
        except AuthenticationError:
            raise  # the same credentials fail for every object: stop now
        except Exception as exc:  # noqa: BLE001 - the others go on; raised by the caller
            context.log.error(f"{tenant_id}/{object_name}: {type(exc).__name__}: {exc}")
            failed[object_name] = exc
            continue
        yield result


def _selected_checks(
    context: dg.AssetExecutionContext, result: dg.MaterializeResult,
    extra_metadata: dict[str, Any],
) -> dg.MaterializeResult:
    """The result with only the check results this run selected (a subset may leave some
    out), and the step's own figures when it is the step's first."""
    selected = context.selected_asset_check_keys
    kept = [ui_metadata.for_tenant(c, context.partition_key)
            for c in result.check_results or []
            if dg.AssetCheckKey(result.asset_key, c.check_name) in selected]  # type: ignore[arg-type]
    return dg.MaterializeResult(asset_key=result.asset_key,
                                metadata={**(result.metadata or {}), **extra_metadata},
                                data_version=result.data_version, check_results=kept)


def _sync_one(
    context: dg.AssetExecutionContext, store: Warehouse, connector: Connector, object_name: str
) -> dg.MaterializeResult:
    tenant_id = context.partition_key
    result = sync_object(
        store, connector, tenant_id, object_name,
        reconcile=context.run.tags.get(run_tags.RECONCILE) == "true",
        progress=context.log.info, run_id=context.run_id,
    )
    source_count = connector.count(object_name) if result.complete else None
    if result.new_fields or result.removed_fields:
        context.log.warning(
            f"{tenant_id}/{object_name}: schema drift: new fields {result.new_fields}, "
            f"removed fields {result.removed_fields}"
        )
    return _materialize_result(store, tenant_id, object_name, result, source_count)


def _materialize_result(
    store: Warehouse, tenant_id: str, object_name: str, result: SyncResult,
    source_count: int | None,
) -> dg.MaterializeResult:
    key = sync_asset_key(object_name)
    summary = store.summary(tenant_id, [object_name])[0]  # counts and freshness, one query
    live, deleted = summary["live_rows"], summary["deleted_rows"]
    metadata: dict[str, Any] = ui_metadata.sync_metadata(result)  # typed, rounded, non-empty
    return dg.MaterializeResult(
        asset_key=key,
        metadata={
            **metadata,
            "dagster/row_count": live,
            "deleted_rows": deleted,
            **({"source_live_count": source_count} if source_count is not None else {}),
        },
        data_version=dg.DataVersion(f"{live}:{deleted}:{summary.get('last_modified_at')}"),
        check_results=checks.sync_results(store, tenant_id, object_name, result, live,
                                          source_count),
    )


def _skipped_result(object_name: str, version: str, flag: dict[str, bool],
                    why: str | None = None) -> dg.MaterializeResult:
    """An object this run does not read, and why: never a failure, its checks pass."""
    key = sync_asset_key(object_name)
    return dg.MaterializeResult(
        asset_key=key,
        metadata={**flag, **({"skipped": why} if why else {})},
        data_version=dg.DataVersion(version),
        check_results=checks.passed_results(object_name, why),
    )


def _not_offered_result(object_name: str) -> dg.MaterializeResult:
    return _skipped_result(object_name, "not-offered", {"offered_by_crm": False})


def _not_chosen_result(object_name: str) -> dg.MaterializeResult:
    """An optional object the tenant did not choose."""
    return _skipped_result(
        object_name, "not-selected", {"selected_by_tenant": False},
        "not selected: an optional import the tenant's admin has not switched on")


sync_assets = [crm_sync]
