"""The tenant scheduler: tenant partitions follow the registry, syncs follow the schedule.

One sensor does both, so a new tenant's partition and its first sync are created
in the same tick. Each tick computes everything first, saves the scheduler's
memory (`accrue.sync_schedule`), and returns its cursor last, so a failing tick
never records progress it did not make. Every limit below states its reason.

A feed tenant (push API, file uploads: accrue.sources) is not synced on a schedule: its
sync is requested when its feed has input waiting (`Feed.pending`), within the same
per-tick cap, back-pressure and per-tenant serialisation (one run in flight per tenant)
as the CRM tenants.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
from sqlalchemy.engine import Engine

from accrue import sources, sync_schedule, tenants
from accrue_pipelines.constants import FINISHED, IN_FLIGHT, SYNC_JOB_NAME
from accrue_pipelines.platform import run_tags
from accrue_pipelines.platform.partitions import TENANT_PARTITIONS_NAME, tenant_partitions
from accrue_pipelines.platform.resources import WarehouseResource
from accrue_pipelines.sync.jobs import covers_every_object, sync_tenant_job

# Tenants that keep a partition: their data stays visible while they are paused.
PARTITIONED_STATUSES = ("active", "paused")
# SQLite instances fail on very large single partition requests (dagster#16260).
MAX_PARTITION_CHANGES_PER_TICK = 500
# Submitting a sync run costs the daemon about a second on a loaded 2-core machine (Dagster
# writes a run record and a planned event per asset and per check, 52 per sync run), inside
# the tick. 10 per 15-second tick, submitted on 4 threads (dagster.yaml `sensors`), keeps a
# tick within a few seconds and still asks for 40 runs a minute, more than 2 cores finish.
MAX_RUN_REQUESTS_PER_TICK = 10
# Back-pressure: with this many runs already queued, routine syncs wait for a later tick
# (they are due again then, most overdue first); first syncs of new tenants still go.
QUEUED_RUNS_TARGET = 50
# Run records are updated by several processes; re-reading a short window is harmless
# (an outcome older than the last one seen is ignored) and catches late writers.
OUTCOME_OVERLAP = timedelta(minutes=2)
# Outcomes read per tick; more wait for the next tick (the cursor moves only past read ones).
MAX_OUTCOMES_PER_TICK = 2000
# Without a cursor (first tick, or a reset), outcomes of the last day are read again.
COLD_START_LOOKBACK = timedelta(days=1)


def _now() -> datetime:
    """The tick's clock (a seam for tests that need time to pass)."""
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _partition_requests(
    registered: list[tenants.Tenant], existing: set[str]
) -> tuple[list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest], set[str]]:
    """Partition changes that make Dagster match the registry, and the partitions after them."""
    wanted = {t.id for t in registered if t.status in PARTITIONED_STATUSES}
    to_add = sorted(wanted - existing)[:MAX_PARTITION_CHANGES_PER_TICK]
    to_remove = sorted(existing - wanted)[:MAX_PARTITION_CHANGES_PER_TICK]
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if to_add:
        requests.append(tenant_partitions.build_add_request(to_add))
    if to_remove:
        requests.append(tenant_partitions.build_delete_request(to_remove))
    return requests, (existing | set(to_add)) - set(to_remove)


def _read_outcomes(
    instance: dg.DagsterInstance, since: datetime
) -> tuple[list[sync_schedule.RunOutcome], datetime]:
    """Finished full-sync runs updated after `since`, oldest first, and the new watermark."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=SYNC_JOB_NAME, statuses=FINISHED,
                              updated_after=since - OUTCOME_OVERLAP),
        limit=MAX_OUTCOMES_PER_TICK, order_by="update_timestamp", ascending=True,
    )
    outcomes = []
    watermark = since
    for record in records:
        watermark = max(watermark, _utc(record.update_timestamp))
        run = record.dagster_run
        tenant_id = run.tags.get("dagster/partition")
        if not tenant_id or not covers_every_object(run):
            continue  # a partial sync (one object from the CLI) says nothing about the rest
        finished = record.end_time or record.update_timestamp.timestamp()
        outcomes.append(sync_schedule.RunOutcome(
            tenant_id=tenant_id,
            finished_at=datetime.fromtimestamp(finished, UTC),
            succeeded=run.status == dg.DagsterRunStatus.SUCCESS,
            reconciled=run.tags.get(run_tags.RECONCILE) == "true",
        ))
    return outcomes, watermark


def _trigger(request: sync_schedule.SyncRequest) -> str:
    if request.reconcile:
        return "reconciliation"
    if request.reason == sync_schedule.FEED_REASON:
        return "received"
    if request.priority >= sync_schedule.PRIORITY_FIRST_SYNC:
        return "first-sync"
    if request.reason == sync_schedule.REQUESTED_REASON:
        return "requested"
    return "retry" if request.reason.startswith("retry") else "frequency"


def _received(engine: Engine, fed: list[tenants.Tenant], busy: set[str]) -> list[str]:
    """Feed tenants with input waiting and no run in flight (that run applies it; the
    input that arrives meanwhile is seen pending after it)."""
    waiting = []
    for tenant in fed:
        feed = sources.feed_for(tenant.crm_type)
        if tenant.id not in busy and feed is not None and feed.pending(engine, tenant.id):
            waiting.append(tenant.id)
    return waiting


@dg.sensor(
    job=sync_tenant_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Keeps one partition per registered tenant and requests each active tenant's sync "
        "when due: the frequency its admin chose, counted from the last successful sync; "
        "failed syncs retried with backoff; new tenants first, then the admins' 'Sync "
        "now'; push and upload tenants when records are waiting; the nightly id "
        f"reconciliation spread over the night; at most {MAX_RUN_REQUESTS_PER_TICK} "
        "requests per tick."
    ),
)
def tenant_sync_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult:
    now = _now()
    engine = warehouse.engine()
    instance = context.instance
    cursor = json.loads(context.cursor) if context.cursor else {}
    since = (datetime.fromisoformat(cursor["runs_updated_after"])
             if "runs_updated_after" in cursor else now - COLD_START_LOOKBACK)

    registered = tenants.list_tenants(engine)
    existing = set(instance.get_dynamic_partitions(TENANT_PARTITIONS_NAME))
    partition_requests, partitions = _partition_requests(registered, existing)
    active = [t for t in registered if t.status == "active" and t.id in partitions]

    schedules = sync_schedule.load(engine)
    outcomes, watermark = _read_outcomes(instance, since)
    changed: dict[str, sync_schedule.TenantSchedule] = {}
    for outcome in outcomes:
        current = changed.get(outcome.tenant_id) or schedules.get(
            outcome.tenant_id, sync_schedule.TenantSchedule(outcome.tenant_id))
        updated = current.with_outcome(outcome)
        if updated != current:
            changed[outcome.tenant_id] = updated
    schedules.update(changed)

    in_flight = instance.get_runs(
        filters=dg.RunsFilter(job_name=SYNC_JOB_NAME, statuses=IN_FLIGHT))
    busy = {run.tags.get("dagster/partition", "") for run in in_flight}
    queued = instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
    fed = [t for t in active if sources.is_feed(t.crm_type)]
    received = _received(engine, fed, busy)
    chosen, waiting = sync_schedule.plan(
        [(t.id, t.sync_frequency_minutes) for t in active if not sources.is_feed(t.crm_type)],
        schedules, busy, now,
        limit=MAX_RUN_REQUESTS_PER_TICK,
        routine_limit=max(0, QUEUED_RUNS_TARGET - queued),
        waiting=received,
    )
    crm_of = {t.id: t.crm_type for t in active}
    run_requests = []
    for request in chosen:
        run_requests.append(dg.RunRequest(
            partition_key=request.tenant_id,
            run_key=f"{request.tenant_id}-{int(now.timestamp())}",
            tags=run_tags.sync_run_tags(
                request.tenant_id, crm_of[request.tenant_id], trigger=_trigger(request),
                priority=request.priority, reconcile=request.reconcile),
        ))
        current = schedules.get(request.tenant_id,
                                sync_schedule.TenantSchedule(request.tenant_id))
        changed[request.tenant_id] = current.with_request(now)
    sync_schedule.save(engine, changed.values())  # before the cursor: see the module doc

    if run_requests or partition_requests:
        context.log.info(
            f"{len(active)} active tenants: requested {len(run_requests)} sync(s) "
            f"({', '.join(f'{r.tenant_id}: {r.reason}' for r in chosen[:10])}"
            f"{' …' if len(chosen) > 10 else ''}); {waiting} more due, {len(busy)} in "
            f"flight, {queued} runs queued; {len(outcomes)} outcome(s) read")
    new_cursor = json.dumps({"runs_updated_after": watermark.isoformat()})
    if not run_requests and not partition_requests:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                f"no tenant due among {len(active)} active ({len(busy)} in flight, "
                f"{waiting} waiting for queue room, {len(outcomes)} outcome(s) read; "
                f"{len(fed)} fed by push or upload, {len(received)} with records waiting)"),
            cursor=new_cursor,
        )
    return dg.SensorResult(run_requests=run_requests,
                           dynamic_partitions_requests=partition_requests, cursor=new_cursor)
