"""NetSuite adapter: incremental SuiteQL reads over SuiteTalk REST.

Sync semantics (docs/sync-guarantees.md), NetSuite's way:
- Keyset paging on the unique order (modification stamp, id): every page is a fresh
  query from the last key read, at offset 0. Offsets would skip a row whenever an
  earlier one is modified mid-read and leaves the window, and cannot go past 100,000
  rows; keys do neither, so no window ever needs splitting to stay under the cap.
- Half-open windows of full timestamps (`TO_TIMESTAMP(..., 'YYYY-MM-DD HH24:MI:SS')`,
  never a date) in the account's time zone, restarted `lookback_seconds` before the
  saved cursor; the end of a read is the account's own clock (SYSDATE), not ours.
- Deletes from `DeletedRecord` since the last sweep (kept apart from the cursor); a
  `LiveIds` when the log no longer covers the gap, on `reconcile`, and always for
  what NetSuite logs no deletes of (transaction lines) or has no stamp for (prices).
- Activities from three record types (calls, to-dos, meetings), one cursor each.
- A read refuses an account clock far from ours (a wrong time zone would push the cursor
  hours ahead); a custom field the account lacks is read as empty, not a failed sync.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests

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
from connectors.netsuite import activity
from connectors.netsuite.client import (
    M2mCredentials,
    NetSuiteClient,
    NetSuiteError,
    TbaCredentials,
)
from connectors.netsuite.mapping import SOURCES, map_record, source_id_of
from connectors.netsuite.source import MODIFIED, STAMP_FORMAT, Source, local_stamp, parse_stamp
from connectors.parts import read_parts

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "auth": "oauth2_m2m",
    "timezone": "America/Los_Angeles",  # Setup → Company → Preferences → Time Zone
    "lookback_seconds": 600,
    "window_days": 90,
    "page_size": 1000,  # SuiteQL's most per page
    "max_query_rows": 100_000,  # SuiteQL pages through at most this many rows per query
    "delete_log_days": 30,  # older gaps are reconciled by ids, not trusted to the log
    "max_attempts": 6,
    "max_backoff_seconds": 30.0,
    "timeout_seconds": 60.0,
    "clock_tolerance_seconds": 300,
}
# Codes that mean the credentials (or the integration) are refused: ask a person.
# (Not USER_ERROR: NetSuite uses it for any refused value.)
AUTH_CODES = frozenset({"INVALID_LOGIN", "INVALID_LOGIN_ATTEMPT", "invalid_client",
                        "invalid_grant", "unauthorized_client", "invalid_scope",
                        "FEATURE_DISABLED"})
QUOTA_CODES = frozenset({"SSS_REQUEST_LIMIT_EXCEEDED", "REQUEST_LIMIT_EXCEEDED"})

Key = tuple[Any, ...]


class MissingCustomField(ConnectorError):
    """The account has no custom field of this id (`Field 'custentity_x' ... not found`)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"NetSuite account has no field {field!r}")
        self.field = field


_MISSING_FIELD = re.compile(r"Field '(cust\w+)'")


def _select_items(query: str) -> list[tuple[str, str]]:
    """(output name, expression) of the `expr AS name` items of one of our queries."""
    return [(m.group(2), m.group(1)) for m in re.finditer(r"([\w.]+) AS (\w+)", query)]


class ClockMismatch(ConnectorError):
    """The account's clock, read in the configured zone, is far from ours: the zone is wrong."""


def _state(cursor: datetime | None, fields: list[str], deletes_since: datetime | None
           ) -> dict[str, Any]:
    state: dict[str, Any] = {"fields": fields}
    if cursor is not None:
        state["cursor"] = cursor.astimezone(UTC).isoformat()
    if deletes_since is not None:
        state["deletes_since"] = deletes_since.astimezone(UTC).isoformat()
    return state


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text).astimezone(UTC) if text else None


class NetSuiteConnector(Connector):
    """Reads the common objects from one NetSuite account."""

    crm_type = "netsuite"

    def __init__(self, secrets: Mapping[str, str], config: Mapping[str, Any] | None = None,
                 *, session: requests.Session | None = None) -> None:
        self.config = {**DEFAULTS, **(config or {})}
        try:
            self.tz = ZoneInfo(str(self.config["timezone"]))
        except (ZoneInfoNotFoundError, ValueError):
            raise ConnectorError(f"unknown time zone {self.config['timezone']!r}",
                                 hint="Use the account's time zone, e.g. America/New_York "
                                 "(Setup → Company → Preferences → General Preferences)."
                                 ) from None
        self._secrets = dict(secrets)
        self._session = session
        self._client: NetSuiteClient | None = None
        # Output names of custom fields this account does not have (read as empty).
        self._omitted: set[str] = set()

    # -- connection ---------------------------------------------------------------

    @property
    def client(self) -> NetSuiteClient:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> NetSuiteClient:
        s, c = self._secrets, self.config
        account = str(c.get("account_id") or s.get("account_id") or "").strip()
        if not account:
            raise AuthenticationError("missing NetSuite account id")
        try:
            tba = m2m = None
            if c["auth"] == "oauth1_tba":
                tba = TbaCredentials(s["consumer_key"], s["consumer_secret"], s["token_id"],
                                     s["token_secret"])
            else:
                m2m = M2mCredentials(str(c.get("client_id") or s["client_id"]),
                                     str(c.get("certificate_id") or s["certificate_id"]),
                                     s["private_key"], c.get("jwt_algorithm"))
        except KeyError as exc:
            raise AuthenticationError(f"missing NetSuite credential {exc.args[0]!r}") from None
        return NetSuiteClient(
            account, tba=tba, m2m=m2m, session=self._session,
            sandbox_url=c.get("sandbox_url"), timeout=float(c["timeout_seconds"]),
            max_attempts=int(c["max_attempts"]), max_backoff=float(c["max_backoff_seconds"]))

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run one client call and say who must act on a failure (the client retried)."""
        try:
            return fn()
        except NetSuiteError as exc:
            missing = _MISSING_FIELD.search(exc.detail) if exc.code == "INVALID_PARAMETER" else None
            if missing:
                raise MissingCustomField(missing.group(1)) from None
            raise _classify(exc) from None
        except requests.exceptions.RequestException as exc:
            raise SourceUnavailable(f"NetSuite unreachable: {type(exc).__name__}") from None
        except ValueError as exc:  # a PEM that is no key, a body that is no JSON
            raise AuthenticationError(f"NetSuite credentials unusable: {exc}") from None

    def _query(self, q: str, *, offset: int = 0) -> dict[str, Any]:
        limit = int(self.config["page_size"])
        page: dict[str, Any] = self._call(lambda: self.client.suiteql(q, limit=limit,
                                                                      offset=offset))
        return page

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        elif self._session is not None:
            self._session.close()

    # -- Connector interface ---------------------------------------------------------

    def check(self) -> CheckResult:
        try:
            self._trusted_now()
        except AuthenticationError as exc:
            field = "private_key" if self.config["auth"] == "oauth2_m2m" else "token_secret"
            return CheckResult(False, str(exc), field=field, hint=exc.hint)
        except ClockMismatch as exc:
            return CheckResult(False, str(exc), field="timezone", hint=exc.hint)
        except ConnectorError as exc:
            return CheckResult(False, str(exc), hint=exc.hint)
        return CheckResult(True, f"Connected to NetSuite account {self.client.account_id}")

    def objects(self) -> list[ObjectInfo]:
        return [ObjectInfo(name, ", ".join(s.table.split()[0] for s in _sources(name)))
                for name in (*SOURCES, "activity")]

    def count(self, object_name: str) -> int:
        total = 0
        for source in _sources(object_name):
            where = f" WHERE {source.where}" if source.where else ""
            page = self._query(f"SELECT COUNT(*) AS n FROM {source.table} {source.joins}{where}")
            total += int(page["items"][0]["n"])
        return total

    def map_record(self, object_name: str, record: Mapping[str, Any]) -> Upsert | Quarantine:
        return map_record(object_name, record, self.tz)

    def account_now(self) -> datetime:
        """The account's clock (SYSDATE), read in its time zone: the end of every read."""
        page = self._query(f"SELECT TO_CHAR(SYSDATE, '{STAMP_FORMAT}') AS now FROM dual")
        return parse_stamp(page["items"][0]["now"], self.tz)

    def _trusted_now(self) -> datetime:
        """The account's clock, refused when it is far from ours: read in a wrong time zone
        it would set the cursor hours ahead and later changes would fall behind it."""
        now = self.account_now()
        skew = abs((now - datetime.now(UTC)).total_seconds())
        if skew > float(self.config["clock_tolerance_seconds"]):
            raise ClockMismatch(
                f"NetSuite's clock reads {local_stamp(now, self.tz)} in {self.tz.key}, "
                f"{skew / 3600:.1f} h away from ours",
                hint="Set the connection's time zone to the integration user's (Home → Set "
                "Preferences → Time Zone; by default the company's).")
        return now

    def read(self, object_name: str, state: Mapping[str, Any] | None, *,
             reconcile: bool = False) -> Iterator[Change]:
        # Stamps are whole seconds: the current one is read too (a row stamped later in it
        # is read again by the next sync's lookback, which always covers a second).
        end = self._trusted_now() + timedelta(seconds=1)
        if object_name == "activity":
            yield from read_parts(
                lambda part, part_state: self._read_source(
                    object_name, activity.SOURCES[part], part_state, end, f"{part}:"),
                lambda: self.live_ids(object_name, as_of=end), activity.PARTS, state,
                reconcile=reconcile)
            return
        source = self._source(object_name)
        if source.modified_column is None:  # no stamp: the whole table, then its ids
            # Pages are committed as they come; the state moves only at the end (a crash
            # reads the whole table again).
            unchanged = dict(state) if state else {"fields": list(source.select)}
            yield from self._read_all(object_name, source, unchanged)
            yield self.live_ids(object_name, as_of=end)
            yield Checkpoint(_state(end, list(source.select), None))
            return
        covered, final = yield from self._read_source(object_name, source, state, end)
        if reconcile or not covered or not source.deleted_types:
            yield self.live_ids(object_name, as_of=end)
        yield Checkpoint(final)

    def _read_source(self, object_name: str, source: Source, state: Mapping[str, Any] | None,
                     end: datetime, prefix: str = ""
                     ) -> Generator[Change, None, tuple[bool, dict[str, Any]]]:
        """Windows since the state's cursor, then DeletedRecord: (log covered?, final state).

        The final state is the caller's to yield, after a `LiveIds` if one is owed, so no
        checkpoint ever passes a reconciliation that is owed.
        """
        previous = _when(state.get("cursor")) if state else None
        deletes_since = _when(state.get("deletes_since", state.get("cursor"))) if state else None
        lookback = timedelta(seconds=int(self.config["lookback_seconds"]))
        start = previous - lookback if previous else (self._earliest(source) or end)
        window = timedelta(days=float(self.config["window_days"]))
        while start < end:
            window_end = min(start + window, end)
            yield from self._read_window(object_name, source, start, window_end,
                                         deletes_since)
            start = window_end
            if start < end:
                yield Checkpoint(_state(start, self._fields(source), deletes_since))
        covered = bool(source.deleted_types)
        if deletes_since is not None and source.deleted_types:
            covered = yield from self._deleted_since(source, deletes_since - lookback, end,
                                                     prefix)
        return covered, _state(end, self._fields(source), end)

    # -- reading ------------------------------------------------------------------------

    def _pages(self, make_query: Callable[[Key | None], str],
               key_of: Callable[[Mapping[str, Any]], Key], *, exact: bool = True
               ) -> Iterator[list[dict[str, Any]]]:
        """Keyset paging: each page queries again after the last key read.

        When a page ends at or before the key it started from (an hour that repeats when
        clocks go back, or more rows on one coarse key than a page holds) the same query
        pages on by offset instead, so a read always advances. `exact=False`: the query
        may return rows at or before the key again (a coarse predicate); they are dropped.
        """
        limit, cap = int(self.config["page_size"]), int(self.config["max_query_rows"])
        key: Key | None = None
        offset = 0
        while True:
            if offset + limit > cap:
                raise ConnectorError(f"more than {cap:,} NetSuite rows share one key")
            page = self._fetch(make_query, key, offset)
            items = [{k: v for k, v in i.items() if k != "links"} for i in page["items"]]
            fresh = items if exact or key is None else [i for i in items if key_of(i) > key]
            if fresh:
                yield fresh
            if not page.get("hasMore") or not items:
                return
            last = key_of(items[-1])
            if key is not None and last <= key:
                offset += limit
            else:
                key, offset = last, 0

    def _fetch(self, make_query: Callable[[Key | None], str], key: Key | None, offset: int
               ) -> dict[str, Any]:
        """One page; a custom field the account lacks is left out and the query asked again
        (custom field ids differ between accounts: a missing one must not stop a sync)."""
        while True:
            query = make_query(key)
            try:
                return self._query(query, offset=offset)
            except MissingCustomField as exc:
                names = {n for n, expr in _select_items(query) if expr.endswith(f".{exc.field}")}
                if not names or names <= self._omitted:
                    raise ConnectorError(f"NetSuite has no field {exc.field!r}") from None
                log.warning("NetSuite account has no custom field %s: read as empty", exc.field)
                self._omitted |= names

    def _source(self, object_name: str) -> Source:
        """The object's source, with the custom fields the connection names for its columns
        (config `custom_fields`, e.g. {"account.industry": "custentity_sector"})."""
        source = SOURCES[object_name]
        wanted = {key.split(".", 1)[1]: field_id for key, field_id in
                  (self.config.get("custom_fields") or {}).items()
                  if key.startswith(f"{object_name}.")}
        select = dict(source.select)
        for column, field_id in wanted.items():
            name = source.fields.get(column, "")
            expression = select.get(name, "")
            if not (re.fullmatch(r"cust\w+", str(field_id))
                    and re.fullmatch(r"\w+\.cust\w+", expression)):
                raise ConnectorError(f"custom_fields: {object_name}.{column} cannot be read "
                                     f"from {field_id!r}")
            select[name] = f"{expression.split('.')[0]}.{field_id}"
        return replace(source, select=select) if wanted else source

    def _fields(self, source: Source) -> list[str]:
        """The fields read (the state's `fields`: the engine reports drift from them)."""
        return [name for name in source.select if name not in self._omitted]

    def _window_query(self, source: Source, start: datetime, end: datetime) -> Callable[
            [Key | None], str]:
        column, ident = source.modified_column, source.id_column
        low, high = self._ts(start), self._ts(end)

        def make(key: Key | None) -> str:
            condition = f"{column} >= {low} AND {column} < {high}"
            if key is not None:
                at = self._ts(key[0])
                condition += f" AND ({column} > {at} OR ({column} = {at} AND {ident} > {key[1]}))"
            return source.query(condition, order=f"{column}, {ident}", omit=self._omitted)

        return make

    def _read_window(self, object_name: str, source: Source, start: datetime, end: datetime,
                     deletes_since: datetime | None) -> Iterator[Change]:
        def key_of(item: Mapping[str, Any]) -> Key:
            return parse_stamp(item[MODIFIED], self.tz), int(item["id"])

        cursor: datetime | None = None
        for page in self._pages(self._window_query(source, start, end), key_of):
            for item in page:
                yield map_record(object_name, item, self.tz)
            stamp = parse_stamp(page[-1][MODIFIED], self.tz)
            cursor = stamp if cursor is None else max(cursor, stamp)
            yield Checkpoint(_state(cursor, self._fields(source), deletes_since))

    def _read_all(self, object_name: str, source: Source, unchanged: dict[str, Any]
                  ) -> Iterator[Change]:
        """A table without a stamp, keyset-paged on its coarse id (prices on their item)."""
        def make(key: Key | None) -> str:
            condition = "" if key is None else f"{source.id_column} >= {key[0]}"
            return source.query(condition, order="pr.item, pr.pricelevel, pr.currency",
                                omit=self._omitted)

        def key_of(item: Mapping[str, Any]) -> Key:
            return int(item["item"]), int(item["pricelevel"]), int(item.get("currencyid", 0))

        for page in self._pages(make, key_of, exact=False):
            for item in page:
                yield map_record(object_name, item, self.tz)
            yield Checkpoint(unchanged)

    def _earliest(self, source: Source) -> datetime | None:
        where = f" WHERE {source.where}" if source.where else ""
        page = self._query(f"SELECT TO_CHAR(MIN({source.modified_column}), '{STAMP_FORMAT}') "
                           f"AS earliest FROM {source.table} {source.joins}{where}")
        value = page["items"][0].get("earliest") if page["items"] else None
        return parse_stamp(value, self.tz) if value else None

    def _deleted_since(self, source: Source, start: datetime, end: datetime, prefix: str = ""
                       ) -> Generator[Delete, None, bool]:
        """Replay DeletedRecord; False when its retention no longer reaches `start`."""
        retention = timedelta(days=float(self.config["delete_log_days"]))
        types = ", ".join(f"'{t}'" for t in source.deleted_types)
        low, high = self._ts(start), self._ts(end)

        def make(key: Key | None) -> str:
            condition = (f"type IN ({types}) AND deleteddate >= {low} AND deleteddate < {high}")
            if key is not None:
                at = self._ts(key[0])
                condition += (f" AND (deleteddate > {at} OR (deleteddate = {at} "
                              f"AND recordid > {key[1]}))")
            return (f"SELECT recordid, type, TO_CHAR(deleteddate, '{STAMP_FORMAT}') AS deleted "
                    f"FROM deletedrecord WHERE {condition} ORDER BY deleteddate, recordid")

        def key_of(item: Mapping[str, Any]) -> Key:
            return parse_stamp(item["deleted"], self.tz), int(item["recordid"])

        for page in self._pages(make, key_of):
            for item in page:
                yield Delete(f"{prefix}{item['recordid']}",
                             parse_stamp(item["deleted"], self.tz))
        return end - start <= retention

    def live_ids(self, object_name: str, *, as_of: datetime | None = None) -> LiveIds:
        """Every live id, keyset-paged on the id; stamped with a time taken before."""
        as_of = as_of or self.account_now()
        ids: set[str] = set()
        if object_name == "activity":
            for part in activity.PARTS:
                found = self._ids(activity.SOURCES[part])
                ids.update(activity.source_id(part, i) for i in found)
            return LiveIds(frozenset(ids), as_of)
        source = SOURCES[object_name]
        if source.modified_column is None:
            for page in self._pages(lambda key: source.query(
                    "" if key is None else f"{source.id_column} >= {key[0]}",
                    order="pr.item, pr.pricelevel, pr.currency"),
                    lambda i: (int(i["item"]), int(i["pricelevel"]), int(i["currencyid"])),
                    exact=False):
                ids.update(filter(None, (source_id_of(object_name, i) for i in page)))
            return LiveIds(frozenset(ids), as_of)
        return LiveIds(frozenset(self._ids(source)), as_of)

    def _ids(self, source: Source) -> set[str]:
        """A table's ids, keyset-paged on the id."""
        ident = source.id_column
        where = f" AND {source.where}" if source.where else ""

        def make(key: Key | None) -> str:
            after = f"{ident} > {key[0]}" if key is not None else "1 = 1"
            return (f"SELECT {ident} AS id FROM {source.table} {source.joins} "
                    f"WHERE {after}{where} ORDER BY {ident}")

        ids: set[str] = set()
        for page in self._pages(make, lambda i: (int(i["id"]),)):
            ids.update(str(i["id"]) for i in page)
        return ids

    def _ts(self, moment: datetime) -> str:
        return f"TO_TIMESTAMP('{local_stamp(moment, self.tz)}', '{STAMP_FORMAT}')"


def _sources(object_name: str) -> tuple[Source, ...]:
    if object_name == "activity":
        return tuple(activity.SOURCES.values())
    return (SOURCES[object_name],)


def _classify(exc: NetSuiteError) -> ConnectorError:
    """Who must act: credentials (a person), quota (wait), outage (retry), or neither."""
    problem = f" ({exc.problem})" if exc.problem else ""
    if exc.status in (401, 403) or exc.code in AUTH_CODES:
        return AuthenticationError(
            f"NetSuite refused the login: {exc.code}{problem}",
            hint="The Login Audit Trail (Setup → Users/Roles → User Management → View Login "
            "Audit Trail) says why: check the account id, the keys and the role's permissions.")
    if exc.code in QUOTA_CODES:
        return QuotaExceeded(f"NetSuite request limit reached: {exc.code}",
                             hint="The sync resumes from its checkpoint later.")
    if exc.transient:
        return SourceUnavailable(f"NetSuite unavailable: HTTP {exc.status} {exc.code}")
    return ConnectorError(f"NetSuite refused the request: {exc.code}: {exc.detail[:300]}")
