"""Bulk API 2.0 query jobs: `jobs/query`, their state, and their CSV results.

What clients depend on, as Salesforce does it:

* A job is created with `{"operation": "query"|"queryAll", "query", "columnDelimiter",
  "lineEnding", "contentType": "CSV"}` and answers `UploadComplete`; polling `GET
  jobs/query/{id}` shows `InProgress` and then `JobComplete` (or `Failed` / `Aborted`).
* Results come page by page from `GET jobs/query/{id}/results?maxRecords=&locator=`, a
  header row on every page, with `Sforce-NumberOfRecords` on every page and
  `Sforce-Locator` naming the next page — the string `null` on the last one.
* The results are the org as it was when the job was created: the whole result is
  rendered in one read transaction begun before the create call answers (WAL gives it a
  stable snapshot), in the background while the job shows `InProgress`, into a temporary
  file, so later writes never change a job's pages, and a page is a slice of that file
  (an offset per record).
* Compound fields (address, geolocation) cannot be selected: Salesforce refuses them
  with `Selecting compound data not supported in Bulk Query`; read their components.
  Nor can a Bulk query count or skip (`COUNT()`, `OFFSET`).
* Nulls are empty fields. CSV cannot tell null from an empty string, and need not:
  Salesforce stores a blank text value as null (so does this sandbox's writer), so an
  empty field always means null. Date-times are written `2024-01-01T00:00:00.000Z`.

Fault switches (`SandboxConfig.bulk_fault`, every `bulk_fault_every`-th job) make a job
fail, stay `InProgress` for ever (a time-out for the client), or be aborted.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import threading
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from .errors import ApiError, not_found
from .ids import make_id
from .schema import NUMBER_TYPES, FieldDef
from .soql_compiler import compile_query
from .values import format_datetime

if TYPE_CHECKING:
    from .sandbox import SalesforceSandbox

JOB_PREFIX = "750"
DELIMITERS = {"COMMA": ",", "SEMICOLON": ";", "TAB": "\t", "PIPE": "|", "CARET": "^",
              "BACKQUOTE": "`"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
MAX_JOBS = 200  # jobs kept (results included); the oldest are deleted beyond this
DEFAULT_MAX_RECORDS = 100_000  # a page when the client names no maxRecords
_FETCH_CHUNK = 2_000
COMPOUND_TYPES = frozenset({"address", "location"})


@dataclass
class BulkJob:
    """One query job and its frozen result."""

    id: str
    operation: str
    sobject: str
    query: str
    delimiter: str
    line_ending: str
    created_by: str
    created_date: str
    fault: str = ""
    state: str = "UploadComplete"
    polls: int = 0
    error_message: str | None = None
    header: str = ""
    body: IO[bytes] | None = None
    offsets: array[int] = field(default_factory=lambda: array("q"))
    lock: threading.Lock = field(default_factory=threading.Lock)
    rendered: threading.Event = field(default_factory=threading.Event)  # results are ready
    render_error: str | None = None

    @property
    def records(self) -> int:
        return max(len(self.offsets) - 1, 0)

    def info(self, version: str) -> dict[str, Any]:
        """The job document `GET jobs/query/{id}` returns."""
        body: dict[str, Any] = {
            "id": self.id, "operation": self.operation, "object": self.sobject,
            "createdById": self.created_by, "createdDate": self.created_date,
            "systemModstamp": self.created_date, "state": self.state,
            "concurrencyMode": "Parallel", "contentType": "CSV",
            "apiVersion": float(version), "jobType": "V2Query",
            "lineEnding": self.line_ending, "columnDelimiter": self.delimiter,
            "numberRecordsProcessed": self.records if self.state == "JobComplete" else 0,
            "retries": 0, "totalProcessingTime": 0,
        }
        if self.error_message:
            body["errorMessage"] = self.error_message
        return body

    def discard(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None


def _csv_sql(definition: FieldDef) -> str:
    """SQL giving a field's CSV text (NULL: an empty field) straight from the stored record.

    Numbers keep the JSON spelling REST sends (`->`), booleans are `true`/`false`, and
    date-times are Bulk's `…Z` for REST's `…+0000`; SQLite does the work, row by row in C.
    """
    name = definition.name
    if name == "Id":
        return "t.Id"
    if name == "IsDeleted":
        return "CASE WHEN t.IsDeleted THEN 'true' ELSE 'false' END"
    value = "t.SystemModstamp" if name == "SystemModstamp" else f"json_extract(t.data, '$.{name}')"
    if definition.type == "boolean":
        return (f"CASE json_type(t.data, '$.{name}') WHEN 'true' THEN 'true' "
                "WHEN 'false' THEN 'false' END")
    if definition.type in NUMBER_TYPES:
        return f"t.data -> '$.{name}'"
    if definition.type == "datetime":
        return f"replace({value}, '+0000', 'Z')"
    return value


class BulkJobs:
    """The org's Bulk API 2.0 query jobs (in memory: they do not survive a restart, as
    results expire on Salesforce too; a client then sees 404 and runs the query again)."""

    def __init__(self, sandbox: SalesforceSandbox) -> None:
        self.sandbox = sandbox
        self._jobs: OrderedDict[str, BulkJob] = OrderedDict()
        self._lock = threading.Lock()
        self._created = 0

    @property
    def created(self) -> int:
        """Jobs created since the sandbox started (tests ask whether Bulk was used)."""
        return self._created

    # -- create ---------------------------------------------------------------

    def create(self, body: Any, *, user_id: str, version: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Send a JSON object describing the job")
        operation = body.get("operation")
        if operation not in ("query", "queryAll"):
            raise ApiError(400, "INVALIDJOB", f"Invalid operation: {operation!r}; use query "
                                              "or queryAll")
        delimiter = body.get("columnDelimiter") or "COMMA"
        line_ending = body.get("lineEnding") or "LF"
        if delimiter not in DELIMITERS:
            raise ApiError(400, "INVALIDJOB", f"Invalid columnDelimiter: {delimiter!r}; one of "
                                              f"{', '.join(DELIMITERS)}")
        if line_ending not in LINE_ENDINGS:
            raise ApiError(400, "INVALIDJOB", f"Invalid lineEnding: {line_ending!r}; LF or CRLF")
        if body.get("contentType", "CSV") != "CSV":
            raise ApiError(400, "INVALIDJOB", "Only CSV is supported for query jobs")
        soql = body.get("query")
        if not isinstance(soql, str) or not soql.strip():
            raise ApiError(400, "INVALIDJOB", "A query job needs a query")
        compiled = compile_query(soql.strip(), self.sandbox.schema.objects, self.sandbox.now())
        if compiled.count_only or compiled.offset:
            raise ApiError(400, "API_ERROR", "Bulk API 2.0 queries do not support COUNT() or "
                                             "OFFSET")
        if any(f.type in COMPOUND_TYPES for f in compiled.fields):
            raise ApiError(400, "FUNCTIONALITY_NOT_ENABLED",
                           "Selecting compound data not supported in Bulk Query")
        with self._lock:
            self._created += 1
            sequence = self._created
        config = self.sandbox.config
        fault = config.bulk_fault if config.bulk_fault and (
            sequence % config.bulk_fault_every == 0) else ""
        job = BulkJob(make_id(JOB_PREFIX, sequence), operation, compiled.obj.name, soql,
                      delimiter, line_ending, user_id, format_datetime(self.sandbox.now()),
                      fault=fault)
        # The results are written in the background, as Salesforce processes a job after
        # answering; the snapshot is taken before this call returns.
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > MAX_JOBS:
                self._jobs.popitem(last=False)[1].discard()
        snapshot = threading.Event()
        threading.Thread(target=self._render, args=(job, compiled, operation == "queryAll",
                                                    snapshot),
                         name=f"bulk-{job.id}", daemon=True).start()
        snapshot.wait()
        return job.info(version)

    def _render(self, job: BulkJob, compiled: Any, include_deleted: bool,
                snapshot: threading.Event) -> None:
        """Write the whole result in one read transaction (WAL keeps it the org as it was
        when the transaction's first read ran: `snapshot` is set right after it)."""
        try:
            self._write_results(job, compiled, include_deleted, snapshot)
        except Exception as error:  # the job fails, as a Salesforce job does, with a reason
            job.render_error = f"{type(error).__name__}: {error}"
        finally:
            snapshot.set()
            job.rendered.set()

    def _write_results(self, job: BulkJob, compiled: Any, include_deleted: bool,
                       snapshot: threading.Event) -> None:
        separator = DELIMITERS[job.delimiter]
        ending = LINE_ENDINGS[job.line_ending]
        fields = compiled.fields
        text = io.StringIO()
        writer = csv.writer(text, delimiter=separator, lineterminator=ending)
        writer.writerow([f.name for f in fields])
        job.header = text.getvalue()
        body: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - kept open with the job
        offsets = array("q", [0])
        table = compiled.obj.table
        where = compiled.where if include_deleted else f"({compiled.where}) AND IsDeleted = 0"
        sql = f'SELECT Id FROM "{table}" WHERE {where} ORDER BY {compiled.order_by}'
        if compiled.limit is not None:
            sql += f" LIMIT {int(compiled.limit)}"
        values = (f"SELECT {', '.join(_csv_sql(f) for f in fields)} FROM json_each(?) AS wanted "
                  f'JOIN "{table}" AS t ON t.Id = wanted.value ORDER BY wanted.key')
        with self.sandbox.store.connection() as conn:
            conn.execute("BEGIN")
            try:
                ids = [row[0] for row in conn.execute(sql, list(compiled.params))]
                snapshot.set()
                for start in range(0, len(ids), _FETCH_CHUNK):
                    if job.state == "Aborted" or job.id not in self._jobs:
                        break  # aborted or deleted meanwhile: nobody will read it
                    chunk = json.dumps(ids[start:start + _FETCH_CHUNK])
                    for row in conn.execute(values, (chunk,)):
                        text.seek(0)
                        text.truncate()
                        writer.writerow(row)
                        offsets.append(offsets[-1] + body.write(text.getvalue().encode()))
            finally:
                conn.execute("COMMIT")
        with job.lock:
            if job.state in ("Aborted", "Failed") or job.id not in self._jobs:
                body.close()
                return
            job.body = body
            job.offsets = offsets

    # -- state ----------------------------------------------------------------

    def get(self, job_id: str) -> BulkJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise not_found("Could not find job: " + job_id)
        return job

    def poll(self, job_id: str, version: str) -> dict[str, Any]:
        """The job's state; a job is processed after `bulk_in_progress_polls` polls."""
        job = self.get(job_id)
        with job.lock:
            if job.state in ("UploadComplete", "InProgress") and not job.rendered.is_set():
                job.state = "InProgress"  # still writing its results
            elif job.state in ("UploadComplete", "InProgress") and job.render_error:
                job.state = "Failed"
                job.error_message = job.render_error
            elif job.state in ("UploadComplete", "InProgress"):
                job.polls += 1
                if job.fault == "stuck" or job.polls <= self.sandbox.config.bulk_in_progress_polls:
                    job.state = "InProgress"
                elif job.fault == "fail":
                    job.state = "Failed"
                    job.error_message = "InternalServerError : the query job failed (injected)"
                    job.discard()
                elif job.fault == "abort":
                    job.state = "Aborted"
                    job.discard()
                else:
                    job.state = "JobComplete"
            return job.info(version)

    def abort(self, job_id: str, body: Any, version: str) -> dict[str, Any]:
        if not isinstance(body, dict) or body.get("state") != "Aborted":
            raise ApiError(400, "INVALIDJOBSTATE", "A query job can only be set to Aborted")
        job = self.get(job_id)
        with job.lock:
            if job.state in ("JobComplete", "Failed", "Aborted"):
                raise ApiError(400, "INVALIDJOBSTATE",
                               f"Cannot abort a job in state {job.state}")
            job.state = "Aborted"
            job.discard()
            return job.info(version)

    def delete(self, job_id: str) -> None:
        job = self.get(job_id)
        with job.lock:
            if job.state in ("UploadComplete", "InProgress"):
                raise ApiError(400, "INVALIDJOBSTATE",
                               "Abort the job before deleting it: it is still in progress")
        with self._lock:
            self._jobs.pop(job_id, None)
        job.discard()

    def expire_all(self) -> int:
        """Forget every job (as when Salesforce's results expire); returns how many."""
        with self._lock:
            jobs = list(self._jobs.values())
            self._jobs.clear()
        for job in jobs:
            job.discard()
        return len(jobs)

    # -- results --------------------------------------------------------------

    def results(self, job_id: str, max_records: str | None,
                locator: str | None) -> tuple[bytes, dict[str, str]]:
        """One page of CSV and its headers (`Sforce-Locator`, `Sforce-NumberOfRecords`)."""
        job = self.get(job_id)
        try:
            size = int(max_records) if max_records else DEFAULT_MAX_RECORDS
        except ValueError:
            size = 0
        if size < 1:
            raise ApiError(400, "INVALIDPARAMETER", f"Invalid maxRecords: {max_records!r}")
        with job.lock:
            if job.state != "JobComplete" or job.body is None:
                raise ApiError(400, "INVALIDJOBSTATE",
                               f"Results are only available for a completed job; the job "
                               f"is {job.state}")
            start = _parse_locator(locator, job.records)
            end = min(start + size, job.records)
            job.body.seek(job.offsets[start])
            data = job.body.read(job.offsets[end] - job.offsets[start])
        next_locator = _locator(end) if end < job.records else "null"
        headers = {"Sforce-Locator": next_locator, "Sforce-NumberOfRecords": str(end - start)}
        return job.header.encode() + data, headers


def _locator(index: int) -> str:
    """An opaque-looking locator for the record index where the next page starts."""
    return f"{index:x}".upper().rjust(8, "0")


def _parse_locator(text: str | None, records: int) -> int:
    if not text:
        return 0
    try:
        index = int(text, 16)
    except ValueError:
        index = -1
    if not 0 < index < records:
        raise ApiError(400, "INVALIDLOCATOR", f"Invalid locator: {text}")
    return index
