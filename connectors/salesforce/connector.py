"""Salesforce adapter: incremental reads through simple-salesforce.

Sync semantics follow what lost data elsewhere (see shared notes): half-open
windows on `SystemModstamp` with a lookback, so rows committed behind the
cursor are still read; `queryAll`, so soft deletes arrive as `IsDeleted` rows;
a checkpoint after every page, so a crash resumes mid-object. A large gap (an initial
load, a long pause) is read through one Bulk API 2.0 job instead (`bulk.py`), with the
same guarantees and REST as its fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
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
    SourceUnavailable,
    Upsert,
)
from connectors.parts import read_parts
from connectors.retry import retrying
from connectors.salesforce.activity import MULTI_SOURCE
from connectors.salesforce.bulk import BULK_DEFAULTS, BulkUnavailable, BulkWindow
from connectors.salesforce.mapping import (
    CURSOR_FIELD,
    OBJECT_MAP,
    map_record,
    parse_sf_datetime,
    soql_datetime,
    sources,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

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


def _default_timeout(session: requests.Session, seconds: float) -> None:
    """Give every call a timeout: simple-salesforce sets none, and a silent server would
    otherwise hang a sync forever (a timeout is retried like any transient failure)."""
    send = session.request

    def request(method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", seconds)
        return send(method, url, **kwargs)

    # A deliberate monkeypatch: the wrapper forwards every keyword, so it is not
    # signature-for-signature the method it replaces.
    session.request = request  # type: ignore[method-assign,assignment]


# OAuth token endpoint errors (RFC 6749 §5.2 and Salesforce's own) that mean the grant
# itself is gone: only these ask a person to connect again.
REFRESH_REVOKED = frozenset({
    "invalid_grant", "invalid_client", "invalid_client_id", "invalid_client_credentials",
    "unauthorized_client", "inactive_user", "inactive_org",
})
# ... and those that say "not now": retried like any outage.
REFRESH_TRANSIENT = frozenset({"server_error", "temporarily_unavailable", "rate_limit_exceeded"})


def _refresh_error(url: str, status: int, body: Mapping[str, Any]) -> Exception:
    """What a failed refresh grant means: revoked (connect again), an outage, or neither."""
    code = body.get("error")
    if code in REFRESH_REVOKED:
        return AuthenticationError(
            f"Salesforce refused the refresh token ({code})",
            hint="The access was revoked or expired: connect with Salesforce again.",
        )
    if status >= 500 or status == 429 or code in REFRESH_TRANSIENT or not code:
        # Not a verdict on the credentials: `_call` retries it, then reports SourceUnavailable,
        # so the run is retried instead of failing fast as revoked.
        # simple-salesforce annotates `content` as bytes but itself passes the parsed JSON
        # body (util.exception_handler), which `_error_code` reads: a list of error dicts.
        return SalesforceGeneralError(url, status if status >= 500 else 503, "oauth2/token",
                                      [{"errorCode": code or f"HTTP {status}",  # type: ignore[arg-type]
                                        "message": body.get("error_description", "")}])
    description = body.get("error_description")
    return ConnectorError(f"Salesforce refused the token refresh ({code}"
                          + (f": {description}" if description else "") + ")")


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, requests.exceptions.RequestException):
        return True  # connection reset, timeout, body cut short
    if isinstance(exc, SalesforceRefusedRequest):
        # REQUEST_LIMIT_EXCEEDED is either the concurrency limit (passes in seconds) or
        # the daily quota ("TotalRequests"), which no backoff will cure.
        return _error_code(exc) == "REQUEST_LIMIT_EXCEEDED" and not _is_daily_quota(exc)
    if isinstance(exc, SalesforceGeneralError):
        return exc.status == 429 or exc.status >= 500
    return isinstance(exc, SalesforceExpiredSession)


def _is_daily_quota(exc: SalesforceError) -> bool:
    content = exc.content
    message = content[0].get("message", "") if isinstance(content, list) and content else ""
    return "TotalRequests" in str(message)


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, SalesforceError):
        return f"HTTP {exc.status} {_error_code(exc) or ''}".strip()
    return type(exc).__name__ if exc else "unknown error"


def _error_code(exc: SalesforceError) -> str | None:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return content[0].get("errorCode")
    return None


class SalesforceConnector(Connector):
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
        _default_timeout(self._session, float(self.config["timeout_seconds"]))
        self._sf: Salesforce | None = None
        self._describes: dict[str, dict[str, Any]] = {}

    def _make_session(self) -> requests.Session:
        sandbox_url = self.config.get("sandbox_url")
        if sandbox_url:
            from connectors.salesforce.transport import sandbox_session

            return sandbox_session(sandbox_url)
        return requests.Session()

    # -- connection ---------------------------------------------------------

    def _login(self) -> Salesforce:
        s = self._secrets
        try:
            if s.get("access_token") or s.get("refresh_token"):
                return self._oauth_login()
            if s.get("session_id"):
                return Salesforce(
                    session_id=s["session_id"], instance_url=s["instance_url"],
                    session=self._session, version=self.config["api_version"],
                )
            return Salesforce(
                username=s["username"], password=s["password"],
                security_token=s.get("security_token", ""), domain=self.config["domain"],
                session=self._session, version=self.config["api_version"],
            )
        except SalesforceAuthenticationFailed as exc:
            raise AuthenticationError(
                f"Salesforce rejected the login ({exc.code})",
                hint="Check the username and password; the security token changes "
                "whenever the password is changed.",
            ) from None
        except KeyError as exc:
            raise AuthenticationError(f"missing Salesforce credential {exc.args[0]!r}") from None

    def _oauth_login(self) -> Salesforce:
        """A client on an OAuth access token that renews itself from the refresh token.

        simple-salesforce calls `_salesforce_login_partial` when a call gets
        401 INVALID_SESSION_ID, then repeats the call: pointing it at the
        refresh grant makes an expired access token invisible to the sync.
        """
        s = self._secrets
        access_token, instance_url = s.get("access_token"), s.get("instance_url")
        if not access_token or not instance_url:
            access_token, instance_url = self._oauth_refresh()
        sf = Salesforce(
            session_id=access_token, instance_url=instance_url,
            session=self._session, version=self.config["api_version"],
        )
        if s.get("refresh_token"):
            # simple-salesforce types the hook as the partial it builds itself; it only calls it.
            sf._salesforce_login_partial = self._oauth_refresh  # type: ignore[assignment]  # noqa: SLF001
        return sf

    def _oauth_refresh(self) -> tuple[str, str]:
        """The refresh_token grant at /services/oauth2/token: (access token, instance host)."""
        s = self._secrets
        if not s.get("refresh_token"):
            raise AuthenticationError(
                "the Salesforce access token expired and no refresh token is stored",
                hint="Connect with Salesforce again to grant offline access.",
            )
        base = s.get("instance_url") or f"https://{self.config['domain']}.salesforce.com"
        form = {"grant_type": "refresh_token", "refresh_token": s["refresh_token"],
                "client_id": self.config.get("client_id", "")}
        if s.get("client_secret"):
            form["client_secret"] = s["client_secret"]
        url = f"{base.rstrip('/')}/services/oauth2/token"
        response = self._session.post(
            url, data=form, timeout=float(self.config["timeout_seconds"]), allow_redirects=False,
        )
        try:
            body = response.json() if response.content else {}
        except ValueError:  # an HTML error page from a proxy or an outage
            body = {}
        body = body if isinstance(body, dict) else {}
        if response.status_code != 200 or "access_token" not in body:
            raise _refresh_error(url, response.status_code, body)
        self._secrets["access_token"] = body["access_token"]
        self._secrets["instance_url"] = body.get("instance_url", base)
        host = urlsplit(self._secrets["instance_url"]).netloc
        return body["access_token"], host

    @property
    def sf(self) -> Salesforce:
        if self._sf is None:
            self._sf = self._call(self._login)
        return self._sf

    def _call(self, fn: Callable[[], T]) -> T:
        """Run one API call with backoff on transient failures, then map errors."""
        calls = retrying("Salesforce", is_transient=_is_transient, describe=_describe,
                         max_attempts=int(self.config["max_attempts"]),
                         max_backoff=float(self.config["max_backoff_seconds"]))
        try:
            return calls(fn)
        except SalesforceExpiredSession:
            raise AuthenticationError(
                "Salesforce session expired and could not be renewed",
                hint="Re-enter the Salesforce credentials.",
            ) from None
        except SalesforceRefusedRequest as exc:
            if _error_code(exc) == "REQUEST_LIMIT_EXCEEDED" and _is_daily_quota(exc):
                raise QuotaExceeded(
                    "Salesforce daily API request limit exceeded",
                    hint="The sync resumes from its checkpoint when the quota resets.",
                ) from None
            if _error_code(exc) == "REQUEST_LIMIT_EXCEEDED":
                raise SourceUnavailable("Salesforce concurrent request limit exceeded") from None
            raise ConnectorError(f"Salesforce refused the request: {_describe(exc)}") from None
        except SalesforceGeneralError as exc:
            raise SourceUnavailable(f"Salesforce unavailable: {_describe(exc)}") from None
        except requests.exceptions.RequestException as exc:
            raise SourceUnavailable(f"Salesforce unreachable: {type(exc).__name__}") from None

    def close(self) -> None:
        self._session.close()

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
                if _error_code(exc) != "INVALID_QUERY_LOCATOR":
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
