"""The analysis job the refresh sensor and `accrue analyze` launch.

Like a sync, a tenant's analysis is one run in one process (the in-process executor):
see accrue_pipelines/sync/jobs.py for why.
"""

from __future__ import annotations

import dagster as dg

from accrue_pipelines.constants import ANALYTICS_GROUP, ANALYZE_JOB_NAME, SUMMARY_GROUP
from accrue_pipelines.platform.partitions import tenant_partitions

# What is computed from a tenant's synced data: the summary and the analytics. The
# refresh sensor (analytics/sensors.py) keeps them fresh; `accrue analyze` runs them on demand.
DOWNSTREAM_ASSETS = dg.AssetSelection.groups(SUMMARY_GROUP, ANALYTICS_GROUP)

analyze_tenant_job = dg.define_asset_job(
    name=ANALYZE_JOB_NAME,
    selection=DOWNSTREAM_ASSETS,
    partitions_def=tenant_partitions,
    description="One tenant's summary and analytics from its synced data, now, in one "
                "process (what the refresh sensor runs after a sync that changed data).",
    executor_def=dg.in_process_executor,
)
