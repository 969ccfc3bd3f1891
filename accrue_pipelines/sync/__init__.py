"""The sync domain: a tenant's CRM objects into the warehouse (see accrue_pipelines)."""
