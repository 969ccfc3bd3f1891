"""Bulk API 2.0 reads for large windows: one query job, its CSV pages, REST's values.

Why: REST pages hold at most 2,000 records, one API call each; a Bulk 2.0 query job
answers a whole window with pages of 50,000 (three calls of overhead: create, poll,
delete). So initial loads and large gaps go through Bulk, small incremental windows
through REST (`bulk_threshold`, see `SalesforceConnector._read_any_window`).

Guarantees kept, as on the REST path:

* Checkpoint per result page. The state keeps the window start as its cursor and
  `bulk = {job, locator, end}`: a run that stops mid-job resumes at the page after the
  last one saved (the locator), and if the job has expired meanwhile (404: Salesforce
  keeps results for days, the sandbox until it restarts) it re-runs the window from its
  start — never from a later point, so nothing is skipped; re-read rows are harmless.
* A job that fails, is aborted or runs past `bulk_timeout_seconds` (it is aborted
  then) raises `BulkUnavailable`; the caller reads the same window over REST.
* Values: CSV text becomes exactly what the REST path yields for the same record —
  numbers as JSON would parse their text, `true`/`false` booleans, date-times in
  REST's `+0000` spelling, an empty field as None (Salesforce stores a blank text
  value as null, so CSV's missing null/empty distinction loses nothing), plus the
  `attributes` REST adds. `test_salesforce_bulk.py` compares both paths record by record.
* Deletes: the job is a `queryAll`, so soft-deleted rows arrive with `IsDeleted`,
  and the delete log (`getDeleted`) is replayed after the windows as before.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from connectors.base import Change, Checkpoint, ConnectorError
from connectors.salesforce.mapping import CURSOR_FIELD, soql_datetime

if TYPE_CHECKING:
    from connectors.salesforce.connector import SalesforceConnector

log = logging.getLogger(__name__)
T = TypeVar("T")

BULK_DEFAULTS: dict[str, Any] = {
    # Expected rows in a window from which Bulk is used: 10,000 rows are five REST pages
    # (five calls, no waiting); above it a job's fixed cost (three calls and its
    # processing time) is repaid, and the daily Bulk job allowance is not spent on
    # hourly trickles. None turns Bulk off; 0 uses it for every window.
    "bulk_threshold": 10_000,
    "bulk_page_records": 50_000,  # maxRecords per results page (simple-salesforce's default)
    "bulk_timeout_seconds": 900.0,  # a job still not complete by then is aborted
    "bulk_poll_max_seconds": 2.0,  # polling backs off from 0.1 s to this (as Airbyte does)
    # Result pages of at least this many records are parsed in a helper process
    # (bulk_parse.py); below it starting one costs more than it saves. None: never.
    "bulk_parse_min_records": 10_000,
}
_FINISHED = frozenset({"JobComplete", "Failed", "Aborted"})


class BulkUnavailable(Exception):
    """The job failed, was aborted or timed out: read the window over REST instead."""


def window_soql(sobject: str, fields: list[str], start: datetime, end: datetime) -> str:
    """The window's query (no ORDER BY: pages are followed by locator, not by stamp)."""
    return (f"SELECT {', '.join(fields)} FROM {sobject} "
            f"WHERE {CURSOR_FIELD} >= {soql_datetime(start)} "
            f"AND {CURSOR_FIELD} < {soql_datetime(end)}")


class BulkWindow:
    """Reads one window of one sObject through a Bulk API 2.0 `queryAll` job."""

    def __init__(self, connector: SalesforceConnector, object_name: str, sobject: str,
                 fields: list[str], state: Callable[[dict[str, Any] | None], dict[str, Any]]
                 ) -> None:
        self.connector = connector
        self.object_name = object_name
        self.sobject = sobject
        self.fields = fields
        self.state = state  # the checkpoint state for a bulk position (None: window done)
        self.types = {f["name"]: f["type"] for f in connector.describe(sobject)["fields"]}

    def _client(self) -> Any:
        return getattr(self.connector.sf.bulk2, self.sobject)._client  # noqa: SLF001

    def _call(self, fn: Callable[[Any], T]) -> T:
        """A Bulk call with the connector's retries; an expired session is renewed first
        (Bulk calls bypass simple-salesforce's own re-login)."""
        def attempt() -> T:
            try:
                return fn(self._client())
            except SalesforceExpiredSession:
                sf = self.connector.sf
                if getattr(sf, "_salesforce_login_partial", None) is not None:
                    sf._refresh_session()  # noqa: SLF001
                raise
        return self.connector._call(attempt)  # noqa: SLF001

    def read(self, start: datetime, end: datetime,
             resume: Mapping[str, Any] | None = None) -> Iterator[Change]:
        job_id, locator = self._job(start, end, resume)
        if not locator:
            self._wait(job_id)
        config = self.connector.config
        page_records = int(config["bulk_page_records"])
        version = str(config["api_version"])
        while True:
            def page(client: Any, at: str = locator) -> Any:
                return client.get_query_results(job_id, at, page_records)

            try:
                result = self._call(page)
            except SalesforceResourceNotFound:
                raise BulkUnavailable(f"job {job_id} expired mid-read") from None
            read = 0
            for change in self.connector.page_parser.changes(
                    result.pop("records"), int(result["number_of_records"]), self.object_name,
                    self.sobject, self.types, version):
                read += 1
                yield change
            if read != int(result["number_of_records"]):  # a page cut short: read it again
                raise ConnectorError(
                    f"Salesforce Bulk page of {self.sobject} held {read} records, "
                    f"its header said {result['number_of_records']}")
            locator = result["locator"]
            if not locator:
                break
            yield Checkpoint(self.state({"job": job_id, "locator": locator,
                                         "end": soql_datetime(end)}))
            self.connector._check_quota()  # noqa: SLF001
        with contextlib.suppress(SalesforceError, requests.RequestException, ValueError):
            self._client().delete_job(job_id, True)  # tidy up; results expire anyway

    def _job(self, start: datetime, end: datetime,
             resume: Mapping[str, Any] | None) -> tuple[str, str]:
        """(job id, locator): the resumed job where it still exists, else a new one."""
        if resume and resume.get("job"):
            job_id = str(resume["job"])
            try:
                info = self._call(lambda client: client.get_job(job_id, True))
            except SalesforceResourceNotFound:
                log.info("Bulk job %s of %s expired; re-reading its window from %s", job_id,
                         self.sobject, soql_datetime(start))
            else:
                if info.get("state") not in ("Failed", "Aborted"):
                    return job_id, str(resume.get("locator") or "")
        soql = window_soql(self.sobject, self.fields, start, end)
        try:
            created = self._call(lambda client: client.create_job("queryAll", soql))
        except SalesforceMalformedRequest as exc:
            raise BulkUnavailable(f"Salesforce refused the Bulk query: {exc.content!r}") from None
        return str(created["id"]), ""

    def _wait(self, job_id: str) -> None:
        """Poll until the job completes; raise BulkUnavailable when it cannot."""
        config = self.connector.config
        deadline = time.monotonic() + float(config["bulk_timeout_seconds"])
        delay = 0.1
        while True:
            info = self._call(lambda client: client.get_job(job_id, True))
            state = info.get("state")
            if state == "JobComplete":
                return
            if state in _FINISHED:
                raise BulkUnavailable(f"Bulk job {job_id} {state}: "
                                      f"{info.get('errorMessage') or 'no reason given'}")
            if time.monotonic() >= deadline:
                with contextlib.suppress(SalesforceError, requests.RequestException, ValueError):
                    self._client().abort_job(job_id, True)
                raise BulkUnavailable(f"Bulk job {job_id} still {state} after "
                                      f"{float(config['bulk_timeout_seconds']):.0f}s; aborted")
            time.sleep(delay)
            delay = min(delay * 2, float(config["bulk_poll_max_seconds"]))
