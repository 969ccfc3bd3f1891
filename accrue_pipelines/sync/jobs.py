"""The sync job the scheduler sensor and the CLI launch.

A tenant's sync is one run, executed in its own process (the in-process executor),
with one step for all of its objects (accrue_pipelines/sync/assets.py): a process
per step would load the code location again, and a step per object would log in to
the CRM and write Dagster's step events once per object, each costing more than an
incremental sync of an object that did not change. The catalog still has one asset
per object, with its own materializations, checks and history.
"""

from __future__ import annotations

import dagster as dg

from accrue_pipelines.constants import SYNC_ASSET_KEYS, SYNC_GROUP, SYNC_JOB_NAME
from accrue_pipelines.platform.partitions import tenant_partitions

sync_tenant_job = dg.define_asset_job(
    name=SYNC_JOB_NAME,
    selection=dg.AssetSelection.groups(SYNC_GROUP),
    partitions_def=tenant_partitions,
    description="Incremental sync of every CRM object of one tenant, in one process.",
    executor_def=dg.in_process_executor,
)


def covers_every_object(run: dg.DagsterRun) -> bool:
    """Whether a sync run was meant to sync all objects (not the CLI's `--object` subset)."""
    selection = run.asset_selection
    return not selection or set(SYNC_ASSET_KEYS) <= set(selection)  # empty: the whole job
