"""What the Dagster UI shows of a sync: typed, rounded, per tenant, never empty.

The UI plots every numeric metadata entry of an asset check across its evaluations. Our
checks are partitioned by tenant, but a plot over one check's history would still draw
one line through several tenants' counts (2,000 then 1,200 reads like data loss). So a
check result names its tenant in its description and metadata, and its figures go into
one JSON entry (not plotted); materializations keep numeric figures, which the UI plots
per partition.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster_shared.utils.warnings import PreviewWarning

from accrue.sync import SyncResult


@contextmanager
def partitioned_checks_allowed() -> Iterator[None]:
    """Silence only the preview warning of `AssetCheckSpec(partitions_def=...)`.

    Why we use a preview API knowingly: without it a check has one status for all
    tenants (always "in progress" somewhere, a pass or fail not traceable to a tenant).
    Dagster is pinned to 1.13.x (pyproject.toml) and a test materializes two tenants and
    reads each one's check status back, so a breaking change shows up there first.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", category=PreviewWarning,
            message=r"Specifying a partitions_def on an AssetCheckSpec")
        yield


def seconds(value: float) -> dg.MetadataValue:
    """A duration as the UI should show it: seconds, to 0.1 s."""
    return dg.MetadataValue.float(round(float(value), 1))


def typed(name: str, value: Any) -> dg.MetadataValue | None:
    """One figure as typed metadata, or None when it is empty (no empty rows in the UI)."""
    if value is None or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, dg.MetadataValue):
        return value
    if name.endswith("_seconds"):
        return seconds(value)
    if isinstance(value, bool):
        return dg.MetadataValue.bool(value)
    if isinstance(value, int):
        return dg.MetadataValue.int(value)
    if isinstance(value, float):
        return dg.MetadataValue.float(round(value, 3))
    if isinstance(value, (list, tuple)):
        return dg.MetadataValue.text(", ".join(str(v) for v in value))
    if isinstance(value, Mapping):
        return dg.MetadataValue.json(dict(value))
    return dg.MetadataValue.text(str(value))


def typed_metadata(values: Mapping[str, Any]) -> dict[str, dg.MetadataValue]:
    """Every non-empty entry, typed."""
    out = {}
    for name, value in values.items():
        entry = typed(name, value)
        if entry is not None:
            out[name] = entry
    return out


def sync_metadata(result: SyncResult) -> dict[str, dg.MetadataValue]:
    """A sync's figures for its materialization (the tenant is the partition)."""
    values = result.as_metadata()
    values.pop("tenant_id", None)  # the partition says it
    values.pop("object_name", None)  # the asset says it
    return typed_metadata(values)


_NUMERIC = (dg.IntMetadataValue, dg.FloatMetadataValue)


def for_tenant(check: dg.AssetCheckResult, tenant_id: str) -> dg.AssetCheckResult:
    """The check result naming its tenant, its figures in one JSON entry (not plotted)."""
    metadata = dict(check.metadata or {})
    figures = {name: value.value for name, value in metadata.items()
               if isinstance(value, _NUMERIC)}
    kept = {name: value for name, value in metadata.items() if name not in figures
            and typed(name, value.value if isinstance(value, dg.MetadataValue) else value)}
    verdict = "passed" if check.passed else "failed"
    description = f"{tenant_id}: {check.description or verdict}"
    return dg.AssetCheckResult(
        asset_key=check.asset_key, check_name=check.check_name, passed=check.passed,
        severity=check.severity, description=description,
        metadata={"tenant": dg.MetadataValue.text(tenant_id), **kept,
                  **({"figures": dg.MetadataValue.json({"tenant": tenant_id, **figures})}
                     if figures else {})},
    )


def report_check_evaluation(instance: dg.DagsterInstance, evaluation: dg.AssetCheckEvaluation,
                            run_id: str) -> None:
    """Record a check's verdict computed outside the check's step (a sensor), under `run_id`.

    Not `report_runless_asset_event`: Dagster 1.13 stores runless evaluations under the
    run id "" and its unique index (check, run id, partition) then refuses a second one for
    the same partition (the sensor's tick would fail at a tenant's second failure). Under
    a run id, the evaluation updates that run's planned row for the partition (a failed
    sync's check stops showing "in progress") or adds one.
    """
    from dagster._core.instance.utils import RUNLESS_JOB_NAME

    instance.report_dagster_event(
        run_id=run_id,
        dagster_event=dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.ASSET_CHECK_EVALUATION.value,
            event_specific_data=evaluation, job_name=RUNLESS_JOB_NAME),
    )


def _dagster_url() -> str:
    """The webserver's public address (ACCRUE_DAGSTER_URL); empty: alerts carry no link."""
    return os.environ.get("ACCRUE_DAGSTER_URL", "").strip().rstrip("/")


def run_link(run_id: str | None) -> str | None:
    """The run's page in the Dagster UI."""
    base = _dagster_url()
    return f"{base}/runs/{run_id}" if base and run_id else None


def tenant_link(tenant_id: str) -> str | None:
    """The tenant's partition of ops/tenant_health: its roll-up and freshness verdict."""
    base = _dagster_url()
    return (f"{base}/assets/ops/tenant_health?view=partitions&partition={tenant_id}"
            if base else None)
