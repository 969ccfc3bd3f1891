"""The Close adapter against the Close sandbox: reads, increments, deletes, limits, errors.

Every change is made through the official client (the harness's writer), and the org's
clock is moved instead of sleeping (the event log's 30 days are counted on it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from closeio_api import API, ValidationError

from accrue.sync import sync_object
from accrue_pipelines_tests.core.test_sync_engine import Crash, CrashAfterCheckpoints
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
from connectors.close.connector import CloseConnector
from connectors.close.mapping import SOURCES, map_record, parse_close_datetime
from connectors.close.sandbox.harness import CloseHarness, RunningCloseSandbox
from connectors.common_model import COMMON_OBJECTS
from connectors.sandbox_kit.transport import sandbox_session

OBJECTS = ("user", "account", "contact", "opportunity", "activity")


@pytest.fixture
def close_org(tmp_path: Path) -> Iterator[RunningCloseSandbox]:
    running = CloseHarness().start(tmp_path / "close.db", opportunities=20, page_size=10,
                                   clock=SandboxClock(), max_skip=20)
    yield running
    running.stop()


def _connector(org: RunningCloseSandbox, **config: object) -> CloseConnector:
    secrets, settings = org.connection()
    return CloseConnector(secrets, {**settings, "max_backoff_seconds": 0.01, **config})


def _read(connector: CloseConnector, object_name: str, state=None, **kwargs):
    changes = list(connector.read(object_name, state, **kwargs))
    assert isinstance(changes[-1], Checkpoint)
    return changes


def _upserts(changes) -> dict[str, Upsert]:
    return {c.source_id: c for c in changes if isinstance(c, Upsert)}


def _advance(org: RunningCloseSandbox, **delta: float) -> None:
    org.store.clock.advance(**delta)  # type: ignore[attr-defined]


def test_check_says_connected_and_blames_the_api_key_when_refused(close_org) -> None:
    with _connector(close_org) as connector:
        assert connector.check().ok
    secrets, config = close_org.bad_connection()
    result = CloseConnector(secrets, config).check()
    assert not result.ok and result.field == "api_key" and "HTTP 401" in result.message
    assert not CloseConnector({}, config).check().ok  # no key stored: said, never raised


def test_full_read_lands_every_live_record_with_a_checkpoint_per_page(close_org) -> None:
    with _connector(close_org) as connector:
        assert {o.name for o in connector.objects()} == set(OBJECTS)
        for object_name in OBJECTS:
            changes = _read(connector, object_name)
            upserts = _upserts(changes)
            assert len(upserts) == close_org.live_count(object_name) == connector.count(
                object_name) > 0
            assert not [c for c in changes if isinstance(c, Quarantine)]
            assert all(set(u.fields) == {c.name for c in COMMON_OBJECTS[object_name]}
                       for u in upserts.values())
            pages = -(-len(upserts) // 10)
            assert sum(isinstance(c, Checkpoint) for c in changes) >= pages
            state = changes[-1].state
            # Activities keep one part per resource read (calls, e-mails, meetings, tasks).
            parts = state.get("parts") or {SOURCES[object_name][0]: state}
            assert set(parts) == set(SOURCES[object_name])
            for part in parts.values():
                assert part["cursor"] and part["events_since"] and part["fields"]
            assert state["cursor"] == min(p["cursor"] for p in parts.values())
            if object_name != "activity":
                assert state["cursor"] == max(u.raw["date_updated"] for u in upserts.values())


def test_activities_are_calls_emails_meetings_and_tasks_never_notes(close_org) -> None:
    writer = close_org.writer()
    api = API(close_org.served.api_url, api_key=close_org.connection()[0]["api_key"])
    with _connector(close_org) as connector:
        lead = next(iter(_upserts(_read(connector, "account"))))
        api.post("activity/note", {"lead_id": lead, "note": "no common kind: not read"})
        task = writer.create("activity", {"activity_type": "task", "account_id": lead,
                                          "subject": "Send contract", "is_closed": False,
                                          "due_date": date(2026, 12, 24)})
        changes = _read(connector, "activity")
    upserts = _upserts(changes)
    assert not [c for c in changes if isinstance(c, Quarantine)]
    assert len(upserts) == close_org.live_count("activity")
    kinds = {u.fields["activity_type"] for u in upserts.values()}
    assert kinds == {"call", "email", "meeting", "task"}
    fields = upserts[task].fields
    assert (fields["subject"], fields["is_closed"], fields["due_date"]) == (
        "Send contract", False, date(2026, 12, 24))
    assert fields["account_id"] == lead and fields["activity_at"] is None


def test_lead_custom_fields_named_otherwise_are_found_through_the_config(close_org) -> None:
    api = API(close_org.served.api_url, api_key=close_org.connection()[0]["api_key"])
    fields = {f["name"]: f["id"] for f in api.get("custom_field/lead")["data"]}
    with _connector(close_org, lead_custom_fields={"industry": "Employees"}) as connector:
        accounts = _upserts(_read(connector, "account"))
    for upsert in accounts.values():
        assert upsert.fields["industry"] == upsert.raw[f"custom.{fields['Employees']}"]
        assert upsert.fields["account_type"] == upsert.raw[f"custom.{fields['Account Type']}"]


def test_opportunity_amount_stage_and_outcome_come_from_value_and_status(close_org) -> None:
    with _connector(close_org) as connector:
        upserts = _upserts(_read(connector, "opportunity"))
    for upsert in upserts.values():
        raw, fields = upsert.raw, upsert.fields
        assert fields["amount"] == Decimal(raw["value"]) / 100  # cents, exactly
        assert fields["stage"] == raw["status_label"]
        assert fields["is_won"] == (raw["status_type"] == "won")
        assert fields["is_closed"] == (raw["status_type"] != "active")
        assert fields["account_id"] == raw["lead_id"] and fields["owner_id"] == raw["user_id"]


def test_incremental_read_brings_the_writes_made_through_closeio_api(close_org) -> None:
    writer = close_org.writer()
    with _connector(close_org) as connector:
        state = _read(connector, "opportunity")[-1].state
        account_state = _read(connector, "account")[-1].state
        any_lead = next(iter(_upserts(_read(connector, "account"))))
        _advance(close_org, minutes=30)  # past the lookback: only the writes come back
        new_id = writer.create("opportunity", {
            "name": "Expansion", "account_id": any_lead, "amount": 1234.56,
            "stage": "Closed Won", "close_date": date(2026, 11, 1)})
        changed = _read(connector, "opportunity", state)
        account_changes = _read(connector, "account", account_state)
    # The new deal, and what the lookback reads again below the cursor: nothing older.
    reread = set(_upserts(changed)) - {new_id}
    floor = parse_close_datetime(state["cursor"]) - timedelta(minutes=10)
    assert all(_upserts(changed)[i].modified_at >= floor for i in reread)
    fields = _upserts(changed)[new_id].fields
    assert fields["amount"] == Decimal("1234.56") and fields["is_won"] is True
    assert fields["close_date"] == date(2026, 11, 1) and fields["name"] == "Expansion"
    assert all(u.modified_at >= parse_close_datetime(account_state["cursor"])
               - timedelta(minutes=10) for u in _upserts(account_changes).values())
    assert changed[-1].state["cursor"] > state["cursor"]


def test_lookback_reads_the_last_ten_minutes_again(close_org) -> None:
    writer = close_org.writer()
    with _connector(close_org) as connector:
        state = _read(connector, "contact")[-1].state
        lead = next(iter(_upserts(_read(connector, "account"))))
        _advance(close_org, minutes=30)
        first = writer.create("contact", {"account_id": lead, "first_name": "Ada",
                                          "last_name": "Lovelace", "email": "ada@example.com"})
        state = _read(connector, "contact", state)[-1].state
        _advance(close_org, minutes=5)
        second = writer.create("contact", {"account_id": lead, "last_name": "Hopper"})
        again = _upserts(_read(connector, "contact", state))
    assert set(again) == {first, second}  # the first is 5 minutes old: inside the lookback
    assert again[first].fields["first_name"] == "Ada"
    assert again[second].fields["first_name"] is None


def test_deletes_come_from_the_event_log(close_org) -> None:
    writer = close_org.writer()
    with _connector(close_org) as connector:
        state = _read(connector, "opportunity")[-1].state
        contacts_state = _read(connector, "contact")[-1].state
        contacts = _upserts(_read(connector, "contact"))
        gone = next(iter(_upserts(_read(connector, "opportunity"))))
        writer.delete("opportunity", gone)
        lead = next(iter(contacts.values())).fields["account_id"]
        writer.delete("account", lead)  # Close deletes the lead's contacts with it
        changes = _read(connector, "opportunity", state)
        contact_changes = _read(connector, "contact", contacts_state)
    assert gone in {c.source_id for c in changes if isinstance(c, Delete)}
    assert not [c for c in changes if isinstance(c, LiveIds)]  # the log covered the gap
    deleted_contacts = {c.source_id for c in contact_changes if isinstance(c, Delete)}
    assert deleted_contacts == {i for i, u in contacts.items() if u.fields["account_id"] == lead}


def test_pages_stay_under_the_skip_ceiling_however_deep_the_read(close_org) -> None:
    """20 is the org's `_skip` ceiling: offset paging fails past it, the adapter does not."""
    api = API(close_org.served.api_url, api_key=close_org.connection()[0]["api_key"])
    with pytest.raises(ValidationError, match="maximum skip"):
        api.get("activity", params={"_limit": 10, "_skip": 30})
    total = close_org.live_count("activity")
    assert total > 2 * 20
    with _connector(close_org) as connector:
        changes = _read(connector, "activity")
    assert len(_upserts(changes)) == total


def test_many_records_sharing_one_stamp_are_read_once_each(close_org) -> None:
    """A bulk change stamps records alike: the window re-opens at that stamp and skips."""
    store = close_org.store
    stamp = "2026-01-01T00:00:00.000000+00:00"
    with _connector(close_org) as connector:
        ids = list(_upserts(_read(connector, "contact")))[:15]
        with store.transaction() as db:
            marks = ",".join("?" * len(ids))
            db.execute("UPDATE object SET date_updated = ?, body = json_set(body, "
                       f"'$.date_updated', ?) WHERE id IN ({marks})", [stamp, stamp, *ids])
        upserts = _upserts(_read(connector, "contact"))
    assert len(upserts) == close_org.live_count("contact")


def test_a_window_close_did_not_honour_stops_the_read_instead_of_looping(
        close_org, monkeypatch: pytest.MonkeyPatch) -> None:
    """Were Close to ignore `date_updated__gte` / `_order_by` on a list, keyset paging could
    loop or skip: the adapter stops with an error instead."""
    later = {"id": "cont_b", "date_updated": "2026-01-02T00:00:00+00:00"}
    earlier = {"id": "cont_a", "date_updated": "2026-01-01T00:00:00+00:00"}
    with _connector(close_org) as connector:
        pages = iter([{"data": [later], "has_more": True}, {"data": [earlier], "has_more": True}])
        monkeypatch.setattr(connector, "_get", lambda endpoint, params=None: next(pages))
        with pytest.raises(ConnectorError, match="out of date_updated order"):
            list(connector.read("contact", None))
        pages = iter([{"data": [later], "has_more": True}] * 2)
        with pytest.raises(ConnectorError, match="repeated a page"):
            list(connector.read("contact", None))


def test_a_paused_sync_past_the_event_logs_thirty_days_reconciles_ids(close_org) -> None:
    writer = close_org.writer()
    with _connector(close_org) as connector:
        state = _read(connector, "opportunity")[-1].state
        gone = next(iter(_upserts(_read(connector, "opportunity"))))
        writer.delete("opportunity", gone)
        _advance(close_org, days=31)  # the delete event has left the log
        changes = _read(connector, "opportunity", state)
        live = [c for c in changes if isinstance(c, LiveIds)]
        assert len(live) == 1 and isinstance(changes[-2], LiveIds)
        assert gone not in live[0].source_ids
        assert len(live[0].source_ids) == close_org.live_count("opportunity")
        assert not [c for c in changes if isinstance(c, Delete)]
        # Caught up: the next sync needs no reconciliation, unless asked for one.
        after = changes[-1].state
        assert not [c for c in _read(connector, "opportunity", after) if isinstance(c, LiveIds)]
        assert [c for c in _read(connector, "opportunity", after, reconcile=True)
                if isinstance(c, LiveIds)]


def test_values_close_cannot_mean_are_quarantined_with_the_reason(close_org) -> None:
    writer = close_org.writer()
    with _connector(close_org) as connector:
        ids = list(_upserts(_read(connector, "opportunity")))
        writer.write_raw("opportunity", ids[0], {"value": "1000"})
        writer.write_raw("opportunity", ids[1], {"status_type": "pending"})
        writer.write_raw("opportunity", ids[2], {"date_won": "next week"})
        quarantined = {c.source_id: c.reason for c in _read(connector, "opportunity")
                       if isinstance(c, Quarantine)}
    assert set(quarantined) == set(ids[:3])
    assert "whole number of cents" in quarantined[ids[0]]
    assert "status_type" in quarantined[ids[1]]
    assert "date_won" in quarantined[ids[2]]


def test_mapping_keeps_the_period_in_raw_and_never_annualises() -> None:
    record = {"id": "oppo_1", "date_updated": "2026-01-02T03:04:05.678900+00:00",
              "date_created": "2026-01-01T00:00:00+00:00", "value": 100001,
              "value_period": "monthly", "status_type": "active", "status_label": "Demo",
              "confidence": 40, "date_won": "2026-02-01", "note": "Seats"}
    mapped = map_record("opportunity", record)
    assert isinstance(mapped, Upsert)
    assert mapped.fields["amount"] == Decimal("1000.01")
    assert mapped.raw["value_period"] == "monthly"
    assert mapped.fields["probability"] == 40 and mapped.fields["is_closed"] is False
    for bad in (True, 10.5, "100"):
        assert isinstance(map_record("opportunity", {**record, "value": bad}), Quarantine)
    assert isinstance(map_record("opportunity", {**record, "date_updated": "soon"}), Quarantine)
    contact = map_record("contact", {"id": "cont_1", "date_updated": record["date_updated"],
                                     "name": "Mary Ann Smith", "lead_id": "lead_1"})
    assert isinstance(contact, Upsert)
    assert (contact.fields["first_name"], contact.fields["last_name"]) == ("Mary Ann", "Smith")


def test_outages_and_spent_rate_limits_are_told_apart(close_org) -> None:
    with _connector(close_org, max_attempts=2) as connector:
        close_org.set_faults({"error_rate": 1, "error_statuses": [500]})
        with pytest.raises(SourceUnavailable):
            connector.count("opportunity")
        close_org.set_faults({"rate_limit_after": 0, "rate_limit_calls": None,
                              "rate_limit_retry_after": 0})
        with pytest.raises(QuotaExceeded):
            connector.count("opportunity")
        close_org.set_faults({"rate_limit_after": 0, "rate_limit_calls": 1,
                              "rate_limit_retry_after": 0})
        assert connector.count("opportunity") == close_org.live_count("opportunity")
    secrets, config = close_org.bad_connection()
    with pytest.raises(AuthenticationError):
        list(CloseConnector(secrets, config).read("account", None))


def test_a_session_given_to_it_is_the_one_it_uses(close_org) -> None:
    """The concierge's way: no sandbox URL, the real host, a session that routes it."""
    session = sandbox_session(close_org.url, hosts=("api.close.com",))
    sent: list[str] = []
    session.hooks["response"].append(lambda response, *a, **k: sent.append(response.url))
    secrets, _ = close_org.connection()
    with CloseConnector(secrets, {}, session=session) as connector:
        assert connector.check().ok
        assert connector.count("account") == close_org.live_count("account")
    assert sent and sent[0].endswith("/api/v1/me/")


def test_sync_into_the_warehouse_then_deletes_and_updates(warehouse, tenant_id,
                                                          close_org) -> None:
    writer = close_org.writer()
    with _connector(close_org) as connector:
        result = sync_object(warehouse, connector, tenant_id, "opportunity")
        ids = warehouse.live_ids(tenant_id, "opportunity")
        assert result.upserted == len(ids) == close_org.live_count("opportunity")
        gone, changed = sorted(ids)[:2]
        writer.delete("opportunity", gone)
        _advance(close_org, seconds=1)
        writer.update("opportunity", changed, {"amount": 99.99})
        sync_object(warehouse, connector, tenant_id, "opportunity")
    assert warehouse.live_ids(tenant_id, "opportunity") == ids - {gone}
    assert warehouse.count(tenant_id, "opportunity", include_deleted=True) == len(ids)
    assert warehouse.duplicate_keys(tenant_id, "opportunity") == 0
    assert warehouse.quarantine_count(tenant_id, "opportunity") == 0


def test_a_write_committed_late_inside_the_lookback_is_still_read(close_org) -> None:
    writer = close_org.writer()
    with _connector(close_org) as connector:
        lead = next(iter(_upserts(_read(connector, "account"))))
        _advance(close_org, minutes=30)
        on_time = writer.create("contact", {"account_id": lead, "last_name": "Ontime"})
        state = _read(connector, "contact")[-1].state
        # Visible now, stamped 5 minutes ago (inside the 10-minute lookback).
        close_org.set_faults({"late_commit_rate": 1, "late_commit_minutes": 5})
        late = writer.create("contact", {"account_id": lead, "last_name": "Late"})
        close_org.set_faults({})
        assert close_org.store.get("contact", late)["date_updated"] < state["cursor"]
        again = _upserts(_read(connector, "contact", state))
    assert late in again and on_time in again


def test_a_sync_killed_mid_read_resumes_from_its_last_page(warehouse, tenant_id,
                                                          close_org) -> None:
    with _connector(close_org) as connector:
        crashing = CrashAfterCheckpoints(connector, 3)
        with pytest.raises(Crash):
            sync_object(warehouse, crashing, tenant_id, "activity")  # type: ignore[arg-type]
        assert warehouse.get_state(tenant_id, "activity") == crashing.seen[2]
        # A first read resumes replaying the deletes since it began.
        assert all(p["events_since"] for p in crashing.seen[2]["parts"].values())
        result = sync_object(warehouse, connector, tenant_id, "activity")
        live = {u for u in _upserts(_read(connector, "activity"))}
    assert warehouse.live_ids(tenant_id, "activity") == live
    assert warehouse.duplicate_keys(tenant_id, "activity") == 0
    assert result.records_read < len(live)  # resumed, not restarted


def test_an_old_activity_changed_today_arrives_through_the_event_log(close_org) -> None:
    """Close windows activities and tasks on creation only: their later changes are named
    by the log's `updated` events and fetched by id."""
    writer = close_org.writer()
    with _connector(close_org) as connector:
        first = _read(connector, "activity")
        state = first[-1].state
        upserts = _upserts(first)
        call = next(i for i, u in upserts.items() if u.fields["activity_type"] == "call")
        task = writer.create("activity", {"activity_type": "task", "subject": "Chase",
                                          "account_id": upserts[call].fields["account_id"],
                                          "is_closed": False})
        state = _read(connector, "activity", state)[-1].state
        _advance(close_org, hours=2)
        writer.update("activity", call, {"duration_minutes": 90})
        writer.update("activity", task, {"is_closed": True})
        changed = _upserts(_read(connector, "activity", state))
    assert changed[call].fields["duration_minutes"] == 90.0
    assert changed[task].fields["is_closed"] is True
    assert len(changed) < len(upserts)  # the changes, not a re-read


def test_a_change_merged_into_a_creation_event_is_not_missed(close_org) -> None:
    """Close folds a change made soon after a creation into the `created` event: a task
    read when new and completed moments later must still arrive done, even with no
    lookback to re-read it by chance."""
    writer = close_org.writer()
    with _connector(close_org, lookback_seconds=0) as connector:
        lead = next(iter(_upserts(_read(connector, "account"))))
        state = _read(connector, "activity")[-1].state
        task = writer.create("activity", {"activity_type": "task", "subject": "Call back",
                                          "account_id": lead, "is_closed": False})
        _advance(close_org, seconds=1)
        writer.create("activity", {"activity_type": "task", "subject": "Later",
                                   "account_id": lead})
        state = _read(connector, "activity", state)[-1].state
        writer.update("activity", task, {"is_closed": True})
        api = API(close_org.served.api_url, api_key=close_org.connection()[0]["api_key"])
        assert not api.get("event", params={"object_id": task, "action": "updated",
                                            "object_type": "task.lead"})["data"]  # merged
        changed = _upserts(_read(connector, "activity", state))
    assert changed[task].fields["is_closed"] is True


def test_activities_past_the_logs_thirty_days_are_read_again_whole(close_org) -> None:
    """Changes to old activities are only in the log: past its 30 days the resource is read
    whole again (resumable: a crash continues the re-read), then ids are reconciled."""
    writer = close_org.writer()
    with _connector(close_org) as connector:
        first = _read(connector, "activity")
        upserts = _upserts(first)
        call = next(i for i, u in upserts.items() if u.fields["activity_type"] == "call")
        gone = next(i for i, u in upserts.items() if u.fields["activity_type"] == "meeting")
        writer.update("activity", call, {"duration_minutes": 3})
        writer.delete("activity", gone)
        _advance(close_org, days=31)
        again = list(connector.read("activity", first[-1].state))
        # Killed after the re-read's first page: the rerun continues it, not anew.
        resumed_from = next(c.state for c in again if isinstance(c, Checkpoint))
        assert resumed_from["parts"]["activity/call"]["resync_since"]
        rest = list(connector.read("activity", resumed_from))
    reread = _upserts(again)
    assert reread[call].fields["duration_minutes"] == 3.0
    assert len(reread) == close_org.live_count("activity")
    live = [c for c in again if isinstance(c, LiveIds)]
    assert len(live) == 1 and gone not in live[0].source_ids
    assert [c for c in rest if isinstance(c, LiveIds)]
    assert len(_upserts(rest)) < len(reread)
    assert not any("resync_since" in p for p in rest[-1].state["parts"].values())


def test_a_spent_rate_limit_window_is_waited_out_not_hammered(close_org) -> None:
    """With `remaining=0` in the RateLimit header the next call waits for the reset: with
    no retry allowed, a single 429 would fail this read."""
    app = close_org.served.app
    app.settings = replace(app.settings, rate_limit=6)
    with _connector(close_org, max_attempts=1, max_backoff_seconds=2) as connector:
        assert len(_upserts(_read(connector, "activity"))) == close_org.live_count("activity")
