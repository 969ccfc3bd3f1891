"""The run ledger: sync state, summaries, sync runs and their health (both backends)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue import schema
from accrue.warehouse import ABANDONED_ERROR, Warehouse, WriteStats
from accrue.warehouse.runs import changes_of
from accrue_pipelines_tests.core.test_warehouse import T0, account_page, upsert
from connectors.base import Delete, LiveIds
from connectors.common_model import COMMON_OBJECTS

# --------------------------------------------------------------------------- state, summary, runs


def test_reset_state_of_one_object(warehouse: Warehouse, tenant_id: str) -> None:
    warehouse.apply(tenant_id, "account", [], {"c": 1})
    warehouse.apply(tenant_id, "contact", [], {"c": 2})
    assert warehouse.reset_state(tenant_id, "account") == 1
    assert warehouse.get_state(tenant_id, "account") is None
    assert warehouse.get_state(tenant_id, "contact") == {"c": 2}


def test_summary_and_stored_summary(warehouse: Warehouse, tenant_id: str) -> None:
    warehouse.apply(tenant_id, "account", account_page(T0, 3))
    warehouse.apply(tenant_id, "account", [Delete("001000000000000001", T0 + timedelta(hours=3))])
    summary = {r["object_name"]: r for r in warehouse.summary(tenant_id)}

    assert list(summary) == list(COMMON_OBJECTS)
    account = summary["account"]
    assert (account["live_rows"], account["deleted_rows"]) == (2, 1)
    assert account["last_modified_at"] == T0 + timedelta(hours=3)
    assert account["last_synced_at"].tzinfo is not None
    assert summary["user"] == {
        "object_name": "user",
        "live_rows": 0,
        "deleted_rows": 0,
        "last_modified_at": None,
        "last_synced_at": None,
    }

    assert warehouse.write_summary(tenant_id, summary.values()) == len(COMMON_OBJECTS)
    assert warehouse.write_summary(tenant_id, summary.values()) == len(COMMON_OBJECTS)
    stored = {r["object_name"]: r for r in warehouse.read_summary(tenant_id)}
    assert stored["account"]["live_rows"] == 2
    assert stored["account"]["last_modified_at"] == T0 + timedelta(hours=3)


def test_run_log_records_outcome_without_secrets(warehouse: Warehouse, tenant_id: str) -> None:
    """S1: a failure message stored in sync_run has credentials scrubbed."""
    first = warehouse.start_run(tenant_id, "account", run_id="dagster-run-1")
    warehouse.finish_run(first, "succeeded", WriteStats(4, 1, 2))
    second = warehouse.start_run(tenant_id, "contact")
    warehouse.finish_run(
        second,
        "failed",
        error="login failed: password=hunter2!x url=https://u:s3cr3t@login.salesforce.com/",
    )

    runs = warehouse.recent_runs(tenant_id, 10)
    assert [r["id"] for r in runs] == [second, first]
    done = runs[1]
    assert (done["status"], done["records_read"], done["records_upserted"]) == ("succeeded", 7, 4)
    assert done["records_deleted"] == 1 and done["run_id"] == "dagster-run-1"
    assert done["finished_at"] >= done["started_at"]
    assert "hunter2" not in runs[0]["error"] and "s3cr3t" not in runs[0]["error"]
    assert warehouse.recent_runs(tenant_id, 10, object_name="account")[0]["id"] == first

    # A sync's metadata dict is accepted as stats too.
    third = warehouse.start_run(tenant_id, "lead")
    metadata = {"records_read": 9, "upserted": 6, "deleted": 2, "skipped_stale": 1, "cursor": "c"}
    warehouse.finish_run(third, "succeeded", metadata)
    latest = warehouse.recent_runs(tenant_id, 1)[0]
    assert (latest["id"], latest["records_read"], latest["records_upserted"]) == (third, 9, 6)

    with pytest.raises(ValueError, match="final status"):
        warehouse.finish_run(first, "running")
    with pytest.raises(LookupError):
        warehouse.finish_run(10**12, "failed")


def test_a_page_moves_the_running_syncs_counts_in_its_own_transaction(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """The status page's progress: each committed page adds its writes to the running
    ledger row, in the page's transaction; a finished row is never touched again."""
    at = datetime(2026, 1, 5, tzinfo=UTC)
    run = warehouse.start_run(tenant_id, "account")
    warehouse.apply(tenant_id, "account", [upsert("001A", at), upsert("001B", at)],
                    {"cursor": "a"}, sync_run_id=run, records_read=2)
    warehouse.apply(tenant_id, "account", [upsert("001C", at)], {"cursor": "b"},
                    sync_run_id=run, records_read=3)
    [row] = warehouse.recent_runs(tenant_id, object_name="account")
    assert (row["status"], row["records_read"], row["records_upserted"]) == ("running", 3, 3)
    warehouse.finish_run(run, "succeeded", {"upserted": 3, "deleted": 0}, records_read=3)
    warehouse.apply(tenant_id, "account", [upsert("001D", at)], {"cursor": "c"},
                    sync_run_id=run, records_read=99)  # a late page: the run has ended
    [row] = warehouse.recent_runs(tenant_id, object_name="account")
    assert (row["records_read"], row["records_upserted"]) == (3, 3)


def test_a_sync_changed_data_only_when_it_logged_a_version_not_logged_before(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """What decides recomputing: a sync that re-read stored versions (every incremental
    sync's lookback does) rewrote rows but changed nothing; a newer version or a
    reconciled delete did. A run recorded before the count existed is judged by its
    writes."""
    at = datetime(2026, 1, 5, tzinfo=UTC)

    def sync(dagster_run: str, changes: list[Any]) -> int:
        run = warehouse.start_run(tenant_id, "account", run_id=dagster_run)
        stats = warehouse.apply(tenant_id, "account", changes, {"cursor": dagster_run},
                                sync_run_id=run, records_read=len(changes))
        warehouse.finish_run(run, "succeeded", stats)
        return run

    sync("first", [upsert("001A", at), upsert("001B", at)])
    reread = sync("reread", [upsert("001A", at), upsert("001B", at)])
    sync("newer", [upsert("001A", at + timedelta(hours=1))])
    sync("reconcile", [LiveIds(frozenset({"001A"}), at + timedelta(days=1))])
    legacy = sync("legacy", [upsert("001A", at + timedelta(hours=1))])  # a re-read too
    with warehouse.engine.begin() as conn:
        conn.execute(sa.update(schema.sync_run).where(schema.sync_run.c.id == legacy)
                     .values(versions_logged=None))
    assert run_status(warehouse.engine, reread)["records_upserted"] == 2  # rewritten, still
    runs = ("first", "reread", "newer", "reconcile", "legacy")
    assert warehouse.objects_changed_by([(tenant_id, r) for r in runs]) == {
        "first": {"account"}, "newer": {"account"}, "reconcile": {"account"},
        "legacy": {"account"}}
    assert run_status(warehouse.engine, reread)["versions_logged"] == 0
    # The count a run row read gives (the health report's) agrees with the SQL rule.
    counted = {r["run_id"]: changes_of(r) for r in warehouse.recent_runs(tenant_id)}
    assert {run for run, n in counted.items() if n > 0} == {
        "first", "newer", "reconcile", "legacy"}
    assert (counted["first"], counted["reread"], counted["legacy"]) == (2, 0, 1)


# --------------------------------------------------------------------------- sync runs


def run_status(engine: Engine, run_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        found = conn.execute(sa.select(schema.sync_run).where(schema.sync_run.c.id == run_id))
        return dict(found.mappings().one())


def test_start_run_abandons_a_run_left_running(
    warehouse: Warehouse, make_tenant_id: Callable[[], str]
) -> None:
    """F4: a SIGKILLed sync leaves a `running` row; the next start of that object closes it."""
    tenant, other = make_tenant_id(), make_tenant_id()
    killed = warehouse.start_run(tenant, "account")
    busy_elsewhere = warehouse.start_run(tenant, "contact")
    other_tenant = warehouse.start_run(other, "account")

    fresh = warehouse.start_run(tenant, "account")
    dead = run_status(warehouse.engine, killed)
    assert (dead["status"], dead["error"], dead["error_kind"]) == (
        "failed",
        ABANDONED_ERROR,
        "error",
    )
    assert run_status(warehouse.engine, fresh)["status"] == "running"
    assert run_status(warehouse.engine, busy_elsewhere)["status"] == "running"
    assert run_status(warehouse.engine, other_tenant)["status"] == "running"


def test_sync_health_counts_failures_since_the_last_success(
    warehouse: Warehouse, make_tenant_id: Callable[[], str]
) -> None:
    """Health: a streak of failures since the last success, the last outcome and its kind."""
    tenant, other = make_tenant_id(), make_tenant_id()

    def run(object_name: str, status: str, **kw: Any) -> int:
        run_id = warehouse.start_run(tenant, object_name)
        warehouse.finish_run(run_id, status, **kw)
        return run_id

    run("account", "failed", error="boom", error_kind="error")
    ok = run("account", "succeeded", stats=WriteStats(1, 0, 0, 2))
    run("account", "failed", error="password=hunter2 rejected", error_kind="credentials")
    run("account", "stopped", error="API quota reached", error_kind="quota")
    run("account", "failed", error="503", error_kind="outage")
    run("contact", "failed", error="x", error_kind="error")
    run("contact", "failed", error="y", error_kind="error")
    warehouse.start_run(tenant, "lead")

    health = warehouse.sync_health(tenant)
    assert set(health) == {"account", "contact", "lead"}
    account = health["account"]
    assert account["consecutive_failures"] == 2  # `stopped` neither counts nor resets
    assert (account["last_status"], account["error_kind"], account["last_error"]) == (
        "failed",
        "outage",
        "503",
    )
    assert account["last_success_at"] == run_status(warehouse.engine, ok)["finished_at"]
    assert run_status(warehouse.engine, ok)["records_quarantined"] == 2
    assert health["contact"]["consecutive_failures"] == 2
    assert health["contact"]["last_success_at"] is None
    assert health["lead"]["last_status"] == "running"
    assert warehouse.sync_health(other) == {}
    stored_errors = [r["error"] or "" for r in warehouse.recent_runs(tenant, 10)]
    assert not any("hunter2" in e for e in stored_errors)


def test_finish_run_records_stopped_runs_and_error_kinds(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """F4: a clean stop at the quota is recorded as `stopped` (partial, not complete) with
    who has to act; an unknown kind never hides the failure being recorded."""
    odd = warehouse.start_run(tenant_id, "contact")
    warehouse.finish_run(odd, "failed", error="boom", error_kind="cosmic-rays")
    assert run_status(warehouse.engine, odd)["error_kind"] == "error"
    run_id = warehouse.start_run(tenant_id, "account")
    with pytest.raises(ValueError, match="final status"):
        warehouse.finish_run(run_id, "paused")
    metadata = {"records_read": 5, "upserted": 3, "quarantined": 2, "cursor": "c"}
    warehouse.finish_run(run_id, "stopped", metadata, error="quota", error_kind="quota")
    stored = run_status(warehouse.engine, run_id)
    assert (stored["status"], stored["error_kind"], stored["records_quarantined"]) == (
        "stopped",
        "quota",
        2,
    )
