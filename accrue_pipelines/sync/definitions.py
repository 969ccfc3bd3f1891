"""The sync domain: the CRM objects' assets and checks, the sync job, the scheduler and
the failure sensor."""

import dagster as dg

from accrue_pipelines.platform import definitions as platform_definitions
from accrue_pipelines.sync.assets import sync_assets
from accrue_pipelines.sync.failure_sensor import sync_failure_sensor
from accrue_pipelines.sync.jobs import sync_tenant_job
from accrue_pipelines.sync.sensors import tenant_sync_sensor

defs = dg.Definitions.merge(platform_definitions.defs, dg.Definitions(
    assets=sync_assets,
    jobs=[sync_tenant_job],
    sensors=[tenant_sync_sensor, sync_failure_sensor],
))
