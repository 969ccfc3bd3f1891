"""Bulk API 2.0: the sandbox's query jobs, and the connector reading windows through them.

The sandbox side is driven through simple-salesforce's `bulk2` and plain requests on the
same session (https URLs, routed by the sandbox kit's transport adapter); the connector
side is compared record by record with its own REST path on the same org.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from connectors.base import Checkpoint, ConnectorError, Upsert
from connectors.common_model import COMMON_OBJECTS
from connectors.registry import create_connector
from connectors.salesforce.bulk_csv import converter, csv_records
from connectors.salesforce.sandbox import ApiError, RunningSandbox, running_sandbox
from connectors.salesforce.sandbox.bulk import DELIMITERS, LINE_ENDINGS

ACCOUNT_QUERY = ("SELECT Id, Name, AnnualRevenue, NumberOfEmployees, CreatedDate, IsDeleted "
                 "FROM Account")


@pytest.fixture
def org(tmp_path: Path) -> Iterator[RunningSandbox]:
    sandbox = running_sandbox(str(tmp_path / "bulk-org.db"), seed=11, n_opportunities=60)
    try:
        yield sandbox
    finally:
        sandbox.stop()


def _jobs_url(sf: Any) -> str:
    return f"https://{sf.sf_instance}/services/data/v{sf.sf_version}/jobs/query"


def _create(sf: Any, query: str, **options: str) -> Any:
    body = {"operation": "query", "query": query, "contentType": "CSV", **options}
    return sf.session.post(_jobs_url(sf), headers=sf.headers, data=json.dumps(body))


def _poll(sf: Any, job_id: str) -> dict[str, Any]:
    info: dict[str, Any] = sf.session.get(f"{_jobs_url(sf)}/{job_id}", headers=sf.headers).json()
    return info


def _complete(sf: Any, job_id: str) -> dict[str, Any]:
    """Poll until the job has finished writing its results (it does so in the background)."""
    for _ in range(500):
        info = _poll(sf, job_id)
        if info["state"] not in ("UploadComplete", "InProgress"):
            return info
        time.sleep(0.01)
    return info


def _results(sf: Any, job_id: str, **params: Any) -> Any:
    return sf.session.get(f"{_jobs_url(sf)}/{job_id}/results", headers=sf.headers, params=params)


def _connector(org: RunningSandbox, **config: Any) -> Any:
    secrets = {"username": org.username, "password": org.password,
               "security_token": org.security_token}
    return create_connector("salesforce", secrets, {"sandbox_url": org.url, **config})


def _upserts(changes: list[Any]) -> dict[str, Upsert]:
    return {c.source_id: c for c in changes if isinstance(c, Upsert)}


# -- the sandbox's endpoints ------------------------------------------------------------


def test_results_page_by_locator_with_record_counts_on_every_page(org: RunningSandbox) -> None:
    sf = org.client()
    job = _create(sf, ACCOUNT_QUERY).json()
    assert job["state"] == "UploadComplete"
    assert _complete(sf, job["id"])["state"] == "JobComplete"
    ids: list[str] = []
    locator, pages = None, 0
    while True:
        params: dict[str, Any] = {"maxRecords": 4}
        if locator:
            params["locator"] = locator
        page = _results(sf, job["id"], **params)
        assert page.status_code == 200
        rows = list(csv.reader(io.StringIO(page.text)))
        assert rows[0][:2] == ["Id", "Name"]  # a header on every page
        assert int(page.headers["Sforce-NumberOfRecords"]) == len(rows) - 1
        ids += [r[0] for r in rows[1:]]
        pages += 1
        locator = page.headers["Sforce-Locator"]
        if locator == "null":  # Salesforce's spelling of "no more pages"
            break
    rest = sorted(r["Id"] for r in sf.query_all("SELECT Id FROM Account")["records"])
    assert sorted(ids) == rest and len(ids) == len(set(ids))
    assert pages == -(-len(rest) // 4)
    assert _complete(sf, job["id"])["numberRecordsProcessed"] == len(rest)
    bad = _results(sf, job["id"], maxRecords=4, locator="not-a-locator")
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALIDLOCATOR"


@pytest.mark.parametrize("delimiter", list(DELIMITERS))
@pytest.mark.parametrize("line_ending", list(LINE_ENDINGS))
def test_every_delimiter_and_line_ending(org: RunningSandbox, delimiter: str,
                                         line_ending: str) -> None:
    sf = org.client()
    job = _create(sf, ACCOUNT_QUERY, columnDelimiter=delimiter, lineEnding=line_ending).json()
    _complete(sf, job["id"])
    text = _results(sf, job["id"]).content.decode()
    separator, ending = DELIMITERS[delimiter], LINE_ENDINGS[line_ending]
    assert text.split(ending, 1)[0] == separator.join(
        ["Id", "Name", "AnnualRevenue", "NumberOfEmployees", "CreatedDate", "IsDeleted"])
    if line_ending == "LF":
        assert "\r\n" not in text
    else:
        assert text.count("\r\n") == text.count("\n")
    types = {"AnnualRevenue": "currency", "IsDeleted": "boolean", "CreatedDate": "datetime"}
    records = list(csv_records(text, "Account", types, "59.0", delimiter=separator))
    assert records and all(r["IsDeleted"] is False for r in records)
    assert all(r["CreatedDate"].endswith("+0000") for r in records)


def test_a_job_is_the_org_as_it_was_when_created(org: RunningSandbox) -> None:
    sf = org.client()
    job = _create(sf, "SELECT Id, Name FROM Account").json()
    first = sf.query("SELECT Id, Name FROM Account ORDER BY Id LIMIT 1")["records"][0]
    sf.Account.update(first["Id"], {"Name": "Renamed after the job"})
    sf.Account.create({"Name": "Created after the job"})
    _complete(sf, job["id"])
    rows = list(csv.DictReader(io.StringIO(_results(sf, job["id"]).text)))
    names = {r["Id"]: r["Name"] for r in rows}
    assert names[first["Id"]] == first["Name"]
    assert "Created after the job" not in names.values()
    assert len(rows) == sf.query("SELECT COUNT() FROM Account")["totalSize"] - 1


def test_compound_fields_are_refused_and_their_components_are_not(org: RunningSandbox) -> None:
    sf = org.client()
    refused = _create(sf, "SELECT Id, BillingAddress FROM Account")
    assert refused.status_code == 400
    assert refused.json()[0] == {"message": "Selecting compound data not supported in Bulk "
                                            "Query", "errorCode": "FUNCTIONALITY_NOT_ENABLED"}
    assert _create(sf, "SELECT Id, BillingCity, BillingCountry FROM Account").status_code == 200
    for bad in ("SELECT COUNT() FROM Account", "SELECT Id FROM Account OFFSET 5"):
        assert _create(sf, bad).status_code == 400
    with pytest.raises(SalesforceMalformedRequest):
        list(sf.bulk2.Account.query("SELECT Id, ShippingAddress FROM Account", wait=0))


def test_abort_fail_and_stuck_jobs(org: RunningSandbox) -> None:
    sf = org.client()
    org.sandbox.update_config({"bulk_in_progress_polls": 2})
    job = _create(sf, ACCOUNT_QUERY).json()
    assert _poll(sf, job["id"])["state"] == "InProgress"
    assert _results(sf, job["id"]).status_code == 400  # not before it completes
    url = f"{_jobs_url(sf)}/{job['id']}"
    aborted = sf.session.patch(url, headers=sf.headers, data=json.dumps({"state": "Aborted"}))
    assert aborted.json()["state"] == "Aborted"
    assert _results(sf, job["id"]).json()[0]["errorCode"] == "INVALIDJOBSTATE"
    assert sf.session.delete(url, headers=sf.headers).status_code == 204
    assert sf.session.get(url, headers=sf.headers).status_code == 404

    org.sandbox.update_config({"bulk_in_progress_polls": 0, "bulk_fault": "fail"})
    failed = _complete(sf, _create(sf, ACCOUNT_QUERY).json()["id"])
    assert failed["state"] == "Failed" and "errorMessage" in failed
    org.sandbox.update_config({"bulk_fault": "abort"})
    assert _complete(sf, _create(sf, ACCOUNT_QUERY).json()["id"])["state"] == "Aborted"
    org.sandbox.update_config({"bulk_fault": "stuck"})
    stuck = _create(sf, ACCOUNT_QUERY).json()["id"]
    assert {_poll(sf, stuck)["state"] for _ in range(5)} == {"InProgress"}
    with pytest.raises(ApiError, match="bulk_fault"):
        org.sandbox.update_config({"bulk_fault": "explode"})


def test_simple_salesforce_bulk2_works_unchanged(org: RunningSandbox, tmp_path: Path) -> None:
    sf = org.client()
    pages = list(sf.bulk2.Lead.query("SELECT Id, LastName FROM Lead", max_records=7, wait=0))
    leads = [row for page in pages for row in list(csv.DictReader(io.StringIO(page)))]
    assert len(pages) > 1
    assert len(leads) == sf.query("SELECT COUNT() FROM Lead")["totalSize"]
    files = sf.bulk2.Lead.download("SELECT Id FROM Lead", str(tmp_path), max_records=7, wait=0)
    assert sum(f["number_of_records"] for f in files) == len(leads)


def test_csv_values_read_as_rest_spells_them() -> None:
    assert converter("int")("42") == 42 and isinstance(converter("int")("42"), int)
    assert converter("currency")("1000.0") == 1000.0
    assert isinstance(converter("currency")("1000.0"), float)
    assert converter("double")("-3") == -3 and isinstance(converter("double")("-3"), int)
    assert converter("boolean")("false") is False and converter("boolean")("true") is True
    assert converter("boolean")("maybe") == "maybe"  # left for the mapping to quarantine
    assert converter("datetime")("2024-01-02T03:04:05.000Z") == "2024-01-02T03:04:05.000+0000"
    assert converter("string")("") is None and converter("date")("2024-01-02") == "2024-01-02"
    text = 'Id,Name\n001A,"Smith, ""Jr""\nline two"\n'
    record = next(csv_records(text, "Account", {}, "59.0"))
    assert record["Name"] == 'Smith, "Jr"\nline two'
    assert record["attributes"] == {"type": "Account",
                                    "url": "/services/data/v59.0/sobjects/Account/001A"}
    with pytest.raises(ConnectorError, match="a row of 1 fields under a header of 2"):
        list(csv_records("Id,Name\n001A,Acme\n001B", "Account", {}, "59.0"))


# -- the connector ---------------------------------------------------------------------


def test_bulk_and_rest_yield_the_same_records(org: RunningSandbox) -> None:
    sf = org.client()
    lead = sf.query("SELECT Id FROM Lead LIMIT 1")["records"][0]["Id"]
    sf.Lead.delete(lead)  # a soft-deleted row: queryAll brings it on both paths
    account = sf.query("SELECT Id FROM Account LIMIT 1")["records"][0]["Id"]
    sf.Account.update(account, {"Website": "", "Description": 'a "quoted", multi\nline text'})
    for name in COMMON_OBJECTS:
        before = org.sandbox.bulk.created
        with _connector(org, bulk_threshold=0, bulk_page_records=17) as bulk:
            by_bulk = _upserts(list(bulk.read(name, None)))
        assert org.sandbox.bulk.created > before, name
        with _connector(org, bulk_threshold=None) as rest:
            by_rest = _upserts(list(rest.read(name, None)))
        assert by_bulk.keys() == by_rest.keys(), name
        for source_id, upsert in by_rest.items():
            assert by_bulk[source_id] == upsert, (name, source_id)
    assert by_rest  # activities were read
    with _connector(org, bulk_threshold=0) as bulk:
        leads = _upserts(list(bulk.read("lead", None)))
    assert leads[lead].is_deleted


def test_threshold_chooses_bulk_for_large_gaps_and_rest_for_small_ones(
        org: RunningSandbox) -> None:
    count = org.client().query("SELECT COUNT() FROM Opportunity")["totalSize"]
    before = org.sandbox.bulk.created
    with _connector(org, bulk_threshold=count + 1) as connector:
        changes = list(connector.read("opportunity", None))
    assert org.sandbox.bulk.created == before  # below the threshold: REST
    with _connector(org, bulk_threshold=count) as connector:
        assert _upserts(list(connector.read("opportunity", None))).keys() == _upserts(
            changes).keys()
    assert org.sandbox.bulk.created == before + 1  # at the threshold: one job for the gap
    state = [c for c in changes if isinstance(c, Checkpoint)][-1].state
    sf = org.client()
    changed = sf.query("SELECT Id FROM Opportunity LIMIT 1")["records"][0]["Id"]
    sf.Opportunity.update(changed, {"Description": "a small change"})
    with _connector(org, bulk_threshold=count) as connector:
        incremental = _upserts(list(connector.read("opportunity", state)))
    assert changed in incremental
    assert org.sandbox.bulk.created == before + 1  # the small incremental stayed on REST


@pytest.mark.parametrize("fault", ["fail", "abort", "stuck"])
def test_a_failed_aborted_or_timed_out_job_falls_back_to_rest(org: RunningSandbox,
                                                              fault: str) -> None:
    with _connector(org, bulk_threshold=None) as rest:
        expected = _upserts(list(rest.read("opportunity_line", None)))
    org.sandbox.update_config({"bulk_fault": fault})
    before = org.sandbox.bulk.created
    with _connector(org, bulk_threshold=0, bulk_timeout_seconds=0.3,
                    bulk_poll_max_seconds=0.05) as connector:
        changes = list(connector.read("opportunity_line", None))
    assert org.sandbox.bulk.created == before + 1
    assert _upserts(changes) == expected  # the whole window, over REST
    assert all("bulk" not in c.state for c in changes if isinstance(c, Checkpoint))
    if fault == "stuck":  # timed out: the connector aborted the job it gave up on
        job = org.sandbox.bulk.get(next(reversed(org.sandbox.bulk._jobs)))  # noqa: SLF001
        assert job.state == "Aborted"


def _crash_after_checkpoint(org: RunningSandbox, object_name: str, n: int,
                            **config: Any) -> tuple[list[Upsert], dict[str, Any]]:
    """Read until the n-th checkpoint, then stop as a killed sync would: what was saved."""
    saved: list[Upsert] = []
    pending: list[Upsert] = []
    with _connector(org, **config) as connector:
        for change in connector.read(object_name, None):
            if isinstance(change, Upsert):
                pending.append(change)
            elif isinstance(change, Checkpoint):
                saved += pending
                pending = []
                n -= 1
                if n == 0:
                    return saved, dict(change.state)
    raise AssertionError("the read ended before the crash point")


def test_a_crash_between_pages_resumes_at_the_next_page(org: RunningSandbox) -> None:
    config = {"bulk_threshold": 0, "bulk_page_records": 20}
    with _connector(org, bulk_threshold=None) as rest:
        expected = _upserts(list(rest.read("opportunity_line", None)))
    saved, state = _crash_after_checkpoint(org, "opportunity_line", 3, **config)
    assert state["bulk"]["locator"] and state["bulk"]["job"]
    jobs = org.sandbox.bulk.created
    with _connector(org, **config) as connector:
        resumed = [c for c in connector.read("opportunity_line", state) if isinstance(c, Upsert)]
    # The saved job again, from the saved page; one new job for the (empty) rest of the gap
    # since the crashed job's window ended (threshold 0: every gap goes through Bulk).
    assert org.sandbox.bulk.created == jobs + 1
    ids = [u.source_id for u in saved + resumed]
    assert len(ids) == len(set(ids))  # no page read twice
    assert {u.source_id: u for u in saved + resumed} == expected  # none lost


def test_a_crash_resumes_by_rereading_the_window_when_the_job_expired(
        org: RunningSandbox) -> None:
    config = {"bulk_threshold": 0, "bulk_page_records": 20}
    with _connector(org, bulk_threshold=None) as rest:
        expected = _upserts(list(rest.read("opportunity_line", None)))
    saved, state = _crash_after_checkpoint(org, "opportunity_line", 2, **config)
    assert org.sandbox.bulk.expire_all() >= 1
    jobs = org.sandbox.bulk.created
    with _connector(org, **config) as connector:
        resumed = _upserts(list(connector.read("opportunity_line", state)))
    assert org.sandbox.bulk.created == jobs + 2  # the same window again, then the rest
    assert resumed == expected  # the whole window again: nothing skipped
    assert set(u.source_id for u in saved) <= set(resumed)


def test_a_write_committed_late_after_the_snapshot_is_read_when_the_job_resumes(
        org: RunningSandbox) -> None:
    """A resumed job serves its old snapshot: the rest of the gap restarts a lookback before
    the job's window end, so a write that committed after the snapshot with a stamp inside
    the window (a late commit) is still read, however long after the job the sync resumes."""
    config = {"bulk_threshold": 0, "bulk_page_records": 20}
    saved, state = _crash_after_checkpoint(org, "opportunity_line", 2, **config)
    line = saved[0].source_id
    org.sandbox.write_delay = lambda: timedelta(minutes=3)  # its stamp: 3 minutes ago
    try:
        org.sandbox.update("OpportunityLineItem", line, {"Description": "committed late"})
    finally:
        org.sandbox.write_delay = None
    with _connector(org, **config) as connector:
        resumed = _upserts(list(connector.read("opportunity_line", state)))
    assert resumed[line].raw["Description"] == "committed late"
