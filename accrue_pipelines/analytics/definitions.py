"""The analytics domain: what is computed from a tenant's synced data (its summary,
prices, opportunities, seller metrics), the analysis job and the refresh sensor."""

import dagster as dg

from accrue_pipelines.analytics.assets import analytics_assets
from accrue_pipelines.analytics.jobs import analyze_tenant_job
from accrue_pipelines.analytics.sensors import downstream_refresh_sensor
from accrue_pipelines.analytics.summary_assets import pipeline_summary
from accrue_pipelines.platform import definitions as platform_definitions

defs = dg.Definitions.merge(platform_definitions.defs, dg.Definitions(
    assets=[pipeline_summary, *analytics_assets],
    jobs=[analyze_tenant_job],
    sensors=[downstream_refresh_sensor],
))
