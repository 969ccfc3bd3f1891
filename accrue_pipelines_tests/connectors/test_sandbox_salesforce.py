"""The Salesforce sandbox, exercised through the real simple-salesforce client."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from accrue_pipelines_tests.connectors.test_sandbox_kit_deal_model import assert_price_signal
from accrue_pipelines_tests.fixtures_sandbox import SandboxClock, login, start_sandbox
from connectors.salesforce.sandbox import RunningSandbox, SalesforceSandbox, seed
from connectors.salesforce.sandbox.ids import normalize_id, to_18
from connectors.salesforce.transport import sandbox_session, soap_undelete

FIELD_KEYS = {
    "name", "label", "type", "length", "precision", "scale", "nillable", "calculated", "custom",
    "compoundFieldName", "filterable", "sortable", "createable", "updateable",
    "defaultedOnCreate", "referenceTo", "relationshipName", "picklistValues",
}
SOBJECT_KEYS = {
    "name", "label", "labelPlural", "keyPrefix", "custom", "queryable", "replicateable",
    "retrieveable", "createable", "updateable", "deletable", "urls",
}


def admin(sandbox: RunningSandbox, method: str, path: str, body: Any = None) -> Any:
    response = requests.request(method, f"{sandbox.url}/_sandbox/{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json() if response.content else None


def error_code(error: Exception) -> str:
    content = error.content  # type: ignore[attr-defined]
    return content[0]["errorCode"]


def clock_of(sandbox: RunningSandbox) -> SandboxClock:
    clock = sandbox.sandbox.clock
    assert isinstance(clock, SandboxClock)
    return clock


def stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


def all_records(sf: Salesforce, soql: str, include_deleted: bool = False) -> list[dict[str, Any]]:
    return list(sf.query_all(soql, include_deleted=include_deleted)["records"])


# -- login and sessions ------------------------------------------------------


def test_password_login_points_client_at_sandbox(sf_sandbox: RunningSandbox,
                                                 sf_client: Salesforce) -> None:
    assert sf_client.sf_instance == f"127.0.0.1:{sf_sandbox.port}"
    assert sf_client.session_id.startswith(sf_sandbox.sandbox.org_id[:15] + "!")
    assert sf_client.is_sandbox() is True
    org = sf_client.query("SELECT Id, Name, IsSandbox FROM Organization")["records"][0]
    assert org["Id"] == sf_sandbox.sandbox.org_id and org["IsSandbox"] is True


@pytest.mark.parametrize("which", ["password", "security_token", "username"])
def test_bad_credentials_fail_with_invalid_login(sf_sandbox: RunningSandbox, which: str) -> None:
    credentials = {"username": sf_sandbox.username, "password": sf_sandbox.password,
                   "security_token": sf_sandbox.security_token}
    credentials[which] = credentials[which] + "x"
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        Salesforce(**credentials, session=sandbox_session(sf_sandbox.url))
    assert failure.value.code == "INVALID_LOGIN"
    assert "Invalid username, password, security token" in failure.value.auth_message


def test_session_id_access_and_unknown_bearer(sf_sandbox: RunningSandbox,
                                              sf_client: Salesforce) -> None:
    direct = Salesforce(session_id=sf_client.session_id, instance_url=sf_sandbox.url,
                        session=sandbox_session(sf_sandbox.url))
    assert direct.sf_instance == sf_client.sf_instance
    assert direct.query("SELECT COUNT() FROM Account")["totalSize"] == 24
    stranger = Salesforce(session_id="00D000000000001!not-a-session",
                          instance_url=f"https://127.0.0.1:{sf_sandbox.port}",
                          session=sandbox_session(sf_sandbox.url))
    with pytest.raises(SalesforceExpiredSession) as failure:
        stranger.query("SELECT Id FROM Account")
    assert failure.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_expired_sessions_are_renewed_by_password_clients(sf_sandbox: RunningSandbox,
                                                          sf_client: Salesforce) -> None:
    old_session = sf_client.session_id
    sf_client.query("SELECT Id FROM Account LIMIT 1")
    assert admin(sf_sandbox, "POST", "sessions/expire")["expired"] >= 1
    assert sf_client.query("SELECT COUNT() FROM Account")["totalSize"] == 24
    assert sf_client.session_id != old_session
    direct = Salesforce(session_id=old_session, instance_url=sf_sandbox.url,
                        session=sandbox_session(sf_sandbox.url))
    with pytest.raises(SalesforceExpiredSession):
        direct.query("SELECT Id FROM Account")
    # Sessions also lapse with time: two idle hours later the client logs in again.
    renewed = sf_client.session_id
    clock_of(sf_sandbox).advance(hours=2, minutes=1)
    assert sf_client.Account.describe()["name"] == "Account"
    assert sf_client.session_id != renewed


def test_rest_errors_are_salesforce_shaped(sf_sandbox: RunningSandbox,
                                           sf_client: Salesforce) -> None:
    base = f"{sf_sandbox.url}/services/data/v59.0"
    anonymous = requests.get(f"{base}/query/", params={"q": "SELECT Id FROM Account"}, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json() == [{"message": "Session expired or invalid",
                                 "errorCode": "INVALID_SESSION_ID"}]
    headers = {"Authorization": f"Bearer {sf_client.session_id}"}
    missing = requests.get(f"{base}/nothing/here", headers=headers, timeout=10)
    assert missing.status_code == 404 and missing.json()[0]["errorCode"] == "NOT_FOUND"
    ok = requests.get(f"{base}/limits/", headers=headers, timeout=10)
    assert ok.headers["Sforce-Limit-Info"].startswith("api-usage=")
    versions = requests.get(f"{sf_sandbox.url}/services/data/", timeout=10).json()
    assert {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"} in versions


# -- queries -----------------------------------------------------------------


def test_query_all_pages_match_count_without_duplicates(sf_client: Salesforce) -> None:
    count = sf_client.query("SELECT COUNT() FROM OpportunityLineItem")
    assert count["records"] == [] and count["totalSize"] > 150
    first = sf_client.query("SELECT Id FROM OpportunityLineItem")
    assert len(first["records"]) == 50 and first["done"] is False
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-50")
    records = all_records(sf_client, "SELECT Id, Quantity FROM OpportunityLineItem")
    ids = [r["Id"] for r in records]
    assert len(ids) == count["totalSize"] == len(set(ids))
    assert records[0]["attributes"] == {
        "type": "OpportunityLineItem",
        "url": f"/services/data/v59.0/sobjects/OpportunityLineItem/{ids[0]}"}


def test_query_more_by_url_and_by_locator(sf_client: Salesforce) -> None:
    first = sf_client.query("SELECT Id FROM Lead ORDER BY Id")
    second = sf_client.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    locator = first["nextRecordsUrl"].rsplit("/", 1)[-1]
    again = sf_client.query_more(locator)
    assert [r["Id"] for r in second["records"]] == [r["Id"] for r in again["records"]]
    assert first["records"][-1]["Id"] < second["records"][0]["Id"]
    assert second["totalSize"] == 60 and second["done"] is True
    assert "nextRecordsUrl" not in second


def test_batch_size_header_and_locator_expiry(sf_sandbox: RunningSandbox,
                                              sf_client: Salesforce) -> None:
    page = sf_client.query("SELECT Id FROM OpportunityLineItem",
                           headers={"Sforce-Query-Options": "batchSize=200"})
    assert len(page["records"]) == 200 and not page["done"]
    clock_of(sf_sandbox).advance(minutes=16)
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf_client.query_more(page["nextRecordsUrl"], identifier_is_url=True)
    assert error_code(failure.value) == "INVALID_QUERY_LOCATOR"


def test_query_all_includes_soft_deleted_rows(sf_client: Salesforce) -> None:
    victim = sf_client.query("SELECT Id FROM Contact ORDER BY Id LIMIT 1")["records"][0]["Id"]
    assert sf_client.Contact.delete(victim) == 204
    live = {r["Id"] for r in all_records(sf_client, "SELECT Id FROM Contact")}
    everything = {r["Id"]: r for r in all_records(sf_client, "SELECT Id, IsDeleted FROM Contact",
                                                  include_deleted=True)}
    assert victim not in live and everything[victim]["IsDeleted"] is True
    assert set(everything) - live == {victim}
    assert all(r["IsDeleted"] is False for i, r in everything.items() if i != victim)
    with pytest.raises(SalesforceResourceNotFound):
        sf_client.Contact.get(victim)


def test_datetime_literal_forms_and_half_open_windows(sf_client: Salesforce) -> None:
    records = all_records(sf_client, "SELECT Id, SystemModstamp FROM Opportunity")
    stamps = sorted(stamp(r["SystemModstamp"]) for r in records)
    boundary = stamps[len(stamps) // 2].replace(microsecond=0)
    expected = {r["Id"] for r in records if stamp(r["SystemModstamp"]) >= boundary}
    minus5 = boundary.astimezone(timezone(timedelta(hours=-5)))
    plus530 = boundary.astimezone(timezone(timedelta(hours=5, minutes=30)))
    forms = [
        boundary.strftime("%Y-%m-%dT%H:%M:%SZ"),
        boundary.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        boundary.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        boundary.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        boundary.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        minus5.strftime("%Y-%m-%dT%H:%M:%S-05:00"),
        plus530.strftime("%Y-%m-%dT%H:%M:%S.000+0530"),
    ]
    for literal in forms:
        got = all_records(sf_client,
                          f"SELECT Id FROM Opportunity WHERE SystemModstamp >= {literal} ")
        assert {r["Id"] for r in got} == expected, literal

    # [t0, t1) and [t1, t2) partition [t0, t2), with a record exactly on t1.
    exact = sorted(records, key=lambda r: r["SystemModstamp"])[len(records) // 3]
    t0 = stamps[0].strftime("%Y-%m-%dT%H:%M:%SZ")
    t1 = stamp(exact["SystemModstamp"]).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    t2 = (stamps[-1] + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00")

    def window(low: str, high: str) -> set[str]:
        soql = (f"SELECT Id FROM Opportunity WHERE SystemModstamp >= {low} "
                f"AND SystemModstamp < {high}")
        return {r["Id"] for r in all_records(sf_client, soql)}

    left, right, whole = window(t0, t1), window(t1, t2), window(t0, t2)
    assert left | right == whole == {r["Id"] for r in records}
    assert not left & right
    assert exact["Id"] in right


def test_where_operators_match_python_filtering(sf_client: Salesforce) -> None:
    rows = all_records(sf_client, "SELECT Id, Name, Amount, StageName, IsWon, CloseDate, "
                                  "LeadSource FROM Opportunity")

    def ids(soql: str) -> set[str]:
        return {r["Id"] for r in all_records(sf_client, soql)}

    assert ids("SELECT Id FROM Opportunity WHERE StageName IN ('Closed Won', 'closed lost') "
               "AND NOT Amount < 50000") == {
        r["Id"] for r in rows if r["StageName"].startswith("Closed") and r["Amount"] >= 50000}
    assert ids("SELECT Id FROM Opportunity WHERE (IsWon = true OR Amount > 200000.5) "
               "AND CloseDate <= 2999-12-31") == {
        r["Id"] for r in rows if r["IsWon"] or r["Amount"] > 200000.5}
    assert ids("SELECT Id FROM Opportunity WHERE LeadSource != 'Web'") == {
        r["Id"] for r in rows if r["LeadSource"] != "Web"}  # SOQL's != keeps nulls
    assert ids("SELECT Id FROM Opportunity WHERE LeadSource = null") == {
        r["Id"] for r in rows if r["LeadSource"] is None}
    assert ids("SELECT Id FROM Opportunity WHERE Name LIKE '%Platform%'") == {
        r["Id"] for r in rows if "platform" in r["Name"].lower()}
    assert ids("SELECT Id FROM Opportunity WHERE StageName NOT IN ('Closed Won')") == {
        r["Id"] for r in rows if r["StageName"] != "Closed Won"}
    today = datetime.now(UTC).date()
    recent = ids("SELECT Id FROM Opportunity WHERE CloseDate = LAST_N_DAYS:90")
    assert recent == {r["Id"] for r in rows
                      if today - timedelta(days=90) <= datetime.fromisoformat(
                          r["CloseDate"]).date() <= today}
    one = rows[0]["Id"]
    assert ids(f"SELECT Id FROM Opportunity WHERE Id = '{one[:15]}'") == {one}
    assert sf_client.Opportunity.get(one.lower())["Id"] == one  # 18-char ids ignore case


def test_order_by_limit_offset(sf_client: Salesforce) -> None:
    rows = all_records(sf_client, "SELECT Id, Amount, Name FROM Opportunity")
    top = sf_client.query("SELECT Id, Amount FROM Opportunity ORDER BY Amount DESC LIMIT 5")
    assert top["totalSize"] == 5 and top["done"] is True
    assert [r["Amount"] for r in top["records"]] == sorted(
        (r["Amount"] for r in rows), reverse=True)[:5]
    by_name = sorted(rows, key=lambda r: (r["Name"].lower(), r["Id"]))
    page = sf_client.query("SELECT Id FROM Opportunity ORDER BY Name ASC NULLS LAST "
                           "LIMIT 10 OFFSET 20")
    assert [r["Id"] for r in page["records"]] == [r["Id"] for r in by_name[20:30]]


@pytest.mark.parametrize(("soql", "code"), [
    ("SELEC Id FROM Account", "MALFORMED_QUERY"),
    ("SELECT Id FROM Account WHERE Name = 'x' AND Type = 'y' OR Industry = 'z'",
     "MALFORMED_QUERY"),
    ("SELECT Id FROM Account WHERE Name = 'unterminated", "MALFORMED_QUERY"),
    ("SELECT Id, Nmae FROM Account", "INVALID_FIELD"),
    ("SELECT Id FROM Account WHERE CreatedDate > 2024-01-01", "INVALID_FIELD"),
    ("SELECT Id FROM Account WHERE NumberOfEmployees > '5'", "INVALID_FIELD"),
    ("SELECT Id FROM Acount", "INVALID_TYPE"),
])
def test_bad_soql_is_rejected_like_salesforce(sf_client: Salesforce, soql: str,
                                              code: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf_client.query(soql)
    assert error_code(failure.value) == code
    assert "ERROR at Row:1:Column:" in failure.value.content[0]["message"]


# -- describe and custom fields ----------------------------------------------


def test_describe_has_every_key_on_every_field(sf_client: Salesforce) -> None:
    listing = sf_client.describe()
    assert listing["encoding"] == "UTF-8" and listing["maxBatchSize"] == 200
    names = {o["name"] for o in listing["sobjects"]}
    assert {"Account", "Contact", "Lead", "Opportunity", "OpportunityLineItem", "Product2",
            "Pricebook2", "PricebookEntry", "User", "Organization"} <= names
    for entry in listing["sobjects"]:
        assert set(entry) >= SOBJECT_KEYS, entry["name"]
        described = getattr(sf_client, entry["name"]).describe()
        assert described["keyPrefix"] == entry["keyPrefix"] and described["custom"] is False
        for fld in described["fields"]:
            assert set(fld) >= FIELD_KEYS, (entry["name"], fld["name"])
            assert isinstance(fld["referenceTo"], list)
            assert isinstance(fld["picklistValues"], list)
    account = {f["name"]: f for f in sf_client.Account.describe()["fields"]}
    assert account["BillingAddress"]["type"] == "address"
    for part in ("BillingStreet", "BillingCity", "BillingState", "BillingPostalCode",
                 "BillingCountry"):
        assert account[part]["compoundFieldName"] == "BillingAddress"
    assert account["Revenue_Per_Employee__c"]["calculated"] is True
    assert {"Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate",
            "LastModifiedById", "SystemModstamp", "OwnerId"} <= set(account)
    lines = {f["name"] for f in sf_client.OpportunityLineItem.describe()["fields"]}
    assert "OwnerId" not in lines and "TotalPrice" in lines
    meta = sf_client.Opportunity.metadata()
    assert meta["objectDescribe"]["name"] == "Opportunity" and len(meta["recentItems"]) == 5
    billing = sf_client.query("SELECT BillingAddress FROM Account LIMIT 1")["records"][0]
    assert set(billing["BillingAddress"]) >= {"street", "city", "state", "postalCode", "country"}


def test_custom_field_added_at_run_time(sf_sandbox: RunningSandbox, sf_client: Salesforce) -> None:
    spec = {"sobject": "Opportunity", "name": "Competitor__c", "type": "string",
            "label": "Competitor", "length": 255}
    assert admin(sf_sandbox, "POST", "fields", spec)["name"] == "Competitor__c"
    fields = {f["name"]: f for f in sf_client.Opportunity.describe()["fields"]}
    assert fields["Competitor__c"]["custom"] is True and fields["Competitor__c"]["length"] == 255
    target = sf_client.query("SELECT Id FROM Opportunity LIMIT 1")["records"][0]["Id"]
    sf_client.Opportunity.update(target, {"Competitor__c": "Globex"})
    found = sf_client.query("SELECT Id, Competitor__c FROM Opportunity "
                            "WHERE competitor__c = 'globex'")
    assert [(r["Id"], r["Competitor__c"]) for r in found["records"]] == [(target, "Globex")]
    assert sf_client.query("SELECT COUNT() FROM Opportunity WHERE Competitor__c = null")[
        "totalSize"] == 119
    requests.delete(f"{sf_sandbox.url}/_sandbox/fields/Opportunity/Competitor__c",
                    timeout=10).raise_for_status()
    assert "Competitor__c" not in {f["name"] for f in sf_client.Opportunity.describe()["fields"]}
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf_client.query("SELECT Competitor__c FROM Opportunity")
    assert error_code(failure.value) == "INVALID_FIELD"


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


# -- limits ------------------------------------------------------------------


def test_limits_api_usage_and_request_limit(sf_sandbox: RunningSandbox,
                                            sf_client: Salesforce) -> None:
    limits = sf_client.limits()
    assert limits["DailyApiRequests"]["Max"] == 100000
    usage = sf_client.api_usage["api-usage"]
    assert usage.total == 100000
    assert limits["DailyApiRequests"]["Remaining"] == usage.total - usage.used
    sf_client.query("SELECT Id FROM Account LIMIT 1")
    assert sf_client.api_usage["api-usage"].used == usage.used + 1
    admin(sf_sandbox, "POST", "config", {"api_daily_limit": usage.used + 2})
    sf_client.query("SELECT Id FROM Account LIMIT 1")
    with pytest.raises(SalesforceRefusedRequest) as failure:
        sf_client.query("SELECT Id FROM Account LIMIT 1")
    assert error_code(failure.value) == "REQUEST_LIMIT_EXCEEDED"
    clock_of(sf_sandbox).advance(days=1)  # a new day, a fresh allowance
    assert sf_client.query("SELECT COUNT() FROM Account")["totalSize"] == 24


# -- generator, persistence, large pages ---------------------------------------


def _dump(path: Path, n: int, random_seed: int) -> dict[str, list[tuple[str, str]]]:
    anchor = datetime(2025, 3, 1, tzinfo=UTC)
    sandbox = SalesforceSandbox(str(path))
    try:
        seed(sandbox, n, random_seed, anchor=anchor)
        with sandbox.store.connection() as conn:
            return {
                name: conn.execute(f'SELECT Id, data FROM "{obj.table}" ORDER BY Id').fetchall()
                for name, obj in sandbox.schema.objects.items()
            }
    finally:
        sandbox.close()


def test_generator_is_deterministic_per_seed(tmp_path: Path) -> None:
    first = _dump(tmp_path / "a.db", 300, 11)
    second = _dump(tmp_path / "b.db", 300, 11)
    other = _dump(tmp_path / "c.db", 300, 12)
    assert first == second
    assert first["Opportunity"] != other["Opportunity"]
    assert len(first["Opportunity"]) == 300 and len(first["Account"]) == 60
    anchor = "2025-03-01T00:00:00.000+0000"
    for name, rows in first.items():
        for _, data in rows:
            record = json.loads(data)
            assert record["CreatedDate"] <= record["LastModifiedDate"] <= record[
                "SystemModstamp"] < anchor or name in ("Organization", "User"), (name, record)


@pytest.fixture(scope="module")
def large_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    path = tmp_path_factory.mktemp("salesforce") / "large.db"
    sandbox = start_sandbox(path, seed=3, n_opportunities=2500, page_size=2000)
    try:
        yield sandbox
    finally:
        sandbox.stop()


def test_generated_outcomes_depend_on_price(large_sandbox: RunningSandbox) -> None:
    sf = login(large_sandbox)
    deals = {r["Id"]: r for r in all_records(
        sf, "SELECT Id, IsWon FROM Opportunity WHERE IsClosed = true")}
    listed: dict[str, float] = {}
    paid: dict[str, float] = {}
    for line in all_records(sf, "SELECT OpportunityId, Quantity, ListPrice, TotalPrice "
                                "FROM OpportunityLineItem"):
        key = line["OpportunityId"]
        listed[key] = listed.get(key, 0.0) + line["Quantity"] * line["ListPrice"]
        paid[key] = paid.get(key, 0.0) + line["TotalPrice"]
    ratios = [(paid[i] / listed[i], deal["IsWon"]) for i, deal in deals.items()]
    assert_price_signal(ratios)
    truth = requests.get(f"{large_sandbox.url}/_sandbox/truth", timeout=10).json()
    assert truth["realized"]["closed_deals"] == len(ratios)
    assert all(s["b"] > 0 for s in truth["segments"].values())


def test_a_full_2000_record_page(large_sandbox: RunningSandbox) -> None:
    sf = login(large_sandbox)
    page = sf.query("SELECT Id, Name, AccountId, Amount, StageName, CloseDate, IsWon, "
                    "CreatedDate, SystemModstamp FROM Opportunity")
    assert len(page["records"]) == 2000 and page["totalSize"] == 2500
    assert page["done"] is False
    rest = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True)
    assert len(rest["records"]) == 500 and rest["done"] is True


def test_state_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "persistent.db"
    first = start_sandbox(path, username="ops@example.test", password="pw-1",
                          security_token="TOKEN1")
    try:
        sf = login(first)
        kept = sf.Account.create({"Name": "Survivor Ltd"})["id"]
        counts = {t: sf.query(f"SELECT COUNT() FROM {t}")["totalSize"]
                  for t in ("Account", "Opportunity", "User")}
        admin(first, "POST", "config", {"api_daily_limit": 5000})
        admin(first, "POST", "fields", {"sobject": "Account", "name": "Tier__c",
                                        "type": "picklist", "picklistValues": ["Gold", "Silver"]})
        sf.Account.update(kept, {"Tier__c": "Gold"})
    finally:
        first.stop()
    second = start_sandbox(path, seed=None, n_opportunities=None)
    try:
        assert (second.username, second.password, second.security_token) == (
            "ops@example.test", "pw-1", "TOKEN1")
        sf = login(second)
        assert sf.Account.get(kept)["Tier__c"] == "Gold"
        assert {t: sf.query(f"SELECT COUNT() FROM {t}")["totalSize"] for t in counts} == counts
        assert sf.limits()["DailyApiRequests"]["Max"] == 5000
        user = sf.query("SELECT Username FROM User WHERE Username = 'ops@example.test'")
        assert user["totalSize"] == 1
    finally:
        second.stop()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_ids_are_real_salesforce_ids(sf_client: Salesforce) -> None:
    for table, prefix in (("Account", "001"), ("Contact", "003"), ("Lead", "00Q"),
                          ("Opportunity", "006"), ("OpportunityLineItem", "00k"),
                          ("Product2", "01t"), ("Pricebook2", "01s"),
                          ("PricebookEntry", "01u"), ("User", "005")):
        for record in sf_client.query(f"SELECT Id FROM {table} LIMIT 5")["records"]:
            record_id = record["Id"]
            assert len(record_id) == 18 and record_id.startswith(prefix)
            assert to_18(record_id[:15]) == record_id
            assert normalize_id(record_id.lower()) == record_id


def test_oauth_password_grant(sf_sandbox: RunningSandbox) -> None:
    sf = Salesforce(username=sf_sandbox.username,
                    password=sf_sandbox.password + sf_sandbox.security_token,
                    consumer_key="any-client-id", consumer_secret="any-secret",
                    session=sandbox_session(sf_sandbox.url))
    assert sf.sf_instance == f"127.0.0.1:{sf_sandbox.port}"
    assert sf.query("SELECT COUNT() FROM Opportunity")["totalSize"] == 120
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        Salesforce(username=sf_sandbox.username, password="wrong", consumer_key="id",
                   consumer_secret="secret", session=sandbox_session(sf_sandbox.url))
    assert failure.value.code == "invalid_grant"


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
