"""Salesforce adapter: incremental reads through simple-salesforce.

Sync semantics follow what lost data elsewhere (see shared notes): half-open
windows on `SystemModstamp` with a lookback, so rows committed behind the
cursor are still read; `queryAll`, so soft deletes arrive as `IsDeleted` rows;
a checkpoint after every page, so a crash resumes mid-object.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
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
from connectors.common_model import COMMON_OBJECTS

log = logging.getLogger(__name__)

T = TypeVar("T")

# Common object -> (sObject, {common column: Salesforce field}).
OBJECT_MAP: dict[str, tuple[str, dict[str, str]]] = {
    "account": ("Account", {
        "name": "Name", "industry": "Industry", "employee_count": "NumberOfEmployees",
        "annual_revenue": "AnnualRevenue", "billing_country": "BillingCountry",
        "billing_state": "BillingState", "website": "Website", "account_type": "Type",
        "owner_id": "OwnerId", "parent_id": "ParentId", "source_created_at": "CreatedDate",
    }),
    "contact": ("Contact", {
        "account_id": "AccountId", "first_name": "FirstName", "last_name": "LastName",
        "email": "Email", "title": "Title", "owner_id": "OwnerId",
        "source_created_at": "CreatedDate",
    }),
    "lead": ("Lead", {
        "first_name": "FirstName", "last_name": "LastName", "company": "Company",
        "email": "Email", "status": "Status", "lead_source": "LeadSource",
        "industry": "Industry", "owner_id": "OwnerId", "is_converted": "IsConverted",
        "converted_opportunity_id": "ConvertedOpportunityId",
        "source_created_at": "CreatedDate",
    }),
    "opportunity": ("Opportunity", {
        "name": "Name", "account_id": "AccountId", "amount": "Amount", "stage": "StageName",
        "is_closed": "IsClosed", "is_won": "IsWon", "close_date": "CloseDate",
        "probability": "Probability", "opportunity_type": "Type", "lead_source": "LeadSource",
        "owner_id": "OwnerId", "price_book_id": "Pricebook2Id",
        "source_created_at": "CreatedDate",
    }),
    "opportunity_line": ("OpportunityLineItem", {
        "opportunity_id": "OpportunityId", "product_id": "Product2Id",
        "price_book_entry_id": "PricebookEntryId", "quantity": "Quantity",
        "unit_price": "UnitPrice", "list_price": "ListPrice", "discount": "Discount",
        "total_price": "TotalPrice", "source_created_at": "CreatedDate",
    }),
    "product": ("Product2", {
        "name": "Name", "product_code": "ProductCode", "family": "Family",
        "is_active": "IsActive", "unit_cost": "Unit_Cost__c",
        "source_created_at": "CreatedDate",
    }),
    "price_book_entry": ("PricebookEntry", {
        "price_book_id": "Pricebook2Id", "product_id": "Product2Id",
        "unit_price": "UnitPrice", "is_active": "IsActive", "currency": "CurrencyIsoCode",
        "source_created_at": "CreatedDate",
    }),
    "user": ("User", {
        "name": "Name", "email": "Email", "title": "Title", "department": "Department",
        "manager_id": "ManagerId", "is_active": "IsActive",
        "source_created_at": "CreatedDate",
    }),
}

CURSOR_FIELD = "SystemModstamp"
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
}
# The deleted/ endpoint answers for at most 30 days per call.
DELETE_LOG_WINDOW = timedelta(days=30)


def parse_sf_datetime(value: str) -> datetime:
    """Parse Salesforce's `2024-01-01T00:00:00.000+0000` (and ISO variants) to aware UTC."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = f"{text[:-2]}:{text[-2:]}"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def soql_datetime(value: datetime) -> str:
    """A SOQL datetime literal (unquoted, UTC, milliseconds)."""
    utc = value.astimezone(UTC)
    return (f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}."  # four-digit year: glibc %Y writes `1`
            f"{utc.microsecond // 1000:03d}Z")


def _convert(value: Any, column_type: str) -> Any:
    """Parse only what Salesforce spells its own way: its date-time and date text.

    Every other value goes to the warehouse as it came. The warehouse's column rules,
    the same for every connector, store it exactly or quarantine it with the reason
    (`"false"` is never true, `true` is never 1.0, a dict is never text).
    """
    if value is None:
        return None
    if column_type == "datetime" and isinstance(value, str):
        return parse_sf_datetime(value)
    if column_type == "date" and isinstance(value, str):
        return date.fromisoformat(value)
    return value


def map_record(object_name: str, record: Mapping[str, Any]) -> Upsert | Quarantine:
    """Map one Salesforce record to the common model, or quarantine it with the reason."""
    _, field_map = OBJECT_MAP[object_name]
    types = {c.name: c.type for c in COMMON_OBJECTS[object_name]}
    raw = {k: v for k, v in record.items() if k != "attributes"}
    source_id = record.get("Id")
    try:
        modified_at = parse_sf_datetime(str(record[CURSOR_FIELD]))
    except (KeyError, ValueError):
        return Quarantine(source_id, None, raw, f"{CURSOR_FIELD} missing or not a datetime")
    if not isinstance(source_id, str) or not source_id:
        return Quarantine(None, modified_at, raw, "record has no Id")
    fields: dict[str, Any] = {}
    for column, field in field_map.items():
        try:
            fields[column] = _convert(record.get(field), types[column])
        except (TypeError, ValueError, OverflowError):
            value = repr(record.get(field))[:80]
            return Quarantine(
                source_id, modified_at, raw,
                f"{object_name}.{column}: {field}={value} is not a valid {types[column]}",
            )
    is_deleted = record.get("IsDeleted", False)
    if not isinstance(is_deleted, bool):  # "false" is truthy: never guess a deletion
        return Quarantine(source_id, modified_at, raw,
                          f"{object_name}: IsDeleted={is_deleted!r:.80} is not a boolean")
    return Upsert(source_id=source_id, modified_at=modified_at, fields=fields, raw=raw,
                  is_deleted=is_deleted)


def _state(cursor: datetime, fields: list[str], deletes_since: str | None) -> dict[str, Any]:
    state: dict[str, Any] = {"cursor": soql_datetime(cursor), "fields": fields}
    if deletes_since is not None:
        state["deletes_since"] = deletes_since
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


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning(
        "Salesforce call failed (attempt %d): %s; retrying in %.1fs",
        state.attempt_number, _describe(exc), wait,
    )


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
            from connectors.sandbox.transport import sandbox_session

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
        retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            wait=wait_exponential_jitter(
                initial=0.5, max=float(self.config["max_backoff_seconds"])
            ),
            stop=stop_after_attempt(int(self.config["max_attempts"])),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            return retrying(fn)
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
            ObjectInfo(name=common, source_name=sobject)
            for common, (sobject, _) in OBJECT_MAP.items()
            if sobject in available
        ]

    def count(self, object_name: str) -> int:
        sobject = OBJECT_MAP[object_name][0]
        result = self._call(lambda: self.sf.query(f"SELECT COUNT() FROM {sobject}"))
        return int(result["totalSize"])

    def describe(self, object_name: str) -> dict[str, Any]:
        sobject = OBJECT_MAP[object_name][0]
        if sobject not in self._describes:
            self._describes[sobject] = self._call(getattr(self.sf, sobject).describe)
        return self._describes[sobject]

    def selectable_fields(self, object_name: str) -> list[str]:
        return [
            f["name"]
            for f in self.describe(object_name)["fields"]
            if f["type"] not in UNSELECTABLE_TYPES
        ]

    def read(
        self, object_name: str, state: Mapping[str, Any] | None, *, reconcile: bool = False
    ) -> Iterator[Change]:
        sobject = OBJECT_MAP[object_name][0]
        fields = self.selectable_fields(object_name)
        end = datetime.now(UTC)
        previous = parse_sf_datetime(state["cursor"]) if state and state.get("cursor") else None
        # Where the delete log was last replayed: kept apart from the cursor, which moves
        # window by window, so a crash mid-read never skips a stretch of the delete log.
        deletes_since = state.get("deletes_since", state.get("cursor")) if state else None
        if previous is not None:
            start = previous - timedelta(seconds=int(self.config["lookback_seconds"]))
        else:
            start = self._earliest_stamp(sobject) or end
        window = timedelta(days=float(self.config["window_days"]))
        while start < end:
            window_end = min(start + window, end)
            yield from self._read_window(object_name, sobject, fields, start, window_end,
                                         deletes_since)
            start = window_end
            if start < end:
                yield Checkpoint(_state(start, fields, deletes_since))
        if deletes_since is not None:
            covered = yield from self._deleted_since(
                sobject, start=parse_sf_datetime(deletes_since), end=end
            )
            reconcile = reconcile or not covered
        if reconcile:
            yield self.live_ids(object_name)
        yield Checkpoint(_state(end, fields, soql_datetime(end)))

    def map_record(self, object_name: str, record: Mapping[str, Any]) -> Upsert | Quarantine:
        return map_record(object_name, record)

    def live_ids(self, object_name: str) -> LiveIds:
        """All live ids, stamped with a time taken before the query started."""
        sobject = OBJECT_MAP[object_name][0]
        as_of = datetime.now(UTC)
        ids: set[str] = set()
        page = self._call(lambda: self.sf.query(f"SELECT Id FROM {sobject}"))
        while True:
            ids.update(r["Id"] for r in page["records"])
            if page.get("done", True):
                return LiveIds(frozenset(ids), as_of)
            def more_ids(url: str = page["nextRecordsUrl"]) -> dict[str, Any]:
                return self.sf.query_more(url, identifier_is_url=True)

            page = self._call(more_ids)

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
                return getattr(self.sf, sobject).deleted(lo, hi)

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
                    return self.sf.query_more(url, identifier_is_url=True, headers=headers)

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
