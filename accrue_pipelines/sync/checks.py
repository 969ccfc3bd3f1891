"""The sync's checks: three per CRM object, judged inside the sync step itself.

One check per question an on-call engineer asks and per action it calls for. Each check
costs a run about six instance writes and reads (planned event and row at submission,
output, evaluation, its row, the lookup of the materialization it judges), at every sync
of every tenant: the sensor's submission time and a run's overhead grow with their
number, so related facts share a check and sit in its metadata. A sync that fails never
reaches these; the failure sensor (failure_sensor.py) turns `sync_healthy` red instead.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from accrue.sync import SyncResult
from accrue.warehouse import Warehouse
from accrue_pipelines.constants import (
    HEALTH_CHECK,
    MATCHES_CHECK,
    QUARANTINE_CHECK,
    sync_asset_key,
)
from accrue_pipelines.platform import ui_metadata
from accrue_pipelines.platform.partitions import tenant_partitions
from connectors.common_model import REFERENCES


def check_specs(object_name: str) -> list[dg.AssetCheckSpec]:
    """The object's three checks, each with one status per tenant (its partition)."""
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


def sync_results(store: Warehouse, tenant_id: str, object_name: str, result: SyncResult,
                 live: int, source_count: int | None) -> list[dg.AssetCheckResult]:
    """The three verdicts on one object's sync; `source_count` None: it stopped early."""
    key = sync_asset_key(object_name)
    quarantined = store.quarantine_count(tenant_id, object_name)
    return [
        _health_result(key, result),
        _matches_result(store, tenant_id, object_name, live, source_count),
        dg.AssetCheckResult(asset_key=key, check_name=QUARANTINE_CHECK, passed=quarantined == 0,
                            severity=dg.AssetCheckSeverity.WARN,
                            metadata={"quarantined_records": quarantined}),
    ]


def passed_results(object_name: str, why: str | None) -> list[dg.AssetCheckResult]:
    """Every check passing, for an object the run does not read (not offered, not chosen)."""
    key = sync_asset_key(object_name)
    return [dg.AssetCheckResult(asset_key=key, check_name=spec.name, passed=True,
                                description=why)
            for spec in check_specs(object_name)]


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
