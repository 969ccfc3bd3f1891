"""Accrue's Dagster code location, packaged by domain.

One package per domain, each with one module per Dagster kind and its own
`definitions.py` (`defs`); `accrue_pipelines.definitions` merges them into the code
location that workspace.yaml, the code server and the CLI load:

- `sync/`: a tenant's CRM objects — `assets.py` (one asset per object, one step per
  tenant), `checks.py` (three per object), `jobs.py` (`sync_tenant`), `sensors.py` (the
  tenant scheduler), `failure_sensor.py` (a failed sync's checks turned red).
- `analytics/`: what is computed from the synced data — `assets.py` (prices,
  opportunities, seller metrics), `summary_assets.py`, `render.py` (their UI tables and
  charts), `jobs.py` (`analyze_tenant`), `sensors.py` (refresh after a sync changed data).
- `onboarding/`: `sensors.py` (the admin's "first data is ready" e-mail).
- `ops/`: the on-call's view — `health.py` (a tenant's health in words), `assets.py`,
  `checks.py` (`tenant_fresh`), `sensors.py` (reports the health, alerts per incident).

Shared by every domain:

- `constants.py`: the names one domain uses to read another's work (job names, groups,
  asset keys, check names, run states, on-call actions). A domain imports another
  domain's constants from here only; analytics may import the sync job's helpers, as it
  runs downstream of syncs.
- `platform/`: what the domains run on, no domain's own — `definitions.py` (resources
  and executor, merged into each domain's `defs`), `resources.py`, `partitions.py` (the
  tenant dimension), `run_tags.py`, `pools.py` (per-CRM API slots), `ui_metadata.py`,
  `launch.py` (runs started by the CLI), and the deployment's pieces: `celery_app.py`,
  `celery_launcher.py`, `instance_storage.py` (named in deploy/ and dagster.yaml files).
"""
