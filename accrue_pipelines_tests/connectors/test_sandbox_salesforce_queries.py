"""SOQL against the Salesforce sandbox through simple-salesforce: paging, windows, operators,
errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from accrue_pipelines_tests.connectors.test_sandbox_salesforce import (
    all_records,
    clock_of,
    error_code,
    stamp,
)
from connectors.salesforce.sandbox import RunningSandbox

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
