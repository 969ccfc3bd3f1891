"""Tenants are a dynamic partition dimension shared by every tenant-scoped asset."""

import dagster as dg

# Dynamic partition names are global to a Dagster instance: keep ours unmistakable.
TENANT_PARTITIONS_NAME = "accrue_tenants"

tenant_partitions = dg.DynamicPartitionsDefinition(name=TENANT_PARTITIONS_NAME)
