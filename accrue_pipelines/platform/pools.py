"""Per-CRM API limits as Dagster concurrency pools (`crm_api_<crm>`).

A pool named on an asset is fixed when the code is written, but our sync assets
serve every CRM: which CRM a step calls is known only at run time, from the
tenant. So the sync step claims a slot of its CRM's pool itself, through the
instance's concurrency storage — the same slots, priorities and UI (Deployment →
Concurrency) as a static pool, shared by every run and every worker machine.

Limits: `concurrency: pools: default_limit` in dagster.yaml applies to each CRM's
pool when it is first used; a data engineer changes one CRM's limit at run time
with `dagster instance concurrency set crm_api_<crm> N` or in the UI, no deploy.
A run that finds its pool full waits, logging once a minute, in priority order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import dagster as dg

from accrue_pipelines.platform import run_tags

POOL_PREFIX = "crm_api_"
# How often a waiting step asks for a slot again: slots free in seconds (one object's sync).
CLAIM_POLL_SECONDS = 1.0
WAIT_LOG_EVERY_SECONDS = 60.0


def crm_pool(crm_type: str) -> str:
    return f"{POOL_PREFIX}{crm_type}"


def _has_limit(instance: dg.DagsterInstance, pool: str) -> bool:
    """Whether the pool is limited, giving it the instance's default limit on first use."""
    storage = instance.event_log_storage
    default = instance.global_op_concurrency_default_limit
    limits = {p.name: p for p in storage.get_pool_limits()}
    current = limits.get(pool)
    stale_default = current is not None and current.from_default and current.limit != default
    if default is not None and (current is None or stale_default):
        # Another process may initialise it at the same moment; the re-read below decides.
        with suppress(Exception):
            storage.initialize_concurrency_limit_to_default(pool)
        return pool in storage.get_concurrency_keys()
    return current is not None


@contextmanager
def crm_api_slot(context: dg.AssetExecutionContext, crm_type: str) -> Iterator[str | None]:
    """Hold one slot of the CRM's pool while the body runs; yields the pool name (None: no limit).

    No limit when the instance has no concurrency storage (in-memory test instances) or
    the pool has no limit configured (no `default_limit`, none set by hand).
    """
    instance = context.instance
    storage = instance.event_log_storage
    pool = crm_pool(crm_type)
    if not storage.supports_global_concurrency_limits:
        yield None
        return
    if not _has_limit(instance, pool):
        yield None
        return
    run_id = context.run_id
    step_key = context.get_step_execution_context().step.key
    priority = int(context.run.tags.get(run_tags.PRIORITY, "0") or 0)
    started = time.monotonic()
    next_log = started
    while not storage.claim_concurrency_slot(pool, run_id, step_key, priority).is_claimed:
        now = time.monotonic()
        if now >= next_log:
            info = storage.get_concurrency_info(pool)
            context.log.info(f"waiting for a {pool} slot ({info.active_slot_count} of "
                             f"{info.slot_count} in use, {info.pending_step_count} waiting)")
            next_log = now + WAIT_LOG_EVERY_SECONDS
        time.sleep(CLAIM_POLL_SECONDS)
    waited = time.monotonic() - started
    if waited >= CLAIM_POLL_SECONDS:
        context.log.info(f"got a {pool} slot after {waited:.0f} s")
    try:
        yield pool
    finally:
        storage.free_concurrency_slot_for_step(run_id, step_key)
