"""The names the domains share: jobs, asset groups and keys, sync checks, run states.

One domain reads another's work through these names only (the analytics refresh sensor
reads finished `sync_tenant` runs, the on-call sensor reads the sync checks, the CLI
launches both jobs), so none imports a constant from another domain's modules.
"""

from __future__ import annotations

import dagster as dg

from connectors.common_model import COMMON_OBJECTS

SYNC_JOB_NAME = "sync_tenant"
ANALYZE_JOB_NAME = "analyze_tenant"

SYNC_GROUP = "crm_sync"
SUMMARY_GROUP = "tenant_overview"
ANALYTICS_GROUP = "analytics"
OPS_GROUP = "ops"


def sync_asset_key(object_name: str) -> dg.AssetKey:
    """The asset of one common CRM object: `crm/<object>`."""
    return dg.AssetKey(["crm", object_name])


def object_of(key: dg.AssetKey) -> str:
    """The common object a crm/* asset key stands for."""
    return key.path[-1]


SYNC_ASSET_KEYS = [sync_asset_key(name) for name in COMMON_OBJECTS]
TENANT_HEALTH_KEY = dg.AssetKey(["ops", "tenant_health"])
FLEET_HEALTH_KEY = dg.AssetKey(["ops", "fleet_health"])

# Three checks per object, one per question an on-call engineer asks and per action it
# calls for (accrue_pipelines/sync/checks.py says why not more).
HEALTH_CHECK = "sync_healthy"  # did the last sync succeed and read everything? (else: why)
MATCHES_CHECK = "warehouse_matches_crm"  # no duplicate ids, same live count, no orphans
QUARANTINE_CHECK = "quarantine_empty"  # records whose values we could not store exactly

# What the on-call engineer should do, per kind of sync failure or health status: said by
# the sync failure sensor on a red check and by the ops roll-up and its alerts.
ACTIONS = {
    "credentials": "The CRM rejected the stored credentials: ask the tenant's admin to "
                   "re-enter them in the concierge.",
    "quota": "The CRM's API quota is spent: the sync resumes from its checkpoint once it "
             "resets; raise the quota or lower the sync frequency if this repeats.",
    "outage": "The CRM did not answer after retries: nothing to do unless it persists; "
              "check the CRM's status page.",
    "error": "Unexpected error: read the run's logs.",
    "stale": "No successful sync for two intervals: check that the daemon and the "
             "tenant_sync_sensor are running and that the tenant's runs are not queued "
             "behind others (Runs page, filter by the tenant).",
    "never": "Not synced yet: the first sync is queued by tenant_sync_sensor; if it does "
             "not start, check that the daemon is running.",
    "quarantine": "Records wait in quarantine (none is lost): see the quarantine_empty "
                  "check for the reasons; most need a field fixed in the CRM.",
}

# Run states the sensors read: runs still to finish (a tenant with one is busy), and done.
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
            dg.DagsterRunStatus.CANCELED]
