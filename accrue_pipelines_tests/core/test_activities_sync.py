"""The activity object: mapped from Task and Event, synced with every guarantee of the others.

Why: activity is the one common object read from two sObjects, so the guarantees every
object has (no duplicate, resumable, deletes flagged, purges reconciled, undeletes
revived) must hold across both, and a reconciliation must never flag one sObject's rows
as deleted because they are absent from the other's ids. A sync killed in either part:
test_sync_engine.py; an undelete: test_sync_guarantees.py.
"""

from __future__ import annotations

import time

import requests

from accrue.sync import sync_object
from accrue_pipelines_tests.core.test_sync_engine import _connector
from connectors.base import Checkpoint, LiveIds, Quarantine, Upsert
from connectors.common_model import ACTIVITY_TYPES, COMMON_OBJECTS
from connectors.salesforce.mapping import map_record

STAMP = "2024-05-01T10:00:00.000+0000"
DEAL, ACCOUNT, CONTACT, LEAD = ("0065g0000000001AAA", "0015g0000000002AAA",
                                "0035g0000000003AAA", "00Q5g0000000004AAA")


def _ids(sf_client, soql):
    return {r["Id"] for r in sf_client.query_all(soql)["records"]}


def _activity_ids(sf_client):
    return _ids(sf_client, "SELECT Id FROM Task") | _ids(sf_client, "SELECT Id FROM Event")


def _drain(connector, state=None, **kwargs):
    changes = list(connector.read("activity", state, **kwargs))
    return ([c for c in changes if isinstance(c, Upsert)],
            [c for c in changes if isinstance(c, Checkpoint)], changes)


# -- mapping ----------------------------------------------------------------------------


def test_a_task_maps_with_its_relations_and_kind() -> None:
    call = map_record("activity", {
        "attributes": {"type": "Task"}, "Id": "00T5g0000000009AAA", "SystemModstamp": STAMP,
        "Subject": "Pricing call", "TaskSubtype": "Call", "Type": "Call", "Status": "Completed",
        "IsClosed": True, "CompletedDateTime": STAMP, "ActivityDate": "2024-05-01",
        "CallDurationInSeconds": 90, "WhatId": DEAL, "WhoId": CONTACT, "AccountId": ACCOUNT,
        "OwnerId": "0055g0000000001AAA", "CreatedDate": STAMP, "IsDeleted": False,
    })
    assert isinstance(call, Upsert)
    assert set(call.fields) == {c.name for c in COMMON_OBJECTS["activity"]}
    f = call.fields
    assert (f["activity_type"], f["subject"], f["status"], f["is_closed"]) == (
        "call", "Pricing call", "Completed", True)
    assert (f["opportunity_id"], f["account_id"], f["contact_id"], f["lead_id"]) == (
        DEAL, ACCOUNT, CONTACT, None)
    assert f["duration_minutes"] == 1.5 and f["due_date"].isoformat() == "2024-05-01"
    assert f["activity_at"].isoformat() == "2024-05-01T10:00:00+00:00"


def test_an_event_and_other_relations_map_by_key_prefix() -> None:
    """WhatId/WhoId are polymorphic: the key prefix says what they point to."""
    meeting = map_record("activity", {  # no `attributes`: told by the Id's prefix (00U)
        "Id": "00U5g0000000009AAA", "SystemModstamp": STAMP, "Subject": "Demo",
        "StartDateTime": STAMP, "DurationInMinutes": 45, "WhoId": LEAD, "WhatId": None,
        "AccountId": None, "IsDeleted": True,
    })
    assert isinstance(meeting, Upsert) and meeting.is_deleted
    assert (meeting.fields["activity_type"], meeting.fields["lead_id"],
            meeting.fields["contact_id"], meeting.fields["duration_minutes"],
            meeting.fields["status"], meeting.fields["is_closed"]) == (
        "meeting", LEAD, None, 45, None, None)
    about_account = map_record("activity", {
        "attributes": {"type": "Task"}, "Id": "00T5g0000000010AAA", "SystemModstamp": STAMP,
        "TaskSubtype": "Email", "WhatId": ACCOUNT, "AccountId": None})
    assert isinstance(about_account, Upsert)
    assert (about_account.fields["account_id"], about_account.fields["opportunity_id"],
            about_account.fields["activity_type"]) == (ACCOUNT, None, "email")
    assert {map_record("activity", {"attributes": {"type": "Task"}, "Id": "00T5g0000000011AAA",
                                    "SystemModstamp": STAMP, "Type": kind}).fields[
        "activity_type"] for kind in ("Meeting", "Other", None)} <= set(ACTIVITY_TYPES)
    stranger = map_record("activity", {"attributes": {"type": "Case"}, "Id": "5005g0000000001AAA",
                                       "SystemModstamp": STAMP})
    assert isinstance(stranger, Quarantine) and "Task" in stranger.reason


def test_the_connector_offers_activity_and_counts_both_sobjects(sf_sandbox, sf_client) -> None:
    with _connector(sf_sandbox) as connector:
        offered = {o.name: o.source_name for o in connector.objects()}
        assert offered["activity"] == "Task, Event"
        assert connector.count("activity") == len(_activity_ids(sf_client))
        assert connector.live_ids("activity").source_ids == _activity_ids(sf_client)


# -- reading ----------------------------------------------------------------------------


def test_a_full_read_brings_every_task_and_event_once_with_checkpoints(sf_sandbox,
                                                                        sf_client) -> None:
    with _connector(sf_sandbox) as connector:
        upserts, checkpoints, _ = _drain(connector)
    ids = [u.source_id for u in upserts]
    assert len(ids) == len(set(ids)) and set(ids) == _activity_ids(sf_client)
    assert {u.fields["activity_type"] for u in upserts} == set(ACTIVITY_TYPES)
    assert all(u.fields["opportunity_id"] for u in upserts)  # seeded on deals
    final = checkpoints[-1].state
    assert set(final["parts"]) == {"Task", "Event"} and final["cursor"]
    assert "Task.Subject" in final["fields"] and "Event.StartDateTime" in final["fields"]
    assert "reconcile_pending" not in final
    assert len(checkpoints) > 2  # pages of the fixture's 50 records, each part


def test_changes_and_deletes_of_either_sobject_arrive_incrementally(sf_sandbox,
                                                                     sf_client) -> None:
    with _connector(sf_sandbox, lookback_seconds=0) as connector:
        _, checkpoints, _ = _drain(connector)
        task = sorted(_ids(sf_client, "SELECT Id FROM Task"))[0]
        event = sorted(_ids(sf_client, "SELECT Id FROM Event"))[0]
        sf_client.Task.update(task, {"Subject": "Renamed"})
        sf_client.Event.delete(event)
        time.sleep(0.005)  # past the millisecond the next read's window starts at
        changed, _, _ = _drain(connector, checkpoints[-1].state)
    by_id = {u.source_id: u for u in changed}
    assert set(by_id) == {task, event}
    assert by_id[task].fields["subject"] == "Renamed" and not by_id[task].is_deleted
    assert by_id[event].is_deleted


# -- the guarantees, through the sync engine ----------------------------------------------


def test_a_second_sync_adds_nothing_and_stores_no_id_twice(warehouse, tenant_id, sf_sandbox,
                                                           sf_client) -> None:
    with _connector(sf_sandbox) as connector:
        first = sync_object(warehouse, connector, tenant_id, "activity")
        stored = warehouse.count(tenant_id, "activity", include_deleted=True)
        sync_object(warehouse, connector, tenant_id, "activity")
    assert first.records_read == first.upserted == stored
    assert warehouse.count(tenant_id, "activity", include_deleted=True) == stored
    assert warehouse.duplicate_keys(tenant_id, "activity") == 0
    assert warehouse.live_ids(tenant_id, "activity") == _activity_ids(sf_client)


def test_purged_deletes_of_both_sobjects_are_reconciled_once_for_the_whole_object(
    warehouse, tenant_id, sf_sandbox, sf_client
) -> None:
    with _connector(sf_sandbox) as connector:
        sync_object(warehouse, connector, tenant_id, "activity")
        task = sorted(_ids(sf_client, "SELECT Id FROM Task"))[0]
        event = sorted(_ids(sf_client, "SELECT Id FROM Event"))[0]
        sf_client.Task.delete(task)
        sf_client.Event.delete(event)
        response = requests.post(f"{sf_sandbox.url}/_sandbox/purge", json={}, timeout=10)
        assert response.status_code < 300
        changes = list(connector.read("activity", warehouse.get_state(tenant_id, "activity")))
        result = sync_object(warehouse, connector, tenant_id, "activity")
    live_ids = [c for c in changes if isinstance(c, LiveIds)]
    assert len(live_ids) == 1 and live_ids[0].source_ids == _activity_ids(sf_client)
    assert isinstance(changes[-1], Checkpoint) and changes[-2] is live_ids[0]
    assert result.reconciled
    live = warehouse.live_ids(tenant_id, "activity")
    assert task not in live and event not in live
    assert live == _activity_ids(sf_client)  # the other part's rows stay live


def test_a_reconciliation_owed_survives_a_crash_between_the_parts(
    warehouse, tenant_id, sf_sandbox, sf_client
) -> None:
    """Task's delete log no longer covers the gap; the process dies while reading Event:
    the next sync still sends every live id before its last checkpoint."""
    with _connector(sf_sandbox, window_days=36500) as connector:
        sync_object(warehouse, connector, tenant_id, "activity")
        task = sorted(_ids(sf_client, "SELECT Id FROM Task"))[-1]
        sf_client.Task.delete(task)
        requests.post(f"{sf_sandbox.url}/_sandbox/purge", json={"sobject": "Task"},
                      timeout=10).raise_for_status()
        state = warehouse.get_state(tenant_id, "activity")
        seen = []
        for change in connector.read("activity", state):
            if isinstance(change, Checkpoint) and "Event" in str(change.state.get("parts", {})) \
                    and change.state["parts"]["Task"] != state["parts"]["Task"]:
                seen.append(change.state)
                break
        assert seen and seen[0]["reconcile_pending"] is True
        again = list(connector.read("activity", seen[0]))
    assert any(isinstance(c, LiveIds) for c in again)
    assert "reconcile_pending" not in again[-1].state
