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
from accrue_pipelines import run_tags, ui_metadata
from accrue_pipelines.partitions import tenant_partitions
from accrue_pipelines.pools import crm_api_slot
from accrue_pipelines.resources import CrmResource, WarehouseResource
from connectors.base import AuthenticationError, Connector
from connectors.common_model import COMMON_OBJECTS, REFERENCES, table_name

SYNC_GROUP = "crm_sync"
SYNC_STEP = "crm_sync"
SYNC_RETRY = dg.RetryPolicy(
    max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
RECONCILE_TAG = run_tags.RECONCILE

# Three checks per object, one per question an on-call engineer asks and per action it
# calls for. Each check costs a run about six instance writes and reads (planned event and
# row at submission, output, evaluation, its row, the lookup of the materialization it
# judges), at every sync of every tenant: the sensor's submission time and a run's
# overhead grow with their number, so related facts share a check and sit in its metadata.
HEALTH_CHECK = "sync_healthy"  # did the last sync succeed and read everything? (else: why)
MATCHES_CHECK = "warehouse_matches_crm"  # no duplicate ids, same live count, no orphans
QUARANTINE_CHECK = "quarantine_empty"  # records whose values we could not store exactly


def sync_asset_key(object_name: str) -> dg.AssetKey:
    return dg.AssetKey(["crm", object_name])


def object_of(key: dg.AssetKey) -> str:
    """The common object a crm/* asset key stands for."""
    return key.path[-1]


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


def _check_specs(object_name: str) -> list[dg.AssetCheckSpec]:
    key = sync_asset_key(object_name)
    references = ", no reference to a missing row" if object_name in REFERENCES else ""
    with ui_metadata.partitioned_checks_allowed():  # one status per tenant: see ui_metadata
        return _tenant_check_specs(key, references)


def _tenant_check_specs(key: dg.AssetKey, references: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(HEALTH_CHECK, asset=key, partitions_def=tenant_partitions,
                          description="The tenant's last sync succeeded and read everything; "
                          "otherwise says why (credentials, quota, CRM outage) and what to do."),
        dg.AssetCheckSpec(MATCHES_CHECK, asset=key, partitions_def=tenant_partitions,
                          description="The warehouse holds what the CRM holds: no CRM id twice "
                          f"(F2, an error), as many live rows as the CRM{references} "
                          "(warnings)."),
        dg.AssetCheckSpec(QUARANTINE_CHECK, asset=key, partitions_def=tenant_partitions,
                          description="No record waits in quarantine (warning: none is lost)."),
    ]


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
    check_specs=[spec for name in COMMON_OBJECTS for spec in _check_specs(name)],
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
    checks = [ui_metadata.for_tenant(c, context.partition_key)
              for c in result.check_results or []
              if dg.AssetCheckKey(result.asset_key, c.check_name) in selected]  # type: ignore[arg-type]
    return dg.MaterializeResult(asset_key=result.asset_key,
                                metadata={**(result.metadata or {}), **extra_metadata},
                                data_version=result.data_version, check_results=checks)


def _sync_one(
    context: dg.AssetExecutionContext, store: Warehouse, connector: Connector, object_name: str
) -> dg.MaterializeResult:
    tenant_id = context.partition_key
    result = sync_object(
        store, connector, tenant_id, object_name,
        reconcile=context.run.tags.get(RECONCILE_TAG) == "true",
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
    quarantined = store.quarantine_count(tenant_id, object_name)
    checks = [
        _health_result(key, result),
        _matches_result(store, tenant_id, object_name, live, source_count),
        dg.AssetCheckResult(asset_key=key, check_name=QUARANTINE_CHECK, passed=quarantined == 0,
                            severity=dg.AssetCheckSeverity.WARN,
                            metadata={"quarantined_records": quarantined}),
    ]
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
        check_results=checks,
    )


def _health_result(key: dg.AssetKey, result: SyncResult) -> dg.AssetCheckResult:
    """Success; a sync stopped early (API quota) warns, as it resumes at the next run."""
    if result.complete:
        return dg.AssetCheckResult(asset_key=key, check_name=HEALTH_CHECK, passed=True,
                                   metadata={"last_sync_run": result.sync_run_id or 0})
    return dg.AssetCheckResult(
        asset_key=key, check_name=HEALTH_CHECK, passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"Stopped early ({result.stop_reason}): the next sync resumes from the "
                    "checkpoint.",
        metadata={"last_sync_run": result.sync_run_id or 0,
                  "stop_reason": result.stop_reason or ""},
    )


def _matches_result(store: Warehouse, tenant_id: str, object_name: str, live: int,
                    source_count: int | None) -> dg.AssetCheckResult:
    """Duplicates fail as an error (F2 is a guarantee); counts and orphans warn."""
    key = sync_asset_key(object_name)
    duplicates = store.duplicate_keys(tenant_id, object_name)
    orphans = store.orphans(tenant_id, object_name) if object_name in REFERENCES else {}
    metadata: dict[str, Any] = {"duplicate_keys": duplicates, "warehouse_live": live,
                                **{f"orphan_{k}": v for k, v in orphans.items()}}
    problems = []
    if duplicates:
        problems.append(f"{duplicates} CRM ids stored twice")
    if source_count is None:  # stopped early: comparing counts now would only mislead
        metadata["counts"] = "not compared: the sync stopped early"
    else:
        metadata.update(source_live=source_count, difference=live - source_count)
        if live != source_count:
            problems.append(f"{live:,} live rows, the CRM has {source_count:,}")
    problems += [f"{n:,} {name} references point to no row"
                 for name, n in orphans.items() if n]
    return dg.AssetCheckResult(
        asset_key=key, check_name=MATCHES_CHECK, passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR if duplicates else dg.AssetCheckSeverity.WARN,
        description="; ".join(problems) or None, metadata=metadata,
    )


def _skipped_result(object_name: str, version: str, flag: dict[str, bool],
                    why: str | None = None) -> dg.MaterializeResult:
    """An object this run does not read, and why: never a failure, its checks pass."""
    key = sync_asset_key(object_name)
    return dg.MaterializeResult(
        asset_key=key,
        metadata={**flag, **({"skipped": why} if why else {})},
        data_version=dg.DataVersion(version),
        check_results=[dg.AssetCheckResult(asset_key=key, check_name=spec.name, passed=True,
                                           description=why)
                       for spec in _check_specs(object_name)],
    )


def _not_offered_result(object_name: str) -> dg.MaterializeResult:
    return _skipped_result(object_name, "not-offered", {"offered_by_crm": False})


def _not_chosen_result(object_name: str) -> dg.MaterializeResult:
    """An optional object the tenant did not choose."""
    return _skipped_result(
        object_name, "not-selected", {"selected_by_tenant": False},
        "not selected: an optional import the tenant's admin has not switched on")


sync_assets = [crm_sync]
sync_asset_keys = [sync_asset_key(name) for name in COMMON_OBJECTS]
