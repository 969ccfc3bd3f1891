"""The tenant scheduler: due times, backoff, priorities, caps and the nightly spread.

The rules (`accrue.sync_schedule`) are tested on a fake clock; the sensor that applies
them (`tenant_sync_sensor`) on a Dagster test instance with real runs, on a private
warehouse (it reads every tenant, and the session database holds other tests' tenants).
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from accrue import sync_schedule as ss
from accrue import tenants
from accrue.schema import onboarding_state
from accrue_pipelines.constants import SYNC_JOB_NAME
from accrue_pipelines.definitions import defs
from accrue_pipelines.platform import run_tags
from accrue_pipelines.platform.partitions import TENANT_PARTITIONS_NAME
from accrue_pipelines.platform.resources import CrmResource, WarehouseResource
from accrue_pipelines.sync import sensors

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # noon: outside the reconciliation window
HOUR = 60


def _fresh(tenant_id: str = "acme", **kw: object) -> ss.TenantSchedule:
    """A tenant already reconciled today, so only the frequency rules apply."""
    defaults: dict[str, object] = {"last_reconciled_at": T0 - timedelta(hours=1)}
    defaults.update(kw)
    return ss.TenantSchedule(tenant_id, **defaults)  # type: ignore[arg-type]


# -- the rules ------------------------------------------------------------------------------


def test_a_new_tenant_is_due_at_once_at_first_sync_priority():
    due = ss.next_due(ss.TenantSchedule("new"), HOUR, T0)
    assert due is not None and due.at == T0 and due.priority == ss.PRIORITY_FIRST_SYNC


def test_due_counts_from_the_last_success_with_a_lead_inside_the_interval():
    schedule = _fresh(last_success_at=T0, last_outcome_at=T0)
    due = ss.next_due(schedule, HOUR, T0)
    assert due is not None and due.priority == ss.PRIORITY_ROUTINE
    # Requested 51-54 minutes after the last success: a sync that starts then and takes a
    # few minutes still lands within the 60-minute interval.
    assert T0 + timedelta(minutes=51) <= due.at <= T0 + timedelta(minutes=54)
    leads = {ss.lead(f"t{i}", timedelta(minutes=HOUR)) for i in range(50)}
    assert len(leads) > 40  # jittered per tenant: no lockstep


def test_a_failure_is_retried_with_growing_backoff_not_after_a_full_interval():
    schedule = _fresh(last_success_at=T0, last_outcome_at=T0)
    waits = []
    end = T0 + timedelta(hours=1)
    for failures in range(1, 9):
        schedule = schedule.with_outcome(ss.RunOutcome("acme", end, succeeded=False))
        assert schedule.consecutive_failures == failures
        due = ss.next_due(schedule, HOUR, end)
        assert due is not None and due.reason.startswith("retry")
        waits.append((due.at - end).total_seconds() / 60)
        end = due.at + timedelta(seconds=30)
    assert 0.7 <= waits[0] <= 1.3  # about a minute after the first failure
    assert waits[:7] == sorted(waits[:7]) and len(set(waits[:7])) == 7  # doubling, jittered
    assert max(waits) <= HOUR  # never longer than the frequency
    recovered = schedule.with_outcome(ss.RunOutcome("acme", end, succeeded=True))
    assert recovered.consecutive_failures == 0 and recovered.last_success_at == end


def test_an_older_outcome_never_overrides_a_newer_one():
    schedule = _fresh().with_outcome(ss.RunOutcome("acme", T0, succeeded=True))
    late = schedule.with_outcome(ss.RunOutcome("acme", T0 - timedelta(minutes=5), False))
    assert late == schedule


def test_a_requested_run_is_not_requested_again_until_it_reports_or_is_lost():
    schedule = _fresh(last_success_at=T0 - timedelta(hours=2),
                      last_outcome_at=T0 - timedelta(hours=2)).with_request(T0)
    assert ss.next_due(schedule, HOUR, T0 + timedelta(minutes=1)) is None
    lost = ss.next_due(schedule, HOUR, T0 + ss.REQUEST_GRACE + timedelta(seconds=1))
    assert lost is not None  # never started: due again


def test_plan_puts_first_syncs_first_caps_and_applies_back_pressure():
    routine = {f"old{i:02d}": _fresh(f"old{i:02d}", last_success_at=T0 - timedelta(hours=3),
                                     last_outcome_at=T0 - timedelta(hours=3))
               for i in range(30)}
    tenants_ = [(t, HOUR) for t in routine] + [(f"new{i}", HOUR) for i in range(5)]
    chosen, waiting = ss.plan(tenants_, routine, busy={"old00"}, now=T0, limit=10)
    assert len(chosen) == 10 and waiting == 34 - 10
    assert [r.tenant_id for r in chosen[:5]] == [f"new{i}" for i in range(5)]
    assert "old00" not in {r.tenant_id for r in chosen}  # in flight: never twice
    pressed, _ = ss.plan(tenants_, routine, busy=set(), now=T0, limit=10, routine_limit=0)
    assert {r.tenant_id for r in pressed} == {f"new{i}" for i in range(5)}


def test_an_admin_request_is_due_now_above_routine_and_past_the_backoff():
    failing = _fresh(last_success_at=T0 - timedelta(hours=1), last_outcome_at=T0,
                     consecutive_failures=6)  # backing off for about half an hour
    assert ss.next_due(failing, HOUR, T0).at > T0 + timedelta(minutes=20)
    asked = replace(failing, admin_request_at=T0)
    assert asked.admin_request_pending
    due = ss.next_due(asked, HOUR, T0 + timedelta(seconds=5))
    assert due is not None and due.at == T0 + timedelta(seconds=5)
    assert (due.priority, due.reason) == (ss.PRIORITY_REQUESTED, ss.REQUESTED_REASON)
    assert ss.PRIORITY_ROUTINE < ss.PRIORITY_REQUESTED < ss.PRIORITY_FIRST_SYNC
    # Back-pressure holds routine syncs back, not the admin's request.
    routine = _fresh("steady", last_success_at=T0 - timedelta(hours=3),
                     last_outcome_at=T0 - timedelta(hours=3))
    chosen, waiting = ss.plan([("steady", HOUR), ("acme", HOUR)],
                              {"steady": routine, "acme": asked}, busy=(), now=T0, limit=10,
                              routine_limit=0)
    assert [r.tenant_id for r in chosen] == ["acme"] and waiting == 1
    answered = asked.with_request(T0 + timedelta(seconds=5))
    assert not answered.admin_request_pending
    assert ss.next_due(answered, HOUR, T0 + timedelta(seconds=10)) is None  # on its way


def test_a_new_tenants_request_keeps_the_first_sync_priority():
    due = ss.next_due(ss.TenantSchedule("new", admin_request_at=T0), HOUR, T0)
    assert due is not None and due.priority == ss.PRIORITY_FIRST_SYNC


def test_nightly_reconciliation_is_spread_over_the_window():
    night = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)  # the end of the window
    slots = [ss.reconcile_slot(f"tenant-{i}", night) for i in range(1000)]
    start = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    assert all(start <= s < start + ss.RECONCILE_WINDOW for s in slots)
    per_10_minutes = Counter(int((s - start).total_seconds() // 600) for s in slots)
    assert len(per_10_minutes) == 24 and max(per_10_minutes.values()) <= 2 * 1000 / 24


def test_reconciliation_rides_on_a_sync_once_a_night():
    slot = ss.reconcile_slot("acme", T0)
    schedule = _fresh(last_success_at=T0 - timedelta(minutes=5),
                      last_outcome_at=T0 - timedelta(minutes=5),
                      last_reconciled_at=slot - timedelta(days=1))
    due = ss.next_due(schedule, 24 * HOUR, T0)
    assert due is not None and due.reconcile and due.at == slot  # not a day later
    done = schedule.with_outcome(ss.RunOutcome("acme", T0, succeeded=True, reconciled=True))
    again = ss.next_due(done, 24 * HOUR, T0 + timedelta(minutes=1))
    assert again is not None and not again.reconcile


def test_schedules_round_trip_through_the_warehouse(engine, make_tenant_id):
    ids = [make_tenant_id(), make_tenant_id()]
    first = ss.TenantSchedule(ids[0], last_success_at=T0, last_outcome_at=T0)
    second = ss.TenantSchedule(ids[1], consecutive_failures=3, last_outcome_at=T0,
                               last_requested_at=T0 - timedelta(minutes=2))
    assert ss.save(engine, [first, second]) == 2
    assert ss.load(engine, ids) == {ids[0]: first, ids[1]: second}
    assert ss.save(engine, [first.with_request(T0 + timedelta(hours=1))]) == 1
    assert ss.load(engine, ids[:1])[ids[0]].last_requested_at == T0 + timedelta(hours=1)


def test_sync_requests_round_trip_through_the_warehouse(engine, make_tenant_id):
    asked, other = make_tenant_id(), make_tenant_id()
    for tenant_id in (asked, other):
        tenants.add_tenant(engine, tenant_id, tenant_id, "salesforce")
        with engine.begin() as conn:
            conn.execute(sa.insert(onboarding_state).values(
                tenant_id=tenant_id, step="complete", data={"review": {"frequency": 60}},
                created_at=T0, updated_at=T0))
    ss.save(engine, [ss.TenantSchedule(asked, last_requested_at=T0 - timedelta(hours=1))])
    assert ss.request_sync(engine, asked, T0)
    assert not ss.request_sync(engine, asked, T0 + timedelta(seconds=1))
    loaded = ss.load(engine, [asked, other])
    assert set(loaded) == {asked} and loaded[asked].admin_request_at == T0
    assert loaded[asked].admin_request_pending
    # The scheduler saving its own memory never drops a request it has not read.
    ss.save(engine, [ss.TenantSchedule(asked, last_requested_at=T0 - timedelta(hours=1))])
    assert ss.load(engine, [asked])[asked].admin_request_at == T0
    assert ss.cancel_request(engine, asked) and not ss.cancel_request(engine, asked)
    assert ss.load(engine, [asked])[asked].admin_request_at is None
    with engine.connect() as conn:  # the concierge's own answers are untouched
        data = conn.execute(sa.select(onboarding_state.c.data).where(
            onboarding_state.c.tenant_id == asked)).scalar_one()
    assert data == {"review": {"frequency": 60}}
    assert ss.request_sync(engine, asked, T0) and ss.forget(engine, asked) == 1
    assert ss.load(engine, [asked]) == {}


# -- the sensor -----------------------------------------------------------------------------


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def resources(private_engine):
    warehouse = WarehouseResource(database_url=private_engine.url.render_as_string(False))
    return {"warehouse": warehouse, "crm": CrmResource(warehouse=warehouse)}


def _tick(instance, resources, cursor=None):
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as ctx:
        return sensors.tenant_sync_sensor(ctx)


def _requested(result) -> dict[str, dg.RunRequest]:
    return {r.partition_key: r for r in result.run_requests or []}


def _finished_run(instance, tenant_id, status, at):
    """A sync run of the tenant that ended at `at` (the run storage records the end time)."""
    from dagster._core.events import DagsterEvent, DagsterEventType

    event_type = {dg.DagsterRunStatus.SUCCESS: DagsterEventType.PIPELINE_SUCCESS,
                  dg.DagsterRunStatus.FAILURE: DagsterEventType.PIPELINE_FAILURE}[status]
    run = dg.DagsterRun(job_name=SYNC_JOB_NAME, run_id=str(uuid.uuid4()),
                        status=dg.DagsterRunStatus.STARTED,
                        tags={"dagster/partition": tenant_id})
    instance.add_run(run)
    instance.run_storage.handle_run_event(
        run.run_id, DagsterEvent(event_type.value, job_name=SYNC_JOB_NAME), update_timestamp=at)
    assert instance.get_run_by_id(run.run_id).status == status


def test_one_tick_adds_a_new_tenants_partition_and_requests_its_first_sync(
    instance, resources, private_engine
):
    tenants.add_tenant(private_engine, "new-co", "New Co", "salesforce")
    tenants.add_tenant(private_engine, "paused-co", "Paused Co", "salesforce", status="paused")
    result = _tick(instance, resources)
    added = [k for r in result.dynamic_partitions_requests
             if isinstance(r, dg.AddDynamicPartitionsRequest) for k in r.partition_keys]
    assert sorted(added) == ["new-co", "paused-co"]  # paused tenants keep their partition
    request = _requested(result)["new-co"]
    assert set(_requested(result)) == {"new-co"}  # paused: no sync
    assert request.tags[run_tags.PRIORITY] == str(ss.PRIORITY_FIRST_SYNC)
    assert request.tags[run_tags.TRIGGER] == "first-sync"
    assert request.tags[run_tags.CRM] == "salesforce"
    assert request.tags[run_tags.CELERY_QUEUE] == "crm-salesforce"

    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, added)
    again = _tick(instance, resources, result.cursor)
    assert not _requested(again)  # requested moments ago: not twice

    tenants.set_status(private_engine, "paused-co", "deleted")
    removed = _tick(instance, resources, again.cursor)
    deleted = [k for r in removed.dynamic_partitions_requests
               if isinstance(r, dg.DeleteDynamicPartitionsRequest) for k in r.partition_keys]
    assert deleted == ["paused-co"]


def test_requests_are_capped_per_tick_and_the_rest_follow(instance, resources, private_engine):
    extra = sensors.MAX_RUN_REQUESTS_PER_TICK // 2
    names = [f"crowd-{i:03d}" for i in range(sensors.MAX_RUN_REQUESTS_PER_TICK + extra)]
    for name in names:
        tenants.add_tenant(private_engine, name, name, "salesforce")
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, names)
    first = _tick(instance, resources)
    assert len(first.run_requests) == sensors.MAX_RUN_REQUESTS_PER_TICK
    second = _tick(instance, resources, first.cursor)
    assert len(second.run_requests) == extra
    assert set(_requested(first)) | set(_requested(second)) == set(names)


def test_due_time_follows_success_and_failure_not_the_request(
    instance, resources, private_engine, monkeypatch
):
    tenants.add_tenant(private_engine, "steady", "Steady", "salesforce",
                       sync_frequency_minutes=15)
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, ["steady"])
    clock = [datetime.now(UTC)]
    monkeypatch.setattr(sensors, "_now", lambda: clock[0])
    # This test is about the frequency and the failures: the tenant's nightly reconciliation
    # slot (01:55 UTC for "steady") stays a day behind, or a run near it would find it due.
    monkeypatch.setattr(ss, "reconcile_slot", lambda tenant_id, now: clock[0] - timedelta(days=1))

    first = _tick(instance, resources)
    assert "steady" in _requested(first)
    clock[0] += timedelta(minutes=1)
    _finished_run(instance, "steady", dg.DagsterRunStatus.SUCCESS, clock[0])
    cursor = _tick(instance, resources, first.cursor).cursor
    schedule = ss.load(private_engine)["steady"]
    assert schedule.last_success_at is not None and schedule.consecutive_failures == 0

    clock[0] += timedelta(minutes=10)  # inside the 15-minute interval: not due
    assert not _requested(_tick(instance, resources, cursor))
    clock[0] += timedelta(minutes=4)  # past the lead: due
    due = _tick(instance, resources, cursor)
    assert _requested(due)["steady"].tags[run_tags.TRIGGER] == "frequency"

    clock[0] += timedelta(minutes=1)
    _finished_run(instance, "steady", dg.DagsterRunStatus.FAILURE, clock[0])
    after_failure = _tick(instance, resources, due.cursor)
    assert not _requested(after_failure)
    failed = ss.load(private_engine)["steady"]
    assert failed.consecutive_failures == 1
    clock[0] += timedelta(seconds=80)  # the first backoff (about a minute), not 15 minutes
    retry = _tick(instance, resources, after_failure.cursor)
    assert _requested(retry)["steady"].tags[run_tags.TRIGGER] == "retry"


def test_sync_now_is_requested_at_the_next_tick_and_then_cleared(
    instance, resources, private_engine, monkeypatch
):
    tenants.add_tenant(private_engine, "eager", "Eager", "salesforce")  # every hour
    with private_engine.begin() as conn:  # the concierge state a settings page writes to
        conn.execute(sa.insert(onboarding_state).values(
            tenant_id="eager", step="complete", data={}, created_at=T0, updated_at=T0))
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, ["eager"])
    clock = [datetime.now(UTC)]
    monkeypatch.setattr(sensors, "_now", lambda: clock[0])
    # "eager"'s nightly reconciliation (04:01 UTC) stays a day behind, as in the test above.
    monkeypatch.setattr(ss, "reconcile_slot", lambda tenant_id, now: clock[0] - timedelta(days=1))
    first = _tick(instance, resources)
    clock[0] += timedelta(minutes=1)
    _finished_run(instance, "eager", dg.DagsterRunStatus.SUCCESS, clock[0])
    quiet = _tick(instance, resources, first.cursor)
    assert not _requested(quiet)  # synced a minute ago, every hour: not due

    assert ss.request_sync(private_engine, "eager", clock[0])
    assert not ss.request_sync(private_engine, "eager", clock[0])  # one pending at a time
    clock[0] += timedelta(seconds=15)
    asked = _tick(instance, resources, quiet.cursor)
    request = _requested(asked)["eager"]
    assert request.tags[run_tags.TRIGGER] == "requested"
    assert request.tags[run_tags.PRIORITY] == str(ss.PRIORITY_REQUESTED)
    assert not ss.load(private_engine)["eager"].admin_request_pending  # cleared

    clock[0] += timedelta(minutes=1)
    _finished_run(instance, "eager", dg.DagsterRunStatus.SUCCESS, clock[0])
    after = _tick(instance, resources, asked.cursor)
    assert not _requested(after)  # honoured once, not again
    assert ss.request_sync(private_engine, "eager", clock[0])  # the next one may come


def test_a_real_failed_run_counts_and_a_cli_subset_does_not(
    instance, resources, private_engine, sf_sandbox, monkeypatch
):
    monkeypatch.setenv("ACCRUE_DATABASE_URL", resources["warehouse"].database_url)
    tenants.add_tenant(private_engine, "broken", "Broken", "salesforce")
    tenants.save_credentials(
        private_engine, "broken", "salesforce",
        {"username": sf_sandbox.username, "password": "wrong",
         "security_token": sf_sandbox.security_token},
        {"sandbox_url": sf_sandbox.url},
    )
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, ["broken"])
    job = defs.resolve_job_def(SYNC_JOB_NAME)
    subset = job.execute_in_process(
        instance=instance, partition_key="broken", raise_on_error=False,
        asset_selection=[dg.AssetKey(["crm", "user"])])
    assert not subset.success
    _tick(instance, resources)
    assert ss.load(private_engine)["broken"].consecutive_failures == 0  # subset: not counted
    full = job.execute_in_process(instance=instance, partition_key="broken",
                                  raise_on_error=False)
    assert not full.success
    run = instance.get_run_by_id(full.run_id)
    assert run.status == dg.DagsterRunStatus.FAILURE
    _tick(instance, resources)
    assert ss.load(private_engine)["broken"].consecutive_failures == 1
