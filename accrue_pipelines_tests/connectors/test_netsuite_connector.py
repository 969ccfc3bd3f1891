"""NetSuiteConnector against the NetSuite sandbox: full and incremental reads, the account's
time zone, deletes and reconciliation, the 100,000-row query cap, strict values, errors
that say who must act, and a sync through the engine into the warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from accrue.sync import sync_object
from accrue.warehouse import Warehouse
from accrue_pipelines_tests.fixtures_sandbox import SandboxClock
from connectors.base import (
    AuthenticationError,
    Checkpoint,
    ConnectorError,
    Delete,
    LiveIds,
    Quarantine,
    QuotaExceeded,
    SourceUnavailable,
    Upsert,
)
from connectors.netsuite.client import NetSuiteError
from connectors.netsuite.connector import NetSuiteConnector, _classify
from connectors.netsuite.sandbox.harness import NetSuiteHarness, RunningNetSuite
from connectors.netsuite.sandbox.schema import TABLES

FAST = {"max_backoff_seconds": 0.01}


@pytest.fixture
def clock() -> SandboxClock:
    return SandboxClock()


@pytest.fixture
def account(tmp_path: Path, clock: SandboxClock) -> Iterator[RunningNetSuite]:
    running = NetSuiteHarness().start(tmp_path / "ns.db", opportunities=15, page_size=6,
                                      clock=clock)
    yield running
    running.stop()


def connect(account: RunningNetSuite, tba: bool = False, **config: Any) -> NetSuiteConnector:
    secrets, base = account.tba_connection() if tba else account.connection()
    return NetSuiteConnector(secrets, {**base, **FAST, **config})


def read(connector: NetSuiteConnector, name: str, state: dict[str, Any] | None = None,
         **kw: Any) -> tuple[list[Any], dict[str, Any]]:
    changes = list(connector.read(name, state, **kw))
    checkpoints = [c for c in changes if isinstance(c, Checkpoint)]
    assert changes and changes[-1] is checkpoints[-1]
    return changes, dict(checkpoints[-1].state)


def upserts(changes: list[Any]) -> dict[str, Upsert]:
    return {c.source_id: c for c in changes if isinstance(c, Upsert)}


def set_stamp(account: RunningNetSuite, table: str, key: int, moment: datetime) -> None:
    account.store.update(table, key, {"lastmodifieddate": moment.timestamp()}, touch=False)


def test_full_read_of_every_object_over_both_sign_ins(account: RunningNetSuite) -> None:
    for tba in (False, True):
        with connect(account, tba=tba) as connector:
            assert connector.check().ok
            for info in connector.objects():
                changes, state = read(connector, info.name)
                ids = [c.source_id for c in changes if isinstance(c, Upsert)]
                assert len(ids) == len(set(ids)) == account.live_count(info.name), info.name
                assert connector.count(info.name) == len(ids)
                assert not [c for c in changes if isinstance(c, Quarantine)], info.name
                assert sum(isinstance(c, Checkpoint) for c in changes) > 1, info.name
                assert datetime.fromisoformat(state["cursor"]).tzinfo is not None


def test_mapping_speaks_the_common_model(account: RunningNetSuite) -> None:
    with connect(account) as connector:
        deals = upserts(read(connector, "opportunity")[0])
        lines = upserts(read(connector, "opportunity_line")[0])
        prices = upserts(read(connector, "price_book_entry")[0])
        users = upserts(read(connector, "user")[0])
    deal = next(iter(deals.values()))
    assert isinstance(deal.fields["close_date"], date)
    assert deal.fields["is_closed"] in (True, False) and deal.fields["stage"]
    assert deal.raw["status"] in "ABCD"
    line = next(iter(lines.values()))
    assert line.fields["opportunity_id"] in deals
    assert line.fields["price_book_entry_id"] in prices
    assert all(u.fields["is_active"] is True for u in users.values())
    managers = {u.fields["manager_id"] for u in users.values()} - {None}
    assert managers and managers <= set(users)


def test_incremental_read_brings_record_service_writes(account: RunningNetSuite,
                                                        clock: SandboxClock) -> None:
    with connect(account) as connector:
        _, state = read(connector, "opportunity")
        clock.advance(hours=1)
        writer = account.writer()
        deal = writer.create("opportunity", {"name": "New deal", "account_id": "1",
                                             "amount": 1000.5, "stage": "Closed Won",
                                             "close_date": date(2030, 1, 2)})
        writer.update("opportunity", "3", {"amount": 42.0})
        line = writer.create("opportunity_line", {"opportunity_id": deal, "product_id": "2",
                                                  "quantity": 3.0, "unit_price": 10.0,
                                                  "total_price": 30.0})
        changes, _ = read(connector, "opportunity", state)
        lines = upserts(read(connector, "opportunity_line", state)[0])
    got = upserts(changes)
    assert set(got) == {deal, "3"}  # the lookback re-reads nothing older than an hour
    assert got[deal].fields["is_won"] is True and got[deal].fields["amount"] == "1000.5"
    assert got["3"].fields["amount"] == "42.0"
    assert lines[line].fields["opportunity_id"] == deal


def test_time_zone_is_the_accounts_never_utc_never_a_day(account: RunningNetSuite,
                                                        clock: SandboxClock) -> None:
    """A change an hour after the cursor, on the same local day, is read, stamped with its
    true instant; a connector told the wrong zone fails its check on the time zone."""
    with connect(account, timezone="UTC", clock_tolerance_seconds=300) as wrong:
        result = wrong.check()
    assert not result.ok and result.field == "timezone" and "8.0 h" in result.message
    with connect(account) as connector:
        _, state = read(connector, "account")
        cursor = datetime.fromisoformat(state["cursor"])
        moment = (cursor + timedelta(hours=1)).replace(microsecond=0)
        clock.advance(hours=2)
        set_stamp(account, "customer", 2, moment)
        got = upserts(read(connector, "account", state)[0])
    assert got["2"].modified_at == moment


def test_deletes_arrive_from_deletedrecord(account: RunningNetSuite, clock: SandboxClock
                                           ) -> None:
    with connect(account) as connector:
        _, state = read(connector, "contact")
        clock.advance(minutes=30)
        account.writer().delete("contact", "4")
        changes, state = read(connector, "contact", state)
    assert [c.source_id for c in changes if isinstance(c, Delete)] == ["4"]
    assert not [c for c in changes if isinstance(c, LiveIds)]
    assert state["deletes_since"] == state["cursor"]


def test_reconciliation_when_the_log_no_longer_covers_the_gap(
    account: RunningNetSuite, clock: SandboxClock
) -> None:
    with connect(account) as connector:
        _, state = read(connector, "contact")
        clock.advance(days=45)
        account.writer().delete("contact", "5")
        account.store.purge_deleted_before(clock())
        changes, _ = read(connector, "contact", state)
        live = [c for c in changes if isinstance(c, LiveIds)]
        assert len(live) == 1 and "5" not in live[0].source_ids and "6" in live[0].source_ids
        assert isinstance(changes[-1], Checkpoint) and changes[-2] is live[0]
        _, fresh = read(connector, "contact")
        asked = [c for c in read(connector, "contact", fresh, reconcile=True)[0]
                 if isinstance(c, LiveIds)]
        assert len(asked) == 1
        lines = [c for c in read(connector, "opportunity_line", fresh)[0]
                 if isinstance(c, LiveIds)]
    assert len(lines) == 1  # NetSuite logs no line deletes: their ids every sync


def test_more_rows_than_one_query_may_page_through(account: RunningNetSuite) -> None:
    """With the cap at 6 rows and a bulk edit stamping every contact in one second, keyset
    paging still reads each row once and never asks past the cap."""
    account.settings.max_results = 6
    same = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)
    for key in range(1, account.live_count("contact") + 1):
        set_stamp(account, "contact", key, same)
    with connect(account, page_size=3, max_query_rows=6) as connector:
        changes, _ = read(connector, "contact")
    ids = [c.source_id for c in changes if isinstance(c, Upsert)]
    assert len(ids) == len(set(ids)) == account.live_count("contact") > 6


def test_the_repeated_hour_when_clocks_go_back(account: RunningNetSuite) -> None:
    """01:00-02:00 on 2025-11-02 happens twice in Los Angeles: rows stamped in both still
    arrive, each at least once, and the read ends."""
    start = datetime(2025, 11, 2, 8, 0, tzinfo=UTC)  # 01:00 PDT; 09:00 UTC is 01:00 PST
    count = account.live_count("contact")
    for key in range(1, count + 1):
        set_stamp(account, "contact", key, start + timedelta(minutes=7 * key))
    with connect(account, page_size=3) as connector:
        changes, _ = read(connector, "contact")
    assert {c.source_id for c in changes if isinstance(c, Upsert)} == {
        str(k) for k in range(1, count + 1)}


def test_bad_values_are_quarantined_never_coerced(account: RunningNetSuite) -> None:
    writer = account.writer()
    writer.write_raw("opportunity", "2", {"amount": "lots"})
    account.store.update("transaction", 4, {"status": "Z"})
    account.store.update("employee", 2, {"isinactive": "yes"})
    with connect(account) as connector:
        deals = read(connector, "opportunity")[0]
        people = read(connector, "user")[0]
    held = {c.source_id: c.reason for c in deals if isinstance(c, Quarantine)}
    assert set(held) == {"2", "4"}
    assert "opportunity.amount" in held["2"] and "'lots'" in held["2"]
    assert "status='Z'" in held["4"]
    refused = [c for c in people if isinstance(c, Quarantine)]
    assert [c.source_id for c in refused] == ["2"] and "isinactive='yes'" in refused[0].reason


def test_errors_say_who_must_act(account: RunningNetSuite) -> None:
    secrets, config = account.bad_connection()
    with NetSuiteConnector(secrets, config) as bad:
        result = bad.check()
    assert not result.ok and result.field == "private_key" and "invalid_grant" in result.message
    account.set_faults({"fail_next": 2, "throttle_next": 2})
    with connect(account) as connector:
        assert len(upserts(read(connector, "user")[0])) == account.live_count("user")
    account.set_faults({"rate_limit_after": 1, "rate_limit_calls": 2, "seed": 3,
                        "rate_limit_retry_after": 0, "drop_connection_rate": 0.2})
    with connect(account) as connector:
        assert len(upserts(read(connector, "contact")[0])) == account.live_count("contact")
    account.set_faults({"error_rate": 1.0})
    with connect(account, max_attempts=2) as connector, pytest.raises(SourceUnavailable):
        read(connector, "user")
    account.set_faults({"quota_exceeded_after": 0})
    with connect(account) as connector, pytest.raises(QuotaExceeded):
        read(connector, "user")
    assert isinstance(_classify(NetSuiteError(401, "INVALID_LOGIN", "x")), AuthenticationError)
    assert isinstance(_classify(NetSuiteError(429, "CONCURRENCY_LIMIT_EXCEEDED", "x")),
                      SourceUnavailable)


def test_a_sync_through_the_engine_lands_the_account(
    account: RunningNetSuite, clock: SandboxClock, warehouse: Warehouse, tenant_id: str
) -> None:
    names = [info.name for info in connect(account).objects()]
    with connect(account) as connector:
        for name in names:
            assert sync_object(warehouse, connector, tenant_id, name).complete, name
    for name in names:
        assert warehouse.count(tenant_id, name) == account.live_count(name), name
        assert warehouse.duplicate_keys(tenant_id, name) == 0, name
    assert warehouse.quarantine_count(tenant_id) == 0
    clock.advance(minutes=20)
    writer = account.writer()
    writer.delete("opportunity", "5")  # its lines go with it, unlogged
    writer.update("opportunity", "6", {"amount": 9.5})
    with connect(account) as connector:
        for name in ("opportunity", "opportunity_line"):
            sync_object(warehouse, connector, tenant_id, name)
    assert "5" not in warehouse.live_ids(tenant_id, "opportunity")
    assert warehouse.count(tenant_id, "opportunity_line") == account.live_count(
        "opportunity_line")
    assert warehouse.as_of(tenant_id, "opportunity", datetime(2999, 1, 1, tzinfo=UTC))[
        "6"]["fields"]["amount"] == 9.5


def test_a_clock_read_in_the_wrong_zone_never_moves_the_cursor(account: RunningNetSuite
                                                                ) -> None:
    """The header line of every transaction is there (NetSuite's mainline) and never read
    as a deal line; a read whose time zone is wrong stops before yielding anything."""
    client = account.client()
    heads = client.suiteql("SELECT COUNT(*) AS n FROM transactionline WHERE mainline = 'T'")
    assert heads["items"][0]["n"] == str(account.live_count("opportunity"))
    with connect(account, timezone="Asia/Tokyo", clock_tolerance_seconds=300) as wrong, \
            pytest.raises(ConnectorError, match="Asia/Tokyo"):
        next(iter(wrong.read("opportunity", None)))


def test_a_late_commit_behind_the_cursor_is_read_by_the_lookback(
    account: RunningNetSuite, clock: SandboxClock
) -> None:
    """A write NetSuite commits late carries a stamp older than the last sync's end."""
    with connect(account) as connector:
        _, state = read(connector, "contact")
        clock.advance(minutes=1)
        account.set_faults({"late_commit_rate": 1.0, "late_commit_minutes": 5})
        account.writer().update("contact", "3", {"title": "Late"})
        account.set_faults({})
        got = upserts(read(connector, "contact", state)[0])
    assert got["3"].fields["title"] == "Late"
    assert got["3"].modified_at < datetime.fromisoformat(state["cursor"])


def test_activities_from_calls_tasks_and_meetings(account: RunningNetSuite,
                                                  clock: SandboxClock) -> None:
    """Three record types, one common object: ids name their type, each part keeps its
    cursor, deletes come from DeletedRecord, and one LiveIds covers all parts."""
    with connect(account) as connector:
        changes, state = read(connector, "activity")
        first = upserts(changes)
        assert len(first) == account.live_count("activity") > 0
        assert {i.split(":")[0] for i in first} == {"phonecall", "task", "calendarevent"}
        assert {u.fields["activity_type"] for u in first.values()} == {"call", "task",
                                                                        "meeting"}
        meeting = next(u for u in first.values() if u.fields["activity_type"] == "meeting")
        assert meeting.fields["is_closed"] is None and meeting.fields["duration_minutes"] > 0
        assert set(state["parts"]) == {"phonecall", "task", "calendarevent"}
        clock.advance(minutes=30)
        writer = account.writer()
        call = writer.create("activity", {
            "activity_type": "call", "subject": "Pricing call", "is_closed": True,
            "activity_at": datetime(2026, 1, 5, 17, 30, tzinfo=UTC), "account_id": "1",
            "opportunity_id": "2", "duration_minutes": 12.5})
        victim = next(i for i in first if i.startswith("task:"))
        writer.delete("activity", victim)
        changes, state = read(connector, "activity", state)
        got = upserts(changes)
        assert set(got) == {call} and got[call].fields["is_closed"] is True
        assert got[call].fields["activity_at"] == datetime(2026, 1, 5, 17, 30, tzinfo=UTC)
        assert [c.source_id for c in changes if isinstance(c, Delete)] == [victim]
        account.store.update("task", int(next(i for i in first if i.startswith("task:")
                                              and i != victim).split(":")[1]),
                             {"status": "MAYBE"})
        changes, _ = read(connector, "activity", state, reconcile=True)
    live = [c for c in changes if isinstance(c, LiveIds)]
    assert len(live) == 1 and call in live[0].source_ids and victim not in live[0].source_ids
    assert [q.reason for q in changes if isinstance(q, Quarantine)] == [
        "activity: status='MAYBE' is none of ['COMPLETE', 'DEFERRED', 'NOTSTART', 'PROGRESS', "
        "'SCHEDULED']"]


def test_a_custom_field_the_account_lacks_is_read_as_empty(
    account: RunningNetSuite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Custom field ids differ between accounts: without `custentity_industry` the sync goes
    on, the column is empty and the state's fields say what was read."""
    monkeypatch.delitem(TABLES["customer"].columns, "custentity_industry")
    with connect(account) as connector:
        changes, state = read(connector, "account")
    got = upserts(changes)
    assert len(got) == account.live_count("account")
    assert all(u.fields["industry"] is None and u.fields["name"] for u in got.values())
    assert "custentity_industry" not in state["fields"] and "companyname" in state["fields"]


def test_custom_fields_are_named_per_connection(account: RunningNetSuite) -> None:
    with connect(account, custom_fields={"account.industry": "custentity_employee_count"}
                 ) as connector:
        got = upserts(read(connector, "account")[0])
    assert all(u.fields["industry"] == u.raw["custentity_industry"] ==
               u.fields["employee_count"] for u in got.values())
    with connect(account, custom_fields={"account.name": "custentity_x"}) as connector, \
            pytest.raises(ConnectorError, match="account.name"):
        read(connector, "account")
