"""The run tags Accrue sets, and what reads each one.

Tags are the only per-run routing Dagster offers: the run queue limits and orders
runs by them (dagster.yaml), the Celery run launcher picks a queue by them
(deploy/dagster/dagster.celery.yaml), and the UI filters by them.
"""

from __future__ import annotations

TENANT = "accrue/tenant"  # the tenant slug (also the partition key)
CRM = "accrue/crm"  # the tenant's CRM type: per-CRM run limits in the run queue
# Why the run exists: first-sync, requested (the admin's "Sync now"), frequency, retry,
# reconciliation, received (a feed's records are waiting: push API, file upload), cli.
TRIGGER = "accrue/trigger"
RECONCILE = "accrue/reconcile"  # "true": compare every live id with the CRM (nightly)
PRIORITY = "dagster/priority"  # the run queue starts higher values first
# dagster-celery's CeleryRunLauncher sends the run to this queue; one queue per CRM, so
# a CRM that is slow or rate-limited only holds back workers of its own queue.
CELERY_QUEUE = "dagster-celery/queue"
# Analytics runs (launched by the refresh sensor) never call a CRM.
ANALYTICS_QUEUE = "analytics"


def crm_queue(crm_type: str) -> str:
    """The Celery queue of a CRM's sync runs, e.g. `crm-salesforce`."""
    return f"crm-{crm_type}"


def worker_queues() -> list[str]:
    """Every queue a Celery worker fleet must serve: one per CRM and feed, then analytics."""
    from accrue.sources import FEEDS
    from connectors.registry import specs

    return [crm_queue(key) for key in [spec.key for spec in specs()] + list(FEEDS)] + [
        ANALYTICS_QUEUE]


def sync_run_tags(
    tenant_id: str, crm_type: str, *, trigger: str, priority: int, reconcile: bool = False
) -> dict[str, str]:
    """Tags of a tenant's sync run (never credentials: tags are shown everywhere)."""
    tags = {
        TENANT: tenant_id,
        CRM: crm_type,
        TRIGGER: trigger,
        PRIORITY: str(priority),
        CELERY_QUEUE: crm_queue(crm_type),
    }
    if reconcile:
        tags[RECONCILE] = "true"
    return tags
