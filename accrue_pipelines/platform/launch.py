"""Launching runs from outside the daemon (the `accrue sync` and `accrue analyze` commands)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from accrue import config
from accrue_pipelines.constants import ANALYZE_JOB_NAME, SYNC_JOB_NAME, sync_asset_key
from accrue_pipelines.platform.partitions import TENANT_PARTITIONS_NAME

REPO_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"


def ensure_dagster_home() -> Path:
    """Use DAGSTER_HOME, or <ACCRUE_HOME>/dagster seeded with the repo's dagster.yaml."""
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"])
    home = config.accrue_home() / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if REPO_DAGSTER_YAML.exists() and (
        not target.exists() or target.read_bytes() != REPO_DAGSTER_YAML.read_bytes()
    ):
        shutil.copyfile(REPO_DAGSTER_YAML, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_tenant_sync(
    tenant_id: str,
    object_names: list[str],
    *,
    echo: Callable[[str], None] = print,
    instance: dg.DagsterInstance | None = None,
) -> bool:
    """Run the tenant's sync job in this process, recorded in the shared instance."""
    selection = [sync_asset_key(name) for name in object_names] or None
    result = _run_for_tenant(SYNC_JOB_NAME, tenant_id, selection, "cli", instance)
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        echo(
            f"{mat.asset_key.to_user_string()}: read {meta.get('records_read', 0)}, "
            f"upserted {meta.get('upserted', 0)}, deleted {meta.get('deleted', 0)}, "
            f"rows {meta.get('dagster/row_count', 0)}"
        )
    echo(f"run {result.run_id}: {'succeeded' if result.success else 'FAILED'}")
    return result.success


def run_tenant_analytics(
    tenant_id: str,
    *,
    echo: Callable[[str], None] = print,
    instance: dg.DagsterInstance | None = None,
) -> bool:
    """Compute the tenant's summary and analytics now, from the data synced so far."""
    result = _run_for_tenant(ANALYZE_JOB_NAME, tenant_id, None, "cli-analyze", instance)
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        figures = [f"{key} {value.value:,}" if isinstance(value.value, int) else
                   f"{key} {value.value}" for key, value in mat.metadata.items()
                   if isinstance(value.value, (int, float, str)) and len(str(value.value)) < 40
                   and not key.startswith("dagster/")]
        echo(f"{mat.asset_key.to_user_string()}: {', '.join(figures)}")
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error is not None:
            echo(f"{event.step_key} failed: {event.step_failure_data.error.message.strip()}")
    echo(f"run {result.run_id}: {'succeeded' if result.success else 'FAILED'}")
    return result.success


def _run_for_tenant(job_name: str, tenant_id: str, selection: list[dg.AssetKey] | None,
                    trigger: str, instance: dg.DagsterInstance | None
                    ) -> dg.ExecuteInProcessResult:
    """One of the tenant's jobs in this process, recorded in the shared instance (and UI)."""
    from accrue_pipelines.definitions import defs

    if instance is None:
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
    if not instance.has_dynamic_partition(TENANT_PARTITIONS_NAME, tenant_id):
        instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant_id])
    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        partition_key=tenant_id,
        asset_selection=selection,
        tags={"accrue/tenant": tenant_id, "accrue/trigger": trigger},
        raise_on_error=False,
    )
