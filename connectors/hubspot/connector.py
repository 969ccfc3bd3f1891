"""HubSpot adapter: incremental reads through the official client (`hubspot-api-client`).

A first read lists every record (`GET /crm/v3/objects/{type}`, paged by id with `after`):
the list endpoints read the records themselves, with no result cap and no index lag. Its
checkpoints carry the list position, and the time it began becomes the cursor; the same
read then searches the window from there (below), for what changed while the list ran —
across several syncs when a list was resumed. Likewise a read resuming a window under way
(its checkpoint names the last id read) follows it with a fresh window.

Later reads search (`POST …/search`) a *window* of modification dates from `cursor -
lookback`, ordered by id: `hs_lastmodifieddate` (`lastmodifieddate` for contacts) `>=` the
window's start AND `hs_object_id > <last id read>`, sorted by `hs_object_id` (HubSpot allows
one sort, and ties on a date would have no order). The window is open-ended; HubSpot's time
when it began (its `Date` header) becomes the next cursor. HubSpot returns at most 10,000
results per query — a page past that is a 400 — so the query is *re-anchored* at every
page: the same window from the last id read, `after` never used. That is re-anchoring
before the cap taken to its limit, and it is also what keeps a read exact: with `after`
offsets, a record modified mid-read moves in the index (or out of it while the index
catches up) and every record behind it moves up one place, so the next page would skip
one — a record the next window may no longer reach. A window of any size is read this way.

The lookback (10 minutes) is larger than HubSpot's search index lag (a change reaches search
seconds to a minute after its write, so a read may miss what was written just before it)
plus a write's late commit (a stamp older than its arrival): each window starts that far
before the time the last one began, so a change invisible at one read is inside the next
window. Re-reading the
overlap changes nothing (the warehouse keeps a version once).

Deletes. HubSpot deletes by archiving, and archiving does not move the modification date:
search never sees an archive. Every read therefore lists the archived records
(`?archived=true`, kept 90 days by HubSpot) and turns those archived since the last such
scan (less the lookback) into `Delete`s at their `archivedAt`. When the last scan is older
than the 90 days, or with `reconcile`, a `LiveIds` of every live id goes before the last
checkpoint.

Owners are the users: few, read whole every sync (active and archived ones). A deal's
company and a line item's deal come from the v4 association batch reads, a deal's stage
label and closed / won flags from the deal pipelines.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Generator, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import requests

from connectors.base import (
    Change,
    Checkpoint,
    CheckResult,
    Connector,
    ConnectorError,
    Delete,
    LiveIds,
    ObjectInfo,
    Quarantine,
    Upsert,
)
from connectors.hubspot.auth import AuthMixin
from connectors.hubspot.mapping import (
    MODIFIED_PROPERTY,
    OBJECT_TYPES,
    PROPERTIES,
    Stages,
    hubspot_stamp,
    map_record,
    parse_stamp,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULTS: dict[str, Any] = {
    "lookback_seconds": 600,
    "page_size": 100,  # HubSpot's maximum for list pages (search allows 200)
    "max_search_results": 10_000,  # HubSpot's cap per search query
    "max_attempts": 6,
    "max_backoff_seconds": 30.0,
    "timeout_seconds": 60.0,
}
ARCHIVE_RETENTION = timedelta(days=90)  # how long HubSpot lists archived records
RETENTION_MARGIN = timedelta(days=1)
# Associations read for each type: (to type, the key the mapping reads them under).
ASSOCIATED = {"deals": "companies", "line_items": "deals"}


class HubSpotConnector(AuthMixin, Connector):
    """Reads the common objects from one HubSpot portal."""

    crm_type = "hubspot"

    def __init__(self, secrets: Mapping[str, str], config: Mapping[str, Any] | None = None,
                 *, session: requests.Session | None = None) -> None:
        self.config = {**DEFAULTS, **(config or {})}
        self._setup_auth(secrets, self.config, session)
        self._stages: dict[str, tuple[str, bool, bool]] | None = None

    # -- Connector interface ---------------------------------------------------------

    def check(self) -> CheckResult:
        try:
            self._call(lambda: self.client.crm.companies.basic_api.get_page(limit=1))
        except ConnectorError as exc:
            auth = getattr(exc, "kind", "") == "credentials"
            return CheckResult(False, str(exc), field=self.secret_field if auth else None,
                               hint=exc.hint)
        return CheckResult(True, "Connected to HubSpot")

    def objects(self) -> list[ObjectInfo]:
        return [ObjectInfo(name=common, source_name=kind)
                for common, kind in OBJECT_TYPES.items()]

    def count(self, object_name: str) -> int:
        kind = _kind(object_name)
        if kind == "owners":
            return len(self._owners())
        found = self._call(lambda: self._api(kind).search_api.do_search(
            {"filterGroups": [], "limit": 1, "properties": ["hs_object_id"]}))
        return int(found.total)

    def map_record(self, object_name: str, record: Mapping[str, Any]) -> Upsert | Quarantine:
        return map_record(object_name, record, self.stages() if object_name == "opportunity"
                          else None)

    def read(self, object_name: str, state: Mapping[str, Any] | None, *,
             reconcile: bool = False) -> Iterator[Change]:
        kind = _kind(object_name)
        state = dict(state or {})
        if kind == "owners":
            owners = self._owners()
            for owner in owners:
                yield map_record("user", owner)
            yield Checkpoint({"cursor": None, "fields": sorted({k for o in owners for k in o})})
            return
        # A read that completes holds every change made before it began. What changed
        # while a list ran (over several syncs, if it was resumed) is in the search window
        # from the list's start; what changed behind a resumed window's last id, in a new
        # window from the resumed one's start: both are read before the read ends.
        if state.get("cursor") is None:
            state = yield from self._list_all(object_name, kind, state)
            yield Checkpoint(state)
        elif state.get("window"):
            state = yield from self._search_window(object_name, kind, state)
            yield Checkpoint(state)
        state = yield from self._search_window(object_name, kind, state)
        covered = yield from self._archived(kind, state)
        if reconcile or not covered:
            yield self.live_ids(object_name)
        yield Checkpoint(state)

    def stages(self) -> Stages:
        """Deal stage id -> (label, closed, won), from every deal pipeline."""
        if self._stages is None:
            pipelines = self._call(
                lambda: self.client.crm.pipelines.pipelines_api.get_all("deals")).results
            self._stages = {}
            for pipeline in pipelines:
                for stage in pipeline.stages:
                    meta = stage.metadata or {}
                    closed = str(meta.get("isClosed", "false")).lower() == "true"
                    won = closed and _fraction(meta.get("probability")) == 1
                    self._stages[stage.id] = (stage.label, closed, won)
        return self._stages

    def live_ids(self, object_name: str) -> LiveIds:
        """Every live id, stamped with HubSpot's time before the listing began."""
        kind = _kind(object_name)
        self._call(lambda: self.client.crm.companies.basic_api.get_page(limit=1))
        as_of = self.server_now()
        ids: set[str] = set()
        after: str | None = None
        while True:
            page = self._page(kind, after, ["hs_object_id"], archived=False)
            ids.update(str(r.id) for r in page.results)
            after = _next_after(page)
            if after is None:
                return LiveIds(frozenset(ids), as_of)

    # -- reading -----------------------------------------------------------------------

    def _api(self, kind: str) -> Any:
        return getattr(self.client.crm, kind)

    def _properties(self, kind: str) -> list[str]:
        return [*PROPERTIES[kind], MODIFIED_PROPERTY[kind], "hs_object_id"]

    def _page(self, kind: str, after: str | None, properties: list[str], *,
              archived: bool) -> Any:
        limit = min(int(self.config["page_size"]), 100)
        kwargs: dict[str, Any] = {"limit": limit, "properties": properties,
                                  "archived": archived}
        if after:
            kwargs["after"] = after
        return self._call(lambda: self._api(kind).basic_api.get_page(**kwargs))

    def _records(self, kind: str, results: list[Any]) -> list[dict[str, Any]]:
        """The page's records as plain JSON (what `raw` keeps), with their associations."""
        records = [_record(r) for r in results]
        to_kind = ASSOCIATED.get(kind)
        if to_kind and records:
            found = self._associations(kind, to_kind, [r["id"] for r in records])
            for record in records:
                record["associations"] = {to_kind: found.get(record["id"], [])}
        return records

    def _associations(self, kind: str, to_kind: str, ids: list[str]) -> dict[str, list[str]]:
        """from id -> associated ids, the primary (HubSpot-defined type 5 or 1) first."""
        answer = self._call(lambda: self.client.crm.associations.v4.batch_api.get_page(
            kind, to_kind, {"inputs": [{"id": i} for i in ids]}))
        found: dict[str, list[str]] = {}
        for result in answer.results or []:
            targets = sorted(result.to or [], key=lambda t: (
                not any(a.type_id in (1, 5) for a in t.association_types or []),
                int(t.to_object_id)))
            found[str(result._from.id)] = [str(t.to_object_id) for t in targets]
        return found

    def _emit(self, object_name: str, kind: str, results: list[Any], fields: set[str]
              ) -> Iterator[Upsert | Quarantine]:
        for record in self._records(kind, results):
            fields.update(record["properties"])
            yield self.map_record(object_name, record)

    def _list_all(self, object_name: str, kind: str, state: dict[str, Any]
                  ) -> Generator[Change, None, dict[str, Any]]:
        """The first read: every live record in id order; resumes at `list_after`."""
        fields: set[str] = set(state.get("fields") or [])
        started = state.get("list_started")
        if started is None:
            self._call(lambda: self.client.crm.companies.basic_api.get_page(limit=1))
            started = _iso(self.server_now())
        after = state.get("list_after")
        while True:
            page = self._page(kind, after, self._properties(kind), archived=False)
            yield from self._emit(object_name, kind, page.results, fields)
            after = _next_after(page)
            if after is None:
                return {"cursor": started, "fields": sorted(fields),
                        "archived_since": state.get("archived_since", started)}
            yield Checkpoint({"cursor": None, "list_after": after, "list_started": started,
                              "fields": sorted(fields)})

    def _search_window(self, object_name: str, kind: str, state: dict[str, Any]
                       ) -> Generator[Change, None, dict[str, Any]]:
        """Records modified since cursor - lookback, by id, a new query at every page;
        resumes a window under way (`window`)."""
        fields: set[str] = set(state.get("fields") or [])
        window = dict(state.get("window") or {})
        if not window:
            self._call(lambda: self.client.crm.companies.basic_api.get_page(limit=1))
            lookback = timedelta(seconds=int(self.config["lookback_seconds"]))
            window = {"start": _iso(parse_stamp(state["cursor"]) - lookback),
                      "end": _iso(self.server_now()), "after_id": 0}
        stamp = MODIFIED_PROPERTY[kind]
        size = min(int(self.config["page_size"]), 200, int(self.config["max_search_results"]))
        while True:
            request = {
                "filterGroups": [{"filters": [
                    {"propertyName": stamp, "operator": "GTE",
                     "value": hubspot_stamp(parse_stamp(window["start"]))},
                    {"propertyName": "hs_object_id", "operator": "GT",
                     "value": str(window["after_id"])}]}],
                "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                "properties": self._properties(kind), "limit": size}
            page = self._search(kind, request)
            yield from self._emit(object_name, kind, page.results, fields)
            ids = [int(r.id) for r in page.results]
            if _next_after(page) is None or not ids:
                return {"cursor": window["end"], "fields": sorted(fields),
                        "archived_since": state.get("archived_since", state["cursor"])}
            if ids != sorted(ids) or ids[0] <= int(window["after_id"]):
                raise ConnectorError(f"HubSpot answered a {kind} search out of id order")
            window["after_id"] = ids[-1]  # the next page is a new query from here
            yield Checkpoint({**state, "window": dict(window), "fields": sorted(fields)})

    def _archived(self, kind: str, state: dict[str, Any]) -> Generator[Change, None, bool]:
        """Deletes: records archived since the last scan (less the lookback), from the
        archived list; moves `archived_since` in `state`. Returns whether the archive
        still covers the gap (HubSpot lists archived records for 90 days)."""
        since = parse_stamp(state.get("archived_since") or state["cursor"])
        self._call(lambda: self.client.crm.companies.basic_api.get_page(limit=1))
        now = self.server_now()
        covered = since >= now - ARCHIVE_RETENTION + RETENTION_MARGIN
        lookback = timedelta(seconds=int(self.config["lookback_seconds"]))
        after: str | None = None
        while True:
            page = self._page(kind, after, ["hs_object_id"], archived=True)
            for record in page.results:
                archived_at = _aware(record.archived_at) or _aware(record.updated_at)
                if archived_at and archived_at >= since - lookback:
                    yield Delete(str(record.id), archived_at)
            after = _next_after(page)
            if after is None:
                break
        state["archived_since"] = _iso(now)
        return covered

    def _search(self, kind: str, request: dict[str, Any]) -> Any:
        return self._call(lambda: self._api(kind).search_api.do_search(request))

    def _owner_page(self, kwargs: dict[str, Any]) -> Any:
        return self._call(lambda: self.client.crm.owners.owners_api.get_page(**kwargs))

    def _owners(self) -> list[dict[str, Any]]:
        owners: list[dict[str, Any]] = []
        for archived in (False, True):
            after: str | None = None
            while True:
                kwargs: dict[str, Any] = {"limit": 100, "archived": archived}
                if after:
                    kwargs["after"] = after
                page = self._owner_page(kwargs)
                owners += [_owner(o) for o in page.results]
                after = _next_after(page)
                if after is None:
                    break
        return owners

    def server_now(self) -> datetime:
        return self._server_now or datetime.now(UTC)

    def _note_answer(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """HubSpot's clock from the `Date` header, and its `X-HubSpot-RateLimit-*`: with
        nothing remaining in the interval, the next call waits for it to pass instead of
        earning a 429."""
        with contextlib.suppress(KeyError, TypeError, ValueError):
            self._server_now = parsedate_to_datetime(response.headers["Date"]).astimezone(UTC)
        remaining = response.headers.get("X-HubSpot-RateLimit-Remaining")
        interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
        if remaining == "0" and interval and interval.isdigit() and response.status_code < 400:
            self._pause = min(int(interval) / 1000, float(self.config["max_backoff_seconds"]))

    def _wait_for_window(self) -> None:
        if self._pause:
            log.info("HubSpot rate limit interval spent; waiting %.1fs", self._pause)
            time.sleep(self._pause)
            self._pause = 0.0


def _kind(object_name: str) -> str:
    try:
        return OBJECT_TYPES[object_name]
    except KeyError:
        raise ConnectorError(f"HubSpot has no {object_name} here (it offers "
                             f"{', '.join(OBJECT_TYPES)})") from None


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _fraction(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _next_after(page: Any) -> str | None:
    paging = getattr(page, "paging", None)
    following = getattr(paging, "next", None) if paging else None
    return str(following.after) if following and following.after else None


def _stamp_text(value: Any) -> str | None:
    moment = _aware(value)
    if moment is None:
        return None
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _record(model: Any) -> dict[str, Any]:
    """A client model of a CRM object as the JSON HubSpot sent."""
    record: dict[str, Any] = {
        "id": str(model.id), "properties": dict(model.properties or {}),
        "createdAt": _stamp_text(model.created_at), "updatedAt": _stamp_text(model.updated_at),
        "archived": bool(model.archived)}
    if getattr(model, "archived_at", None):
        record["archivedAt"] = _stamp_text(model.archived_at)
    return record


def _owner(model: Any) -> dict[str, Any]:
    return {"id": str(model.id), "email": model.email, "firstName": model.first_name,
            "lastName": model.last_name, "userId": model.user_id,
            "createdAt": _stamp_text(model.created_at), "updatedAt": _stamp_text(model.updated_at),
            "archived": bool(model.archived)}

