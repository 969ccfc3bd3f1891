"""SugarCRM adapter: incremental reads of REST v11's filter API.

Sync semantics (docs/sync-guarantees.md), Sugar's way:

- Keyset paging on the unique order (`date_modified`, `id`). Sugar's filter API pages
  with `offset` into an `order_by`, and offsets skip records: when a record on an earlier
  page is modified mid-read it leaves its place (its `date_modified` moves to the end),
  every later record moves up one, and the record that slides across the page boundary is
  never read. So every page is a fresh filter at offset 0 for the records after the last
  key read: `date_modified > T`, or `date_modified >= T` and `id > I` (written without an
  equality on a date-time, which Sugar may widen to a day). A record modified mid-read
  reappears after the key and is read again; none is skipped. Ties matter: Sugar stamps
  in whole seconds, so many records share one.
- Windows `[cursor - lookback, now + 1 s)` on Sugar's own clock (`/ping/whattimeisit`);
  the lookback (10 minutes) re-reads what committed late with an earlier stamp. The final
  cursor is the window's end.
- Deletes: Sugar deletes softly (`deleted` = 1, `date_modified` moved), so the window is
  read with `deleted=true` and a deleted record comes with its last values, flagged. Its
  "Prune Database" job removes deleted rows on the 1st of each month: when a month turned
  since the last read, or with `reconcile`, a `LiveIds` (every live id, keyset-paged on
  `id`) goes before the last checkpoint.
- Activities are four modules (calls, meetings, tasks, e-mails), read in turn with a
  window and a cursor each (`connectors.parts.read_parts`).
- Tokens are the client's (`connectors/sugarcrm/client.py`): this instance logs in and
  refreshes on its own, serialised, and never shares them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

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
from connectors.parts import read_parts
from connectors.sugarcrm.client import Credentials, SugarClient, SugarError
from connectors.sugarcrm.mapping import (
    MODIFIED,
    MODULES,
    map_record,
    modules_of,
    parse_sugar_datetime,
    sugar_datetime,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULTS: dict[str, Any] = {
    "client_id": "sugar",
    "platform": "accrue",
    "lookback_seconds": 600,
    "page_size": 200,  # Sugar's `max_num`; instances cap it (often at 1000)
    "max_attempts": 6,
    "max_backoff_seconds": 30.0,
    "timeout_seconds": 60.0,
}
# Sugar's codes for a refused sign-in or OAuth client: a person must act.
AUTH_CODES = frozenset({"need_login", "invalid_grant", "invalid_client", "invalid_platform",
                        "login_failure", "unauthorized_client", "not_authorized"})
Key = tuple[datetime, str]


def _state(cursor: datetime | None, fields: list[str]) -> dict[str, Any]:
    state: dict[str, Any] = {"fields": fields}
    if cursor is not None:
        state["cursor"] = cursor.astimezone(UTC).isoformat()
    return state


class SugarConnector(Connector):
    """Reads the common objects from one SugarCRM instance."""

    crm_type = "sugarcrm"

    def __init__(self, secrets: Mapping[str, str], config: Mapping[str, Any] | None = None,
                 *, session: requests.Session | None = None) -> None:
        self.config = {**DEFAULTS, **(config or {})}
        c = self.config
        self.instance_url = str(c.get("instance_url") or "").rstrip("/")
        self._credentials = Credentials(
            username=str(c.get("username") or secrets.get("username") or ""),
            password=str(secrets.get("password") or ""),
            client_id=str(c.get("client_id") or "sugar"),
            client_secret=str(secrets.get("client_secret") or ""),
            platform=str(c.get("platform") or "accrue"))
        self._session = session
        self._client: SugarClient | None = None

    # -- connection ---------------------------------------------------------------------

    @property
    def client(self) -> SugarClient:
        if self._client is None:
            if urlsplit(self.instance_url).scheme not in ("http", "https"):
                raise AuthenticationError("no SugarCRM instance URL is stored",
                                          hint="Enter the address you open Sugar at.")
            if not self._credentials.username or not self._credentials.password:
                raise AuthenticationError("no SugarCRM username or password is stored",
                                          hint="Enter the API user's username and password.")
            c = self.config
            self._client = SugarClient(
                self.instance_url, self._credentials, session=self._session,
                sandbox_url=c.get("sandbox_url"), timeout=float(c["timeout_seconds"]),
                max_attempts=int(c["max_attempts"]),
                max_backoff=float(c["max_backoff_seconds"]))
        return self._client

    def _call(self, fn: Callable[[SugarClient], T]) -> T:
        """Run one client call (it retried) and say who must act on a failure."""
        try:
            return fn(self.client)
        except SugarError as exc:
            raise _classify(exc) from None
        except requests.exceptions.RequestException as exc:
            raise SourceUnavailable(f"SugarCRM unreachable: {type(exc).__name__}") from None
        except ValueError as exc:  # an answer that is no JSON
            raise SourceUnavailable(f"SugarCRM answered something unreadable: {exc}") from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        elif self._session is not None:
            self._session.close()

    def server_now(self) -> datetime:
        """Sugar's clock: the end of every window (stamps are its, not ours)."""
        text = self._call(lambda c: c.server_time())
        try:
            return parse_sugar_datetime(text)
        except ValueError:
            raise SourceUnavailable(f"SugarCRM's time is unreadable: {text!r:.60}") from None

    # -- Connector interface ---------------------------------------------------------------

    def check(self) -> CheckResult:
        try:
            me = self._call(lambda c: c.request("GET", "/me"))
        except AuthenticationError as exc:
            field = "client_id" if "invalid_client" in str(exc) else (
                "platform" if "platform" in str(exc) else "password")
            return CheckResult(False, str(exc), field=field, hint=exc.hint)
        except ConnectorError as exc:
            return CheckResult(False, str(exc), hint=exc.hint)
        user = (me or {}).get("current_user") or {} if isinstance(me, dict) else {}
        name = user.get("user_name") if isinstance(user, dict) else None
        host = urlsplit(self.instance_url).netloc
        return CheckResult(True, f"Connected to SugarCRM at {host}"
                           + (f" as {name}" if name else ""))

    def objects(self) -> list[ObjectInfo]:
        return [ObjectInfo(name, ", ".join(m.name for m in modules_of(name)))
                for name in (*MODULES, "activity")]

    def count(self, object_name: str) -> int:
        return sum(self._call(lambda c, m=module: c.count(m))  # type: ignore[misc]
                   for module in _modules(object_name))

    def map_record(self, object_name: str, record: Mapping[str, Any]) -> Upsert | Quarantine:
        mapped = map_record(object_name, record)
        if isinstance(mapped, Delete):  # a deleted record with an unreadable value
            return Quarantine(mapped.source_id, mapped.deleted_at, dict(record),
                              f"{object_name}: deleted in SugarCRM")
        return mapped

    def read(self, object_name: str, state: Mapping[str, Any] | None, *,
             reconcile: bool = False) -> Iterator[Change]:
        modules = _modules(object_name)
        end = self.server_now().replace(microsecond=0) + timedelta(seconds=1)
        if len(modules) > 1:  # activities: calls, meetings, tasks and e-mails
            yield from read_parts(
                lambda module, part: self._read_module(object_name, module, part, end),
                lambda: self.live_ids(object_name, as_of=end - timedelta(seconds=1)),
                modules, state, reconcile=reconcile)
            return
        covered, final = yield from self._read_module(object_name, modules[0], state, end)
        if reconcile or not covered:
            yield self.live_ids(object_name, as_of=end - timedelta(seconds=1))
        yield Checkpoint(final)

    def _read_module(self, object_name: str, module: str, state: Mapping[str, Any] | None,
                     end: datetime
                     ) -> Generator[Change, None, tuple[bool, dict[str, Any]]]:
        """One module's window up to `end`: (no prune since the last read?, final state).

        The caller yields the final state, after a `LiveIds` if one is owed, so no
        checkpoint passes a reconciliation that is owed.
        """
        previous = _when(state.get("cursor")) if state else None
        lookback = timedelta(seconds=int(self.config["lookback_seconds"]))
        start = previous - lookback if previous else None
        fields = list(state.get("fields") or []) if state else []
        cursor = previous
        for page in self._pages(module, start, end):
            seen = set(fields)
            for record in page:
                seen.update(record)
                yield map_record(object_name, record)
            fields = sorted(seen)
            last = parse_sugar_datetime(str(page[-1][MODIFIED]))
            cursor = last if cursor is None else max(cursor, last)
            yield Checkpoint(_state(cursor, fields))
        covered = previous is None or not _pruned_between(previous, end)
        return covered, _state(end, fields)

    # -- reading ----------------------------------------------------------------------------

    def _pages(self, module: str, start: datetime | None, end: datetime
               ) -> Iterator[list[dict[str, Any]]]:
        """Pages of `[start, end)` (deleted records too) in (date_modified, id) order, each
        a new filter after the last key read, at offset 0 (see the module docstring)."""
        size = int(self.config["page_size"])
        key: Key | None = None
        while True:
            conditions: list[dict[str, Any]] = [{MODIFIED: {"$lt": sugar_datetime(end)}}]
            if start is not None:
                conditions.append({MODIFIED: {"$gte": sugar_datetime(start)}})
            if key is not None:
                at = sugar_datetime(key[0])
                conditions += [{MODIFIED: {"$gte": at}},
                               {"$or": [{MODIFIED: {"$gt": at}}, {"id": {"$gt": key[1]}}]}]
            body = {"filter": conditions, "max_num": size, "offset": 0, "deleted": True,
                    "order_by": f"{MODIFIED}:ASC,id:ASC"}
            page = self._call(lambda c, b=body: c.filter(module, b))  # type: ignore[misc]
            records = [r for r in page.get("records") or [] if isinstance(r, dict)]
            if not records:
                return
            last = self._key(module, records[-1])
            if key is not None and last <= key:
                raise ConnectorError(f"SugarCRM answered {module} out of (date_modified, id) "
                                     "order: cannot page on")
            yield records
            if page.get("next_offset", -1) == -1 or len(records) < size:
                return
            key = last

    @staticmethod
    def _key(module: str, record: Mapping[str, Any]) -> Key:
        try:
            return parse_sugar_datetime(str(record[MODIFIED])), str(record["id"])
        except (KeyError, ValueError):
            raise ConnectorError(f"SugarCRM sent a {module} record without a readable "
                                 "date_modified and id: cannot page on") from None

    def live_ids(self, object_name: str, *, as_of: datetime | None = None) -> LiveIds:
        """Every live id (of every module read), keyset-paged on `id`; stamped with a time
        taken before."""
        as_of = as_of or self.server_now()
        ids: set[str] = set()
        for module in _modules(object_name):
            ids |= self._ids(module)
        return LiveIds(frozenset(ids), as_of)

    def _ids(self, module: str) -> set[str]:
        size = int(self.config["page_size"])
        ids: set[str] = set()
        after: str | None = None
        while True:
            body: dict[str, Any] = {"max_num": size, "offset": 0, "order_by": "id:ASC",
                                    "fields": "id",
                                    "filter": [{"id": {"$gt": after}}] if after else []}
            page = self._call(lambda c, b=body: c.filter(module, b))  # type: ignore[misc]
            found = [str(r["id"]) for r in page.get("records") or [] if r.get("id")]
            ids.update(found)
            if not found or page.get("next_offset", -1) == -1:
                return ids
            after = max(found)


def _modules(object_name: str) -> tuple[str, ...]:
    try:
        return tuple(m.name for m in modules_of(object_name))
    except KeyError:
        raise ConnectorError(f"SugarCRM has no {object_name} here (it offers "
                             f"{', '.join(MODULES)}, activity)") from None


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text).astimezone(UTC) if text else None


def _pruned_between(since: datetime, until: datetime) -> bool:
    """Did a 1st of the month (Sugar's monthly prune of deleted rows) fall in between?"""
    return (since.year, since.month) != (until.year, until.month)


def _classify(exc: SugarError) -> ConnectorError:
    """Who must act: credentials (a person), quota (wait), outage (retry), or neither."""
    words = f"{exc.code}: {exc.message}"
    if exc.status == 401 or exc.code in AUTH_CODES:
        return AuthenticationError(
            f"SugarCRM refused the login: {words}",
            hint="Check the username and password (the user must be able to sign in to "
            "Sugar), the OAuth key (Admin → OAuth Keys) and the platform (Admin → Configure "
            "API Platforms).")
    if exc.status == 429:
        return QuotaExceeded(f"SugarCRM kept answering HTTP 429: {words}",
                             hint="The sync resumes from its checkpoint later.")
    if exc.transient:
        return SourceUnavailable(f"SugarCRM unavailable: HTTP {exc.status} {words}")
    return ConnectorError(f"SugarCRM refused the request: HTTP {exc.status} {words[:300]}")
