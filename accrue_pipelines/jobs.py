"""Jobs the sensors and the CLI launch."""

import dagster as dg

from accrue_pipelines.partitions import tenant_partitions
from accrue_pipelines.sync_assets import SYNC_GROUP

sync_tenant_job = dg.define_asset_job(
    name="sync_tenant",
    selection=dg.AssetSelection.groups(SYNC_GROUP),
    partitions_def=tenant_partitions,
    description="Incremental sync of every CRM object of one tenant.",
    executor_def=dg.multiprocess_executor.configured({"max_concurrent": 3}),
)
