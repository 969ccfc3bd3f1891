"""The Dagster code location: assets, checks, sensors and resources.

Loading it must stay cheap (target ≤ 5 s on a busy 2-core machine): the webserver,
the daemon and every run load it. Heavy libraries are imported inside the assets
that use them, never at module level.
"""

import dagster as dg

from accrue_pipelines.alerts import tenant_health_sensor
from accrue_pipelines.analytics_assets import analytics_assets
from accrue_pipelines.health import sync_failure_sensor
from accrue_pipelines.jobs import analyze_tenant_job, sync_tenant_job
from accrue_pipelines.notify_sensors import first_data_email_sensor
from accrue_pipelines.ops_assets import ops_assets
from accrue_pipelines.refresh_sensor import downstream_refresh_sensor
from accrue_pipelines.resources import pipeline_resources
from accrue_pipelines.sensors import tenant_sync_sensor
from accrue_pipelines.summary_assets import pipeline_summary
from accrue_pipelines.sync_assets import sync_assets

defs = dg.Definitions(
    assets=[*sync_assets, pipeline_summary, *analytics_assets, *ops_assets],
    jobs=[sync_tenant_job, analyze_tenant_job],
    sensors=[
        tenant_sync_sensor, sync_failure_sensor, downstream_refresh_sensor,
        first_data_email_sensor, tenant_health_sensor,
    ],
    resources=pipeline_resources(),  # the warehouse of ACCRUE_DATABASE_URL
    # Every run is one process: see accrue_pipelines.jobs.
    executor=dg.in_process_executor,
)
