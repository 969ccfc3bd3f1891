"""The ops domain: each tenant's health and the fleet's, their freshness check, and the
on-call sensor that reports them and alerts once per incident."""

import dagster as dg

from accrue_pipelines.ops.assets import ops_assets
from accrue_pipelines.ops.sensors import tenant_health_sensor
from accrue_pipelines.platform import definitions as platform_definitions

defs = dg.Definitions.merge(platform_definitions.defs, dg.Definitions(
    assets=ops_assets,
    sensors=[tenant_health_sensor],
))
