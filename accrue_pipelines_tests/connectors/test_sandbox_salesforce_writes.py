"""Writes to the Salesforce sandbox through simple-salesforce, and what replication sees of
them: audit stamps, validation, collections, deletes, purges and undeletes."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
)

from accrue_pipelines_tests.connectors.test_sandbox_salesforce import (
    admin,
    all_records,
    clock_of,
    error_code,
    stamp,
)
from connectors.salesforce.sandbox import RunningSandbox
from connectors.salesforce.transport import soap_undelete

# -- writes ------------------------------------------------------------------


def test_single_record_lifecycle_moves_audit_stamps(sf_sandbox: RunningSandbox,
                                                    sf_client: Salesforce) -> None:
    created = sf_client.Account.create({"Name": "Initech", "Industry": "Technology",
                                        "NumberOfEmployees": 250, "AnnualRevenue": 5e7})
    assert created["success"] is True and created["errors"] == []
    record_id = created["id"]
    first = sf_client.Account.get(record_id)
    assert first["CreatedDate"] == first["LastModifiedDate"] == first["SystemModstamp"]
    assert first["OwnerId"] == first["CreatedById"] == sf_sandbox.sandbox.admin_user_id
    assert first["Revenue_Per_Employee__c"] == 200000.0 and first["IsDeleted"] is False
    history = [first["SystemModstamp"]]
    assert sf_client.Account.update(record_id, {"Website": "www.initech.example"}) == 204
    history.append(sf_client.Account.get(record_id)["SystemModstamp"])
    assert sf_client.Account.delete(record_id) == 204
    deleted = sf_client.query_all(f"SELECT Id, IsDeleted, SystemModstamp, LastModifiedDate "
                                  f"FROM Account WHERE Id = '{record_id}'",
                                  include_deleted=True)["records"][0]
    assert deleted["IsDeleted"] is True
    history.append(deleted["SystemModstamp"])
    assert soap_undelete(sf_client, [record_id]) == [
        {"id": record_id, "success": True, "errors": []}]
    restored = sf_client.Account.get(record_id)
    history.append(restored["SystemModstamp"])
    assert restored["Website"] == "www.initech.example" and restored["IsDeleted"] is False
    assert history == sorted(history) and len(set(history)) == 4
    assert restored["LastModifiedDate"] == restored["SystemModstamp"]
    again = soap_undelete(sf_client, [record_id])
    assert again[0]["success"] is False and again[0]["errors"][0]["statusCode"] == (
        "UNDELETE_FAILED")


def test_write_validation_and_derived_fields(sf_client: Salesforce) -> None:
    account = sf_client.query("SELECT Id FROM Account LIMIT 1")["records"][0]["Id"]
    cases = [
        ({"Name": "No stage", "CloseDate": "2030-01-01"}, "REQUIRED_FIELD_MISSING"),
        ({"Name": "x", "StageName": "Prospecting", "CloseDate": "2030-01-01", "IsWon": True},
         "INVALID_FIELD_FOR_INSERT_UPDATE"),
        ({"Name": "x", "StageName": "Prospecting", "CloseDate": "2030-01-01", "Bogus__c": 1},
         "INVALID_FIELD"),
        ({"Name": "x", "StageName": "Prospecting", "CloseDate": "2030-01-01", "Amount": "lots"},
         "JSON_PARSER_ERROR"),
        ({"Name": "x", "StageName": "Sleeping", "CloseDate": "2030-01-01"},
         "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
        # A lone surrogate (JSON's \ud800 escape) is a 400 as in Salesforce, not a 500.
        ({"Name": "bad \ud800 text", "StageName": "Prospecting", "CloseDate": "2030-01-01"},
         "JSON_PARSER_ERROR"),
        ({"Name": "x", "StageName": "Prospecting", "CloseDate": "2030-01-01",
          "AccountId": "001000000000000AAA"}, "INVALID_CROSS_REFERENCE_KEY"),
    ]
    for payload, code in cases:
        with pytest.raises(SalesforceMalformedRequest) as failure:
            sf_client.Opportunity.create(payload)
        assert error_code(failure.value) == code, payload
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf_client.Account.create({"Industry": "Retail"})
    assert failure.value.content[0]["fields"] == ["Name"]

    opportunity = sf_client.Opportunity.create({"Name": "Big deal", "AccountId": account,
                                                "StageName": "Negotiation/Review",
                                                "CloseDate": "2030-06-30"})["id"]
    record = sf_client.Opportunity.get(opportunity)
    assert (record["IsClosed"], record["IsWon"], record["Probability"]) == (False, False, 90)
    entry = sf_client.query("SELECT Id, UnitPrice FROM PricebookEntry WHERE IsActive = true "
                            "AND UnitPrice > 100 LIMIT 1")["records"][0]
    line = sf_client.OpportunityLineItem.create({
        "OpportunityId": opportunity, "PricebookEntryId": entry["Id"], "Quantity": 3,
        "UnitPrice": 100, "Discount": 10})["id"]
    line_record = sf_client.OpportunityLineItem.get(line)
    assert line_record["TotalPrice"] == 270.0 and line_record["ListPrice"] == entry["UnitPrice"]
    sf_client.OpportunityLineItem.create({"OpportunityId": opportunity,
                                          "PricebookEntryId": entry["Id"], "Quantity": 1})
    rolled = sf_client.Opportunity.get(opportunity)
    assert rolled["Amount"] == round(270.0 + entry["UnitPrice"], 2)
    assert rolled["HasOpportunityLineItem"] is True
    assert rolled["SystemModstamp"] > record["SystemModstamp"]
    sf_client.Opportunity.update(opportunity, {"StageName": "Closed Won"})
    won = sf_client.Opportunity.get(opportunity)
    assert (won["IsClosed"], won["IsWon"], won["Probability"], won["ForecastCategory"]) == (
        True, True, 100, "Closed")
    contact = sf_client.Contact.create({"FirstName": "Ada", "LastName": "Lovelace"})["id"]
    assert sf_client.Contact.get(contact)["Name"] == "Ada Lovelace"


def test_sobject_collections(sf_client: Salesforce) -> None:
    before = sf_client.query("SELECT COUNT() FROM Account")["totalSize"]
    records = [{"attributes": {"type": "Account"}, "Name": f"Batch {i:03d}"} for i in range(200)]
    created = sf_client.restful("composite/sobjects", method="POST",
                                json={"allOrNone": True, "records": records})
    assert len(created) == 200 and all(r["success"] and r["errors"] == [] for r in created)
    ids = [r["id"] for r in created]
    assert sf_client.query("SELECT COUNT() FROM Account")["totalSize"] == before + 200
    updates = [{"attributes": {"type": "Account"}, "Id": i, "Industry": "Energy"} for i in ids]
    updated = sf_client.restful("composite/sobjects", method="PATCH",
                                json={"allOrNone": False, "records": updates})
    assert [r["id"] for r in updated] == ids and all(r["success"] for r in updated)
    assert sf_client.query("SELECT COUNT() FROM Account WHERE Name LIKE 'Batch %' "
                           "AND Industry = 'Energy'")["totalSize"] == 200
    deleted = sf_client.restful("composite/sobjects", method="DELETE",
                                params={"ids": ",".join(ids), "allOrNone": "false"})
    assert [r["id"] for r in deleted] == ids and all(r["success"] for r in deleted)
    assert sf_client.query("SELECT COUNT() FROM Account")["totalSize"] == before
    too_many = records + [{"attributes": {"type": "Account"}, "Name": "One too many"}]
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf_client.restful("composite/sobjects", method="POST", json={"records": too_many})
    assert error_code(failure.value) == "EXCEEDED_ID_LIMIT"
    mixed = [{"attributes": {"type": "Account"}, "Name": "Good"},
             {"attributes": {"type": "Account"}, "Industry": "Bad"}]
    rolled_back = sf_client.restful("composite/sobjects", method="POST",
                                    json={"allOrNone": True, "records": mixed})
    assert rolled_back[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert rolled_back[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    partial = sf_client.restful("composite/sobjects", method="POST",
                                json={"allOrNone": False, "records": mixed})
    assert [r["success"] for r in partial] == [True, False]
    assert sf_client.query("SELECT COUNT() FROM Account")["totalSize"] == before + 1


# -- replication -------------------------------------------------------------


def test_updated_and_deleted_resources(sf_sandbox: RunningSandbox, sf_client: Salesforce) -> None:
    clock = clock_of(sf_sandbox)
    start = clock().replace(second=0, microsecond=0) - timedelta(minutes=1)
    new = sf_client.Account.create({"Name": "Replicated Co"})["id"]
    existing, doomed = (r["Id"] for r in sf_client.query(
        "SELECT Id FROM Account ORDER BY Id LIMIT 2")["records"])
    sf_client.Account.update(existing, {"Phone": "+1 555 0100"})
    sf_client.Account.delete(doomed)
    clock.advance(minutes=2)
    end = clock().astimezone(timezone(timedelta(hours=2)))  # any zone works
    updated = sf_client.Account.updated(start.astimezone(timezone(timedelta(hours=-7))), end)
    assert {new, existing} <= set(updated["ids"]) and doomed not in updated["ids"]
    latest = updated["latestDateCovered"]
    assert latest == end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:00.000+0000")
    in_window = all_records(sf_client, "SELECT Id FROM Account WHERE SystemModstamp >= "
                                       f"{start.strftime('%Y-%m-%dT%H:%M:%SZ')} AND "
                                       f"SystemModstamp < {latest.replace('+0000', 'Z')}")
    assert set(updated["ids"]) == {r["Id"] for r in in_window}
    deleted = sf_client.Account.deleted(start, end)
    assert [d["id"] for d in deleted["deletedRecords"]] == [doomed]
    assert start <= stamp(deleted["deletedRecords"][0]["deletedDate"]) < stamp(latest)
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf_client.Account.updated(end - timedelta(days=31), end)
    assert error_code(failure.value) == "INVALID_REPLICATION_DATE"


def test_purge_and_hard_delete(sf_sandbox: RunningSandbox, sf_client: Salesforce) -> None:
    clock = clock_of(sf_sandbox)
    start = clock() - timedelta(minutes=5)
    account = sf_client.query("SELECT Id FROM Account ORDER BY Id DESC LIMIT 1")[
        "records"][0]["Id"]
    children = {r["Id"] for r in sf_client.query(
        f"SELECT Id FROM Contact WHERE AccountId = '{account}'")["records"]}
    contact = sf_client.query(f"SELECT Id FROM Contact WHERE AccountId != '{account}' "
                              "ORDER BY Id DESC LIMIT 1")["records"][0]["Id"]
    sf_client.Account.delete(account)
    clock.advance(minutes=2)
    before = sf_client.Account.deleted(start, clock())
    assert account in {d["id"] for d in before["deletedRecords"]}
    # Deleting an account takes its contacts to the recycle bin with it.
    assert children and children <= {d["id"] for d in sf_client.Contact.deleted(
        start, clock())["deletedRecords"]}
    purge_time = clock()
    result = admin(sf_sandbox, "POST", "purge")
    assert result["purged"]["Account"] >= 1
    clock.advance(minutes=2)
    after = sf_client.Account.deleted(start, clock())
    assert after["deletedRecords"] == []
    assert stamp(after["earliestDateAvailable"]) >= purge_time.replace(microsecond=0)
    assert stamp(before["earliestDateAvailable"]) < purge_time
    gone = sf_client.query_all(f"SELECT Id FROM Account WHERE Id = '{account}'",
                               include_deleted=True)
    assert gone["totalSize"] == 0
    assert admin(sf_sandbox, "POST", "hard_delete", {"ids": [contact]})["deleted"] == [contact]
    assert sf_client.query_all(f"SELECT Id FROM Contact WHERE Id = '{contact}'",
                               include_deleted=True)["totalSize"] == 0
    assert contact not in {d["id"] for d in sf_client.Contact.deleted(
        start, clock())["deletedRecords"]}


def test_cascade_delete_and_undelete(sf_client: Salesforce) -> None:
    account = sf_client.query("SELECT AccountId FROM Opportunity WHERE AccountId != null "
                              "LIMIT 1")["records"][0]["AccountId"]
    opportunities = {r["Id"] for r in all_records(
        sf_client, f"SELECT Id FROM Opportunity WHERE AccountId = '{account}'")}
    lines = {r["Id"] for r in all_records(sf_client, "SELECT Id, OpportunityId FROM "
                                                     "OpportunityLineItem")
             if r["OpportunityId"] in opportunities}
    contacts = {r["Id"] for r in all_records(
        sf_client, f"SELECT Id FROM Contact WHERE AccountId = '{account}'")}
    sf_client.Account.delete(account)
    deleted = {r["Id"] for r in all_records(
        sf_client, "SELECT Id FROM OpportunityLineItem WHERE IsDeleted = true",
        include_deleted=True)}
    assert lines and lines <= deleted
    assert not contacts & {r["Id"] for r in all_records(sf_client, "SELECT Id FROM Contact")}
    child = next(iter(contacts))
    refused = soap_undelete(sf_client, [child])[0]
    assert refused["success"] is False
    assert soap_undelete(sf_client, [account])[0]["success"] is True
    assert {r["Id"] for r in all_records(
        sf_client, f"SELECT Id FROM Opportunity WHERE AccountId = '{account}'")} == opportunities
    assert contacts <= {r["Id"] for r in all_records(sf_client, "SELECT Id FROM Contact")}
    assert not lines & {r["Id"] for r in all_records(
        sf_client, "SELECT Id FROM OpportunityLineItem WHERE IsDeleted = true",
        include_deleted=True)}


def test_year_one_dates_keep_four_digits(sf_client: Salesforce) -> None:
    """0001-01-01 is served as Salesforce writes it, not as `1-01-01` (glibc's %Y)."""
    created = sf_client.Opportunity.create({"Name": "Ancient", "StageName": "Prospecting",
                                            "CloseDate": "0001-01-01"})
    record = sf_client.Opportunity.get(created["id"])
    assert record["CloseDate"] == "0001-01-01"
