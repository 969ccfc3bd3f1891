"""The Dagster code location: assets, checks, sensors and resources."""

import dagster as dg

from accrue_pipelines.analytics_assets import analytics_assets, seller_metrics_sensor
from accrue_pipelines.health import sync_failure_sensor
from accrue_pipelines.jobs import sync_tenant_job
from accrue_pipelines.notify_sensors import first_data_email_sensor
from accrue_pipelines.resources import CrmResource, WarehouseResource
from accrue_pipelines.schedules import nightly_reconciliation
from accrue_pipelines.sensors import tenant_registry_sensor, tenant_sync_sensor
from accrue_pipelines.summary_assets import pipeline_summary
from accrue_pipelines.sync_assets import sync_assets

warehouse_resource = WarehouseResource()

automation_sensor = dg.AutomationConditionSensorDefinition(
    "accrue_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)

defs = dg.Definitions(
    assets=[*sync_assets, pipeline_summary, *analytics_assets],
    jobs=[sync_tenant_job],
    sensors=[
        tenant_registry_sensor, tenant_sync_sensor, sync_failure_sensor, automation_sensor,
        seller_metrics_sensor, first_data_email_sensor,
    ],
    schedules=[nightly_reconciliation],
    resources={
        "warehouse": warehouse_resource,
        "crm": CrmResource(warehouse=warehouse_resource),
    },
)
