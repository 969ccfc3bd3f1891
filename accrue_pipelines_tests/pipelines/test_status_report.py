"""What the status page may say (issue 11.3), checked against the warehouse on both backends:
a running sync's count in the ledger, the time left, when a failed sync is retried, and
the recommendations' phase from the ledger and `price_recommendation` alone."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue import recommendation_status, sync_progress, sync_schedule, tenants
from accrue.recommendation_status import recommendations
from accrue.schema import price_recommendation, sync_run, utcnow
from accrue.sync import sync_object
from accrue.warehouse import Warehouse, WriteStats
from connectors.base import Checkpoint, Upsert
from connectors.registry import create_connector
from connectors.salesforce.sandbox import RunningSandbox

NOW = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)


# -- the running count in the ledger ------------------------------------------------------


class LedgerWatcher:
    """Wraps a connector; at each checkpoint reads what the ledger says about the run."""

    reads_warehouse = True  # so the engine reads no page ahead of its commits

    def __init__(self, connector: Any, warehouse: Warehouse, tenant_id: str) -> None:
        self.connector, self.warehouse, self.tenant_id = connector, warehouse, tenant_id
        self.seen: list[tuple[str, int]] = []

    def map_record(self, object_name: str, record: Any) -> Any:
        return self.connector.map_record(object_name, record)

    def read(self, object_name: str, state: Any, *, reconcile: bool = False) -> Any:
        for change in self.connector.read(object_name, state, reconcile=reconcile):
            yield change
            if isinstance(change, Checkpoint):  # the engine has committed the page by now
                run = self.warehouse.sync_health(self.tenant_id)[object_name]
                self.seen.append((run["last_status"], run["records_read"]))


def test_a_running_sync_writes_its_count_to_the_ledger_page_by_page(
    warehouse: Warehouse, tenant_id: str, sf_sandbox: RunningSandbox
) -> None:
    secrets = {"username": sf_sandbox.username, "password": sf_sandbox.password,
               "security_token": sf_sandbox.security_token}
    # One window over the whole history: a checkpoint per 50-record page.
    with create_connector("salesforce", secrets,
                          {"sandbox_url": sf_sandbox.url, "window_days": 36500}) as connector:
        watcher = LedgerWatcher(connector, warehouse, tenant_id)
        result = sync_object(warehouse, watcher, tenant_id, "opportunity")
    counts = [read for status, read in watcher.seen]
    assert {status for status, _ in watcher.seen} == {"running"}
    assert len(counts) >= 3 and counts == sorted(counts) and counts[0] > 0
    assert counts[-1] == result.records_read  # the last page's count is the whole read
    assert 0 < counts[0] < result.records_read
    final = warehouse.sync_health(tenant_id)["opportunity"]
    assert (final["last_status"], final["records_read"]) == ("succeeded", result.records_read)


def test_progress_never_rewrites_a_finished_run(warehouse: Warehouse, tenant_id: str) -> None:
    run_id = warehouse.start_run(tenant_id, "account")
    warehouse.record_progress(run_id, 40, WriteStats(upserted=40))
    assert warehouse.recent_runs(tenant_id)[0]["records_read"] == 40
    warehouse.finish_run(run_id, "succeeded", {"upserted": 50, "records_read": 50})
    warehouse.record_progress(run_id, 7, WriteStats(upserted=7))  # a late call
    row = warehouse.recent_runs(tenant_id)[0]
    assert (row["status"], row["records_read"], row["records_upserted"]) == ("succeeded", 50, 50)


# -- words and arithmetic -----------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "words"), [
    (20, "less than a minute"), (60, "about 1 minute"), (150, "about 2 minutes"),
    (3000, "about 50 minutes"), (3 * 3600 + 100, "about 3 hours"),
])
def test_durations_in_words(seconds: int, words: str) -> None:
    assert sync_progress.duration(timedelta(seconds=seconds)) == words


def test_time_left_is_what_is_missing_at_this_syncs_pace() -> None:
    # 1,000 of 5,000 stored, 500 of them read by this sync in 100 s: 5 a second.
    assert sync_progress.time_left(1000, 5000, 500, timedelta(seconds=100)) == timedelta(
        seconds=800)
    assert sync_progress.time_left(10, 5000, 10, timedelta(seconds=2)) is None  # too early
    assert sync_progress.time_left(0, 5000, 0, timedelta(minutes=5)) is None  # nothing read
    assert sync_progress.time_left(10, 0, 10, timedelta(minutes=5)) is None  # no total
    assert sync_progress.time_left(5100, 5000, 5100, timedelta(minutes=5)) is None


def _never(*_: Any) -> sync_progress.NextAttempt:
    raise AssertionError("no retry is asked for an object that did not fail")


def test_first_load_shows_percent_and_eta_and_a_later_sync_only_a_count() -> None:
    started = NOW - timedelta(seconds=100)
    run = {"last_status": "running", "records_read": 500, "last_started_at": started,
           "last_success_at": None}
    row = sync_progress.object_row("opportunity", "Deals", run, 1000, 5000, _never, NOW)
    assert (row["state"], row["state_label"], row["percent"]) == ("syncing", "Syncing now", 20)
    assert row["eta_seconds"] == 800 and row["read"] == 500
    assert row["detail"] == "First sync: 500 records read in this sync, about 13 minutes left."
    later = {**run, "last_success_at": NOW - timedelta(hours=1), "records_read": 35}
    row = sync_progress.object_row("opportunity", "Deals", later, 5000, 5000, _never, NOW)
    assert row["percent"] is None and row["eta_seconds"] is None
    assert row["detail"] == "Reading the changes since the last sync: 35 so far."
    quiet = {**run, "records_read": 0, "last_started_at": NOW - timedelta(minutes=20)}
    row = sync_progress.object_row("opportunity", "Deals", quiet, 0, 5000, _never, NOW)
    assert row["detail"] == "Started at 09:40 UTC; no records read yet."


def test_a_failure_after_an_earlier_success_is_not_shown_as_done() -> None:
    run = {"last_status": "failed", "error_kind": "credentials",
           "last_success_at": NOW - timedelta(days=1), "last_finished_at": NOW}
    attempt = sync_progress.NextAttempt("Next attempt at about 10:04 UTC (in about 4 "
                                        "minutes).", NOW + timedelta(minutes=4))
    row = sync_progress.object_row("account", "Accounts", run, 10, 10, lambda: attempt, NOW)
    assert (row["state"], row["state_label"]) == ("failed", "Failed, retrying")
    assert row["detail"] == ("The last sync failed: the CRM refused the saved credentials. "
                             "Next attempt at about 10:04 UTC (in about 4 minutes).")
    assert row["hint"] is not None and "credentials are replaced" in row["hint"]
    assert row["next_attempt_at"] == (NOW + timedelta(minutes=4)).isoformat()
    paused = sync_progress.NextAttempt("Syncing is paused.", retries=False)
    row = sync_progress.object_row("account", "Accounts", run, 10, 10, lambda: paused, NOW)
    assert row["state_label"] == "Failed"


# -- when the scheduler retries -----------------------------------------------------------


def _tenant(engine: Engine, tenant_id: str, status: str = "active") -> tenants.Tenant:
    tenants.add_tenant(engine, tenant_id, "Status Co", "salesforce", status=status)
    return tenants.require_tenant(engine, tenant_id)


def test_next_attempt_follows_the_schedulers_rules(engine: Engine, tenant_id: str) -> None:
    tenant = _tenant(engine, tenant_id)
    failed_at = NOW - timedelta(seconds=30)
    unknown = sync_progress.next_attempt(engine, tenant, failed_at, False, NOW)
    assert unknown.at is None and unknown.words == "Accrue tries again by itself."
    # The scheduler requested the run that failed, and has not recorded its end yet.
    schedule = sync_schedule.TenantSchedule(
        tenant_id, last_requested_at=NOW - timedelta(minutes=2),
        last_success_at=NOW - timedelta(hours=1), last_outcome_at=NOW - timedelta(hours=1),
        last_reconciled_at=NOW)
    sync_schedule.save(engine, [schedule])
    expected = sync_schedule.next_due(schedule.with_outcome(
        sync_schedule.RunOutcome(tenant_id, failed_at, succeeded=False)), 60, NOW)
    assert expected is not None and expected.at > NOW
    attempt = sync_progress.next_attempt(engine, tenant, failed_at, False, NOW)
    assert attempt.at == expected.at and attempt.retries
    assert attempt.words.startswith(f"Next attempt at about {sync_progress.clock(expected.at)}")
    later = NOW + timedelta(hours=1)  # past due: said as due, not as a time in the past
    assert sync_progress.next_attempt(engine, tenant, failed_at, False, later).words == (
        "A new attempt is due now.")
    # A newer request than the failure: already on its way.
    sync_schedule.save(engine, [schedule.with_request(NOW - timedelta(seconds=10))])
    assert "has been requested" in sync_progress.next_attempt(
        engine, tenant, failed_at, False, NOW).words
    assert sync_progress.next_attempt(engine, tenant, failed_at, True, NOW).words == (
        "Accrue tries again after the sync in progress ends.")


def test_a_paused_tenant_is_not_promised_a_retry(engine: Engine, tenant_id: str) -> None:
    tenant = _tenant(engine, tenant_id, status="paused")
    attempt = sync_progress.next_attempt(engine, tenant, NOW, False, NOW)
    assert attempt.retries is False and attempt.at is None and "paused" in attempt.words


# -- the recommendations' phase -----------------------------------------------------------


def _sync(wh: Warehouse, tenant_id: str, object_name: str, upserted: int,
          status: str = "succeeded", changes: list[Upsert] | None = None) -> None:
    """A sync of `object_name` that brought `changes`, or `upserted` new blank records."""
    run_id = wh.start_run(tenant_id, object_name)
    if changes is None:
        changes = [Upsert(f"{object_name[:3]}-{uuid.uuid4().hex[:8]}", NOW, {}, {})
                   for _ in range(upserted)]
    stats = wh.apply(tenant_id, object_name, changes, None, sync_run_id=run_id)
    wh.finish_run(run_id, status, stats)


def _deal(source_id: str, *, closed: bool) -> Upsert:
    fields = {"name": source_id, "is_closed": closed, "is_won": False, "amount": 100.0}
    return Upsert(source_id, NOW, fields, {"Id": source_id})


def _rec(engine: Engine, tenant_id: str, deal: str, method: str, at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(sa.delete(price_recommendation).where(
            price_recommendation.c.tenant_id == tenant_id))
        conn.execute(sa.insert(price_recommendation).values(
            tenant_id=tenant_id, opportunity_id=deal, computed_at=at, method=method,
            model_version="test"))


def test_recommendations_say_only_what_the_warehouse_knows(engine: Engine, tenant_id: str
                                                           ) -> None:
    wh = Warehouse(engine)
    _tenant(engine, tenant_id)

    def phase(when: datetime | None = None) -> dict[str, Any]:
        return recommendations(engine, tenant_id, when or utcnow())

    assert (phase()["state"], phase()["phase"]) == ("pending", "waiting_for_data")
    running = wh.start_run(tenant_id, "opportunity")
    assert phase()["phase"] == "waiting_for_sync"
    wh.apply(tenant_id, "opportunity", [_deal("006A", closed=False), _deal("006B", closed=True)],
             sync_run_id=running)
    wh.finish_run(running, "succeeded", {"upserted": 2})
    owed = phase()
    assert (owed["state"], owed["phase"]) == ("pending", "waiting")
    assert owed["message"].startswith("Waiting to be computed, or being computed now: your "
                                      "deals changed at ")
    assert "Being computed." not in owed["message"]
    assert "longer than usual" in phase(utcnow() + timedelta(hours=1))["message"]

    _rec(engine, tenant_id, "006A", "model", utcnow())
    ready = phase()
    assert (ready["state"], ready["phase"], ready["count"]) == ("ready", "ready", 1)
    assert ready["message"].startswith("1 open deal has a recommended price, computed at ")
    _sync(wh, tenant_id, "user", 3)  # sellers changed: not what prices are computed from
    assert phase()["phase"] == "ready"
    _sync(wh, tenant_id, "account", 1)
    refreshing = phase()
    assert (refreshing["state"], refreshing["phase"]) == ("ready", "refreshing")
    assert "waiting to be computed, or being computed now" in refreshing["message"]

    _rec(engine, tenant_id, "006A", "excluded", utcnow())
    none = phase()
    assert (none["state"], none["phase"], none["count"]) == ("pending", "none_priced", 0)
    assert "none of your 1 open deal could be priced" in none["message"]


def test_no_open_deals_is_said_as_such(engine: Engine, tenant_id: str) -> None:
    wh = Warehouse(engine)
    _tenant(engine, tenant_id)
    _sync(wh, tenant_id, "opportunity", 1, changes=[_deal("006C", closed=True)])
    said = recommendations(engine, tenant_id, utcnow())
    assert (said["state"], said["phase"]) == ("pending", "no_open_deals")


def test_a_failed_deal_sync_is_not_the_first_data_of_the_deals(engine: Engine, tenant_id: str
                                                               ) -> None:
    wh = Warehouse(engine)
    _tenant(engine, tenant_id)
    _sync(wh, tenant_id, "opportunity", 0, status="failed")
    assert recommendations(engine, tenant_id, utcnow())["phase"] == "waiting_for_data"


def test_priced_from_is_what_the_price_asset_reads() -> None:
    from accrue_pipelines.analytics.assets import DEAL_OBJECTS

    assert set(recommendation_status.PRICED_FROM) == set(DEAL_OBJECTS)


def test_the_concierge_imports_no_dagster() -> None:
    """The app derives 'being computed' from the warehouse: Dagster stays out of it."""
    code = ("import sys, onboarding_app.app, onboarding_app.status; "
            "sys.exit(1 if any(m == 'dagster' or m.startswith('dagster.') "
            "for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_ledger_rows_of_other_tenants_are_not_read(engine: Engine, make_tenant_id: Any
                                                   ) -> None:
    mine, theirs = make_tenant_id(), make_tenant_id()
    wh = Warehouse(engine)
    for tenant_id in (mine, theirs):
        _tenant(engine, tenant_id)
    wh.start_run(theirs, "opportunity")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(sync_run).where(
            sync_run.c.tenant_id == theirs)).scalar_one() == 1
    assert recommendations(engine, mine, utcnow())["phase"] == "waiting_for_data"
    assert recommendations(engine, theirs, utcnow())["phase"] == "waiting_for_sync"
