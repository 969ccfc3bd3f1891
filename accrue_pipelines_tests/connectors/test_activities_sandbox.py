"""The sandbox serves Task and Event as Salesforce does, through the real simple-salesforce.

Why: the activity sync is only as trustworthy as the org it is tested against, so the
sandbox must describe, query, write and delete activities with Salesforce's rules:
polymorphic WhoId/WhatId told apart by key prefix, a read-only AccountId, IsClosed and
CompletedDateTime following the status, an event's times kept consistent, the recycle bin
and cascade deletes with their parent.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from accrue_pipelines_tests.fixtures_sandbox import start_sandbox
from connectors.salesforce.sandbox import RunningSandbox, SalesforceSandbox, seed
from connectors.salesforce.sandbox.values import parse_datetime
from connectors.salesforce.transport import soap_undelete


def _records(sf: Salesforce, soql: str, *, deleted: bool = False) -> list[dict]:
    return sf.query_all(soql, include_deleted=deleted)["records"]


def _one(sf: Salesforce, soql: str) -> dict:
    return _records(sf, soql)[0]


def test_describe_names_the_polymorphic_relations_and_key_prefixes(sf_client: Salesforce) -> None:
    prefixes = {o["name"]: o["keyPrefix"] for o in sf_client.describe()["sobjects"]}
    assert (prefixes["Task"], prefixes["Event"]) == ("00T", "00U")
    for sobject in ("Task", "Event"):
        fields = {f["name"]: f for f in getattr(sf_client, sobject).describe()["fields"]}
        assert fields["WhatId"]["referenceTo"] == ["Account", "Opportunity"]
        assert fields["WhoId"]["referenceTo"] == ["Contact", "Lead"]
        assert fields["WhatId"]["polymorphicForeignKey"] and fields["WhoId"]["relationshipName"] \
            == "Who"
        assert not fields["AccountId"]["createable"] and not fields["AccountId"]["updateable"]
        assert fields["Subject"]["type"] == "combobox"
        assert {"SystemModstamp", "IsDeleted", "OwnerId"} <= set(fields)
    task = {f["name"]: f for f in sf_client.Task.describe()["fields"]}
    assert not task["IsClosed"]["createable"] and not task["CompletedDateTime"]["updateable"]
    account = sf_client.Account.describe()
    assert {("Task", "WhatId"), ("Event", "WhatId")} <= {
        (r["childSObject"], r["field"]) for r in account["childRelationships"]}


def test_task_lifecycle_through_the_real_client(sf_client: Salesforce) -> None:
    deal = _one(sf_client, "SELECT Id, AccountId FROM Opportunity WHERE IsClosed = false LIMIT 1")
    contact = _one(sf_client, "SELECT Id FROM Contact LIMIT 1")["Id"]
    created = sf_client.Task.create({"Subject": "Pricing call", "WhatId": deal["Id"],
                                     "WhoId": contact, "TaskSubtype": "Call",
                                     "CallDurationInSeconds": 420})
    task = sf_client.Task.get(created["id"])
    assert task["Id"].startswith("00T") and task["AccountId"] == deal["AccountId"]
    assert (task["Status"], task["IsClosed"], task["CompletedDateTime"]) == (
        "Not Started", False, None)
    sf_client.Task.update(task["Id"], {"Status": "Completed"})
    done = sf_client.Task.get(task["Id"])
    assert done["IsClosed"] and done["CompletedDateTime"] == done["SystemModstamp"]
    assert done["SystemModstamp"] > task["SystemModstamp"]
    sf_client.Task.update(task["Id"], {"Status": "In Progress"})  # reopened
    assert sf_client.Task.get(task["Id"])["CompletedDateTime"] is None
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_FIELD_FOR_INSERT_UPDATE"):
        sf_client.Task.update(task["Id"], {"IsClosed": True})
    lead = _one(sf_client, "SELECT Id FROM Lead WHERE IsConverted = false LIMIT 1")["Id"]
    with pytest.raises(SalesforceMalformedRequest, match="FIELD_INTEGRITY_EXCEPTION"):
        sf_client.Task.create({"Subject": "x", "WhoId": lead, "WhatId": deal["Id"]})
    with pytest.raises(SalesforceMalformedRequest, match="FIELD_INTEGRITY_EXCEPTION"):
        sf_client.Task.create({"Subject": "x", "WhatId": contact})  # a contact is a Who
    sf_client.Task.delete(task["Id"])
    gone = _records(sf_client, f"SELECT Id, IsDeleted FROM Task WHERE Id = '{task['Id']}'",
                    deleted=True)
    assert gone == [{"attributes": gone[0]["attributes"], "Id": task["Id"], "IsDeleted": True}]
    assert _records(sf_client, f"SELECT Id FROM Task WHERE Id = '{task['Id']}'") == []


def test_event_times_stay_consistent(sf_client: Salesforce) -> None:
    deal = _one(sf_client, "SELECT Id, AccountId FROM Opportunity LIMIT 1")
    created = sf_client.Event.create({"Subject": "Demo", "WhatId": deal["Id"],
                                      "StartDateTime": "2024-05-01T10:00:00Z",
                                      "DurationInMinutes": 45})
    event = sf_client.Event.get(created["id"])
    assert (event["StartDateTime"], event["ActivityDateTime"], event["EndDateTime"],
            event["ActivityDate"], event["AccountId"]) == (
        "2024-05-01T10:00:00.000+0000", "2024-05-01T10:00:00.000+0000",
        "2024-05-01T10:45:00.000+0000", "2024-05-01", deal["AccountId"])
    sf_client.Event.update(event["Id"], {"EndDateTime": "2024-05-01T12:00:00Z"})
    assert sf_client.Event.get(event["Id"])["DurationInMinutes"] == 120
    with pytest.raises(SalesforceMalformedRequest, match="REQUIRED_FIELD_MISSING"):
        sf_client.Event.create({"Subject": "No time", "WhatId": deal["Id"]})
    with pytest.raises(SalesforceMalformedRequest, match="FIELD_INTEGRITY_EXCEPTION"):
        sf_client.Event.create({"Subject": "Too long", "StartDateTime": "2024-05-01T10:00:00Z",
                                "DurationInMinutes": 15 * 24 * 60})


def test_modstamp_windows_and_the_delete_log_cover_activities(
    sf_sandbox: RunningSandbox, sf_client: Salesforce
) -> None:
    clock = sf_sandbox.sandbox.clock
    start = clock().replace(second=0, microsecond=0) - timedelta(minutes=1)
    stamp = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    before = len(_records(sf_client, f"SELECT Id FROM Event WHERE SystemModstamp >= {stamp}"))
    event = _one(sf_client, "SELECT Id FROM Event ORDER BY Id LIMIT 1")["Id"]
    task = _one(sf_client, "SELECT Id FROM Task ORDER BY Id LIMIT 1")["Id"]
    sf_client.Event.update(event, {"Location": "Moved online"})
    sf_client.Task.delete(task)
    changed = _records(sf_client, f"SELECT Id FROM Event WHERE SystemModstamp >= {stamp}")
    assert len(changed) == before + 1 and event in {r["Id"] for r in changed}
    clock.advance(minutes=2)
    deleted = sf_client.Task.deleted(start, clock())
    assert [d["id"] for d in deleted["deletedRecords"]] == [task]
    assert event in sf_client.Event.updated(start, clock())["ids"]


def test_deleting_a_deal_deletes_its_activities_and_undelete_restores_them(
    sf_client: Salesforce
) -> None:
    deal = _one(sf_client, "SELECT Id FROM Opportunity WHERE IsWon = true ORDER BY Id LIMIT 1")
    mine = f"SELECT Id FROM Task WHERE WhatId = '{deal['Id']}'"
    tasks = {r["Id"] for r in _records(sf_client, mine)}
    events = {r["Id"] for r in _records(sf_client,
                                         f"SELECT Id FROM Event WHERE WhatId = '{deal['Id']}'")}
    assert tasks | events
    sf_client.Opportunity.delete(deal["Id"])
    assert _records(sf_client, mine) == []
    binned = {r["Id"] for r in _records(sf_client, mine.replace("Id FROM", "Id, IsDeleted FROM"),
                                        deleted=True)}
    assert binned == tasks
    soap_undelete(sf_client, [deal["Id"]])
    assert {r["Id"] for r in _records(sf_client, mine)} == tasks


def test_seeded_activities_belong_to_their_deals_and_their_time(tmp_path: Path) -> None:
    """A few per deal, more for won deals, each inside its deal's life and never later
    than the anchor; WhatId a deal, WhoId a contact of its account."""
    sandbox = start_sandbox(tmp_path / "seeded.db", n_opportunities=300, page_size=2000)
    try:
        sf = sandbox.client()
        deals = {r["Id"]: r for r in _records(
            sf, "SELECT Id, AccountId, IsClosed, IsWon, CreatedDate, CloseDate FROM Opportunity")}
        contacts = {r["Id"]: r["AccountId"]
                    for r in _records(sf, "SELECT Id, AccountId FROM Contact")}
        tasks = _records(sf, "SELECT Id, WhatId, WhoId, AccountId, CreatedDate, SystemModstamp, "
                             "Status, IsClosed, CompletedDateTime, TaskSubtype FROM Task")
        events = _records(sf, "SELECT Id, WhatId, WhoId, AccountId, CreatedDate, "
                              "StartDateTime, EndDateTime FROM Event")
        anchor = sandbox.sandbox.truth()["anchor"]
    finally:
        sandbox.stop()
    per_deal = Counter(r["WhatId"] for r in tasks + events)
    assert set(per_deal) == set(deals)  # every deal has activities
    won = [per_deal[i] for i, d in deals.items() if d["IsWon"]]
    lost = [per_deal[i] for i, d in deals.items() if d["IsClosed"] and not d["IsWon"]]
    assert sum(won) / len(won) > sum(lost) / len(lost) + 1
    for record in tasks + events:
        deal = deals[record["WhatId"]]
        assert record["AccountId"] == deal["AccountId"]
        assert record["WhoId"] is None or contacts[record["WhoId"]] == deal["AccountId"]
        happened = record.get("CompletedDateTime") or record.get("StartDateTime") \
            or record["CreatedDate"]
        assert deal["CreatedDate"][:16] <= happened[:16] <= anchor
        if deal["IsClosed"]:
            assert happened[:10] <= deal["CloseDate"] or (
                parse_datetime(happened) - parse_datetime(deal["CloseDate"] + "T00:00:00Z")
            ) < timedelta(days=1)
    kinds = Counter(t["TaskSubtype"] for t in tasks)
    assert kinds["Call"] and kinds["Email"] and kinds["Task"] and events
    assert all(t["IsClosed"] == (t["Status"] == "Completed") for t in tasks)
    assert any(not t["IsClosed"] for t in tasks)  # planned to-dos on open deals


def _dump(sandbox: SalesforceSandbox, names: tuple[str, ...]) -> dict[str, list[str]]:
    with sandbox.store.connection() as conn:
        return {name: [row[0] for row in conn.execute(
            f'SELECT data FROM "{sandbox.schema.require(name).table}" ORDER BY Id')]
            for name in names}


def test_activities_do_not_change_the_other_seeded_records(tmp_path: Path) -> None:
    """Activities draw from their own random stream: every other record, ids included, is
    what the same seed gave before they existed."""
    names = ("User", "Account", "Contact", "Lead", "Opportunity", "OpportunityLineItem")
    anchor = datetime(2026, 1, 5, tzinfo=UTC)
    dumps = []
    for index, with_activities in enumerate((True, False)):
        sandbox = SalesforceSandbox(str(tmp_path / f"{index}.db"))
        try:
            summary = seed(sandbox, 60, 11, anchor=anchor, activities=with_activities)
            assert (summary.counts["Task"] > 0) is with_activities
            dumps.append(_dump(sandbox, names))
        finally:
            sandbox.close()
    assert dumps[0] == dumps[1]
