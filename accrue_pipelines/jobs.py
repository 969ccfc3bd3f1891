"""Jobs the sensors and the CLI launch.

A tenant's sync is one run, executed in its own process (the in-process executor),
with one step for all of its objects (accrue_pipelines/sync_assets.py): a process
per step would load the code location again, and a step per object would log in to
the CRM and write Dagster's step events once per object, each costing more than an
incremental sync of an object that did not change. The catalog still has one asset
per object, with its own materializations, checks and history.
"""

from __future__ import annotations

import dagster as dg

from accrue_pipelines.analytics_assets import ANALYTICS_GROUP
from accrue_pipelines.partitions import tenant_partitions
from accrue_pipelines.summary_assets import SUMMARY_GROUP
from accrue_pipelines.sync_assets import SYNC_GROUP, sync_asset_keys

SYNC_JOB_NAME = "sync_tenant"
ANALYZE_JOB_NAME = "analyze_tenant"
# What is computed from a tenant's synced data: the summary and the analytics. The
# refresh sensor (refresh_sensor.py) keeps them fresh; `accrue analyze` runs them on demand.
DOWNSTREAM_ASSETS = dg.AssetSelection.groups(SUMMARY_GROUP, ANALYTICS_GROUP)

sync_tenant_job = dg.define_asset_job(
    name=SYNC_JOB_NAME,
    selection=dg.AssetSelection.groups(SYNC_GROUP),
    partitions_def=tenant_partitions,
    description="Incremental sync of every CRM object of one tenant, in one process.",
    executor_def=dg.in_process_executor,
)


analyze_tenant_job = dg.define_asset_job(
    name=ANALYZE_JOB_NAME,
    selection=DOWNSTREAM_ASSETS,
    partitions_def=tenant_partitions,
    description="One tenant's summary and analytics from its synced data, now, in one "
                "process (what the refresh sensor runs after a sync that changed data).",
    executor_def=dg.in_process_executor,
)


def covers_every_object(run: dg.DagsterRun) -> bool:
    """Whether a sync run was meant to sync all objects (not the CLI's `--object` subset)."""
    selection = run.asset_selection
    return not selection or set(sync_asset_keys) <= set(selection)  # empty: the whole job
