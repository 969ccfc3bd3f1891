"""Salesforce adapter: incremental reads through simple-salesforce.

Sync semantics follow what lost data elsewhere (see shared notes): half-open
windows on `SystemModstamp` with a lookback, so rows committed behind the
cursor are still read; `queryAll`, so soft deletes arrive as `IsDeleted` rows;
a checkpoint after every page, so a crash resumes mid-object. A large gap (an initial
load, a long pause) is read through one Bulk API 2.0 job instead (`bulk.py`), with the
same guarantees and REST as its fallback. Signing in and calling live in `auth.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
)

from connectors.base import (
    AuthenticationError,
    Change,
    Checkpoint,
    CheckResult,
    Connector,
    ConnectorError,
    Delete,
    LiveIds,
    ObjectInfo,
    Quarantine,
    QuotaExceeded,
    Upsert,
)
from connectors.parts import read_parts
from connectors.salesforce.activity import MULTI_SOURCE
from connectors.salesforce.auth import AuthMixin, default_timeout, error_code
from connectors.salesforce.bulk import BULK_DEFAULTS, BulkUnavailable, BulkWindow
from connectors.salesforce.bulk_parse import PageParser
from connectors.salesforce.mapping import (
    CURSOR_FIELD,
    OBJECT_MAP,
    map_record,
    parse_sf_datetime,
    soql_datetime,
    sources,
)

log = logging.getLogger(__name__)


# Field types SOQL cannot select one by one over REST without special handling.
UNSELECTABLE_TYPES = {"address", "location", "base64"}
DEFAULTS: dict[str, Any] = {
    "domain": "login",
    "api_version": "59.0",
    "lookback_seconds": 600,
    "window_days": 90,
    "page_size": None,  # None: the org's default (2000); else a batchSize hint (200-2000)
    "max_attempts": 6,
    "max_backoff_seconds": 30.0,
    "timeout_seconds": 60.0,
    "quota_share": 0.9,  # stop cleanly once this share of the daily API quota is used
    **BULK_DEFAULTS,  # when windows are read through Bulk API 2.0 (bulk.py)
}
# The deleted/ endpoint answers for at most 30 days per call.
DELETE_LOG_WINDOW = timedelta(days=30)


def _state(cursor: datetime, fields: list[str], deletes_since: str | None,
           bulk: dict[str, Any] | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"cursor": soql_datetime(cursor), "fields": fields}
    if deletes_since is not None:
        state["deletes_since"] = deletes_since
    if bulk is not None:  # mid-way through a Bulk job whose window starts at `cursor`
        state["bulk"] = bulk
    return state


class SalesforceConnector(AuthMixin, Connector):
    """Reads the common objects from one Salesforce org."""

    crm_type = "salesforce"

    def __init__(
        self,
        secrets: Mapping[str, str],
        config: Mapping[str, Any] | None = None,
        *,
        session: requests.Session | None = None,
    ) -> None:
        self._secrets = dict(secrets)
        self.config = {**DEFAULTS, **(config or {})}
        self._session = session or self._make_session()
        default_timeout(self._session, float(self.config["timeout_seconds"]))
        self._sf: Salesforce | None = None
        self._describes: dict[str, dict[str, Any]] = {}
        minimum = self.config["bulk_parse_min_records"]
        self.page_parser = PageParser(None if minimum is None else int(minimum))

    # -- Connector interface ------------------------------------------------

    def check(self) -> CheckResult:
        try:
            limits = self._call(self.sf.limits)
        except AuthenticationError as exc:
            return CheckResult(False, str(exc), field="password", hint=exc.hint)
        except ConnectorError as exc:
            return CheckResult(False, str(exc), hint=exc.hint)
        remaining = limits.get("DailyApiRequests", {}).get("Remaining")
        if isinstance(remaining, int):
            return CheckResult(
                True, f"Connected to Salesforce; {remaining:,} API requests left today")
        return CheckResult(True, "Connected to Salesforce")

    def objects(self) -> list[ObjectInfo]:
        described = self._call(self.sf.describe)
        if described is None:  # simple-salesforce's answer to an empty describe body
            raise ConnectorError("Salesforce returned an empty list of objects")
        available = {o["name"] for o in described["sobjects"] if o.get("queryable")}
        return [
            ObjectInfo(name=common, source_name=", ".join(sources(common)))
            for common in (*OBJECT_MAP, *MULTI_SOURCE)
            if set(sources(common)) <= available
        ]

    def count(self, object_name: str) -> int:
        total = 0
        for sobject in sources(object_name):
            def count_of(soql: str = f"SELECT COUNT() FROM {sobject}") -> dict[str, Any]:
                answer: dict[str, Any] = self.sf.query(soql)
                return answer

            total += int(self._call(count_of)["totalSize"])
        return total

    def describe(self, sobject: str) -> dict[str, Any]:
        """An sObject's describe, once per connector (fields are re-read every sync)."""
        if sobject not in self._describes:
            self._describes[sobject] = self._call(getattr(self.sf, sobject).describe)
        return self._describes[sobject]

    def sobject_fields(self, sobject: str) -> list[str]:
        return [
            f["name"]
            for f in self.describe(sobject)["fields"]
            if f["type"] not in UNSELECTABLE_TYPES
        ]

    def selectable_fields(self, object_name: str) -> list[str]:
        """The fields read for a common object (of every sObject it is read from)."""
        names: list[str] = []
        for sobject in sources(object_name):
            names += [f for f in self.sobject_fields(sobject) if f not in names]
        return names

    def read(
        self, object_name: str, state: Mapping[str, Any] | None, *, reconcile: bool = False
    ) -> Iterator[Change]:
        if object_name in MULTI_SOURCE:
            yield from read_parts(
                lambda sobject, part: self._read_sobject(object_name, sobject, part),
                lambda: self.live_ids(object_name), MULTI_SOURCE[object_name], state,
                reconcile=reconcile)
            return
        covered, final = yield from self._read_sobject(object_name, OBJECT_MAP[object_name][0],
                                                       state)
        if reconcile or not covered:
            yield self.live_ids(object_name)
        yield Checkpoint(final)

    def _read_sobject(
        self, object_name: str, sobject: str, state: Mapping[str, Any] | None
    ) -> Generator[Change, None, tuple[bool, dict[str, Any]]]:
        """Windows since the state's cursor, then the delete log: (log covered?, final state).

        The final state is the caller's to yield, after a `LiveIds` if the log no longer
        covers the gap, so no checkpoint ever passes a reconciliation that is owed.
        """
        fields = self.sobject_fields(sobject)
        end = datetime.now(UTC)
        previous = parse_sf_datetime(state["cursor"]) if state and state.get("cursor") else None
        # Where the delete log was last replayed: kept apart from the cursor, which moves
        # window by window, so a crash mid-read never skips a stretch of the delete log.
        deletes_since = state.get("deletes_since", state.get("cursor")) if state else None
        bulk = state.get("bulk") if state else None
        lookback = timedelta(seconds=int(self.config["lookback_seconds"]))
        if previous is not None and bulk:
            # Stopped inside a Bulk job: finish its window (its cursor is the window start)
            # from the job's snapshot, then go on from the window's end minus the lookback:
            # a write committed late after the snapshot was taken (its stamp up to the
            # lookback in the past) is in no snapshot, however long ago the job ran.
            window_end = min(parse_sf_datetime(bulk["end"]), end)
            yield from self._read_bulk_window(object_name, sobject, fields, previous,
                                              window_end, deletes_since, resume=bulk)
            start = max(window_end - lookback, previous)
            if start < end:
                yield Checkpoint(_state(start, fields, deletes_since))
        elif previous is not None:
            start = previous - lookback
        else:
            start = self._earliest_stamp(sobject) or end
        if start < end and self._bulk_worth_it(sobject, start, end):
            # A large gap (an initial load, a long pause): one Bulk job for all of it.
            yield from self._read_bulk_window(object_name, sobject, fields, start, end,
                                              deletes_since)
            start = end
        window = timedelta(days=float(self.config["window_days"]))
        while start < end:
            window_end = min(start + window, end)
            yield from self._read_window(object_name, sobject, fields, start, window_end,
                                         deletes_since)
            start = window_end
            if start < end:
                yield Checkpoint(_state(start, fields, deletes_since))
        covered = True
        if deletes_since is not None:
            covered = yield from self._deleted_since(
                sobject, start=parse_sf_datetime(deletes_since), end=end
            )
        return covered, _state(end, fields, soql_datetime(end))

    def map_record(self, object_name: str, record: Mapping[str, Any]) -> Upsert | Quarantine:
        return map_record(object_name, record)

    def live_ids(self, object_name: str) -> LiveIds:
        """All live ids (of every sObject read), stamped with a time taken before the queries."""
        as_of = datetime.now(UTC)
        ids: set[str] = set()
        for sobject in sources(object_name):
            def first_ids(soql: str = f"SELECT Id FROM {sobject}") -> dict[str, Any]:
                answer: dict[str, Any] = self.sf.query(soql)
                return answer

            page = self._call(first_ids)
            while True:
                ids.update(r["Id"] for r in page["records"])
                if page.get("done", True):
                    break

                def more_ids(url: str = page["nextRecordsUrl"]) -> dict[str, Any]:
                    answer: dict[str, Any] = self.sf.query_more(url, identifier_is_url=True)
                    return answer

                page = self._call(more_ids)
        return LiveIds(frozenset(ids), as_of)

    def _deleted_since(
        self, sobject: str, *, start: datetime, end: datetime
    ) -> Generator[Delete, None, bool]:
        """Replay the CRM's delete log since the last sync; False when it no longer covers it."""
        lookback = timedelta(seconds=int(self.config["lookback_seconds"]))
        low = start - lookback
        covered = True
        while low < end:
            high = min(low + DELETE_LOG_WINDOW, end)
            if high - low < timedelta(minutes=1):  # the API's granularity
                break
            def deleted(lo: datetime = low, hi: datetime = high) -> dict[str, Any]:
                answer: dict[str, Any] = getattr(self.sf, sobject).deleted(lo, hi)
                return answer

            result = self._call(deleted)
            earliest = result.get("earliestDateAvailable")
            if earliest and parse_sf_datetime(earliest) > start:
                covered = False  # purged before we looked: only an id diff can tell
            for row in result.get("deletedRecords", []):
                yield Delete(row["id"], parse_sf_datetime(row["deletedDate"]))
            low = high
        return covered

    def _earliest_stamp(self, sobject: str) -> datetime | None:
        soql = f"SELECT {CURSOR_FIELD} FROM {sobject} ORDER BY {CURSOR_FIELD} ASC LIMIT 1"
        records = self._call(lambda: self.sf.query(soql, include_deleted=True))["records"]
        return parse_sf_datetime(records[0][CURSOR_FIELD]) if records else None

    def _check_quota(self) -> None:
        """Stop cleanly (between pages) once the configured share of the daily quota is used."""
        usage = self.sf.api_usage.get("api-usage") if self._sf is not None else None
        share = float(self.config["quota_share"])
        if usage is not None and usage.total and usage.used >= share * usage.total:
            raise QuotaExceeded(
                f"stopped at {usage.used:,}/{usage.total:,} daily API requests "
                f"({share:.0%} budget)",
                hint="The sync resumes from its checkpoint when the quota frees up.",
            )

    def close(self) -> None:
        self.page_parser.close()
        super().close()

    def _read_bulk_window(
        self, object_name: str, sobject: str, fields: list[str], start: datetime, end: datetime,
        deletes_since: str | None, *, resume: Mapping[str, Any] | None = None,
    ) -> Iterator[Change]:
        """[start, end) through one Bulk API 2.0 job (`bulk.py`); a job that fails, is aborted
        or times out is replaced by REST for the same window, so the window is never lost."""
        def position(bulk: dict[str, Any] | None) -> dict[str, Any]:
            return _state(start, fields, deletes_since, bulk)

        reader = BulkWindow(self, object_name, sobject, fields, position)
        try:
            yield from reader.read(start, end, resume)
            return
        except BulkUnavailable as exc:
            log.warning("%s: %s; reading the window from %s over REST", sobject, exc,
                        soql_datetime(start))
        yield from self._read_window(object_name, sobject, fields, start, end, deletes_since)

    def _bulk_worth_it(self, sobject: str, start: datetime, end: datetime) -> bool:
        """Whether the gap is large: its row count (a COUNT() over it, deleted rows included)
        against `bulk_threshold`. One cheap call per object per sync."""
        threshold = self.config["bulk_threshold"]
        if threshold is None:
            return False
        if int(threshold) <= 0:
            return True
        soql = (f"SELECT COUNT() FROM {sobject} WHERE {CURSOR_FIELD} >= {soql_datetime(start)} "
                f"AND {CURSOR_FIELD} < {soql_datetime(end)}")
        counted = self._call(lambda: self.sf.query(soql, include_deleted=True))
        return int(counted["totalSize"]) >= int(threshold)

    def _read_window(
        self, object_name: str, sobject: str, fields: list[str], start: datetime, end: datetime,
        deletes_since: str | None,
    ) -> Iterator[Change]:
        page_size = self.config["page_size"]
        headers = {"Sforce-Query-Options": f"batchSize={int(page_size)}"} if page_size else {}
        position = start
        page = self._query_window(sobject, fields, position, end, headers)
        while True:
            records = page["records"]
            for record in records:
                yield map_record(object_name, record)
            if page.get("done", True):
                return
            # Rows sharing the last stamp may continue on the next page: resume at it (>=).
            position = parse_sf_datetime(records[-1][CURSOR_FIELD])
            yield Checkpoint(_state(position, fields, deletes_since))
            self._check_quota()
            try:
                def more_records(url: str = page["nextRecordsUrl"]) -> dict[str, Any]:
                    answer: dict[str, Any] = self.sf.query_more(url, identifier_is_url=True,
                                                                headers=headers)
                    return answer

                page = self._call(more_records)
            except SalesforceMalformedRequest as exc:
                if error_code(exc) != "INVALID_QUERY_LOCATOR":
                    raise
                # The cursor expired (a long pause): query again from the last checkpoint.
                page = self._query_window(sobject, fields, position, end, headers)

    def _query_window(
        self, sobject: str, fields: list[str], start: datetime, end: datetime,
        headers: Mapping[str, str],
    ) -> dict[str, Any]:
        soql = (
            f"SELECT {', '.join(fields)} FROM {sobject} "
            f"WHERE {CURSOR_FIELD} >= {soql_datetime(start)} "
            f"AND {CURSOR_FIELD} < {soql_datetime(end)} "
            f"ORDER BY {CURSOR_FIELD} ASC, Id ASC"
        )
        return self._call(lambda: self.sf.query(soql, include_deleted=True, headers=headers))
