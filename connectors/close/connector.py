"""Close adapter: incremental reads through the official client, `closeio_api.API`.

Close lists page with `_skip`/`_limit`, and `_skip` has a ceiling per resource (a 400
beyond it). So every page opens a new window on `date_updated`: the next request asks for
`date_updated >= <the last stamp read>` ordered by it, skipping nothing (records sharing
that stamp are read again and dropped here). `_skip` stays near 0 however large the org,
and a record updated mid-read moves to the end instead of shifting the offsets of those
not read yet (which offset paging would silently skip). That is the window split taken to
its limit: a window per page.

Activities and tasks Close filters and sorts by `date_created` only: they are windowed
on creation, and the event log's `updated` events name the ones changed since, fetched by
id (`id__in`). Users are few and read whole (`/user/` has no date filter).

Deletes come from the event log (`/event/`, `action=deleted`), replayed since the last
sync with a lookback. Close keeps 30 days of it, counted on Close's clock (the `Date`
header of its answers): when the last replay is older than that, or with `reconcile`, a
`LiveIds` with every live id goes before the last checkpoint — and a resource windowed on
creation is first read again whole, its changes being in the log alone.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

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
    Upsert,
)
from connectors.close.auth import AuthMixin
from connectors.close.mapping import (
    CURSOR_FIELD,
    CUSTOM_FIELDS,
    EVENT_TYPES,
    SOURCES,
    close_datetime,
    map_record,
    parse_close_datetime,
)
from connectors.parts import read_parts

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "lookback_seconds": 600,
    "page_size": 100,  # Close's usual maximum `_limit`
    "max_skip": 250_000,  # the lowest ceiling Close documents for a resource
    "max_attempts": 6,
    "max_backoff_seconds": 30.0,
    "timeout_seconds": 60.0,
}
EVENT_RETENTION = timedelta(days=30)
# Replays this close to the edge of the log count as uncovered (clock skew, slow pages).
RETENTION_MARGIN = timedelta(hours=1)
WITH_TOTAL = ("lead", "opportunity")  # lists that answer `total_results`
# Read whole every sync with plain `_skip` paging: an organization's users are few, and
# Close documents no date filter or ordering on `/user/`.
UNWINDOWED = ("user",)
# Resources Close filters and sorts by `date_created` only (activities, tasks): windows
# on creation, changes from the event log. The others window on `date_updated`.
WINDOW_FIELD = {"activity/call": "date_created", "activity/email": "date_created",
                "activity/meeting": "date_created", "task": "date_created"}


class CloseConnector(AuthMixin, Connector):
    """Reads the common objects from one Close organization."""

    crm_type = "close"

    def __init__(self, secrets: Mapping[str, str], config: Mapping[str, Any] | None = None,
                 *, session: requests.Session | None = None) -> None:
        self.config = {**DEFAULTS, **(config or {})}
        self._connect(secrets, session)
        self._custom: dict[str, dict[str, str]] = {}

    # -- Connector interface ---------------------------------------------------------

    def check(self) -> CheckResult:
        try:
            me = self._get("me")
        except AuthenticationError as exc:
            return CheckResult(False, str(exc), field="api_key", hint=exc.hint)
        except ConnectorError as exc:
            return CheckResult(False, str(exc), hint=exc.hint)
        organizations = me.get("organizations") or []
        name = organizations[0].get("name") if organizations and isinstance(
            organizations[0], dict) else None
        return CheckResult(True, f"Connected to Close ({name})" if name else "Connected to Close")

    def objects(self) -> list[ObjectInfo]:
        return [ObjectInfo(name=common, source_name=", ".join(resources))
                for common, resources in SOURCES.items()]

    def count(self, object_name: str) -> int:
        resources = _sources(object_name)
        if resources[0] in WITH_TOTAL:
            return int(self._get(resources[0], {"_limit": 1, "_fields": "id"})["total_results"])
        return len(self.live_ids(object_name).source_ids)

    def map_record(self, object_name: str, record: Mapping[str, Any]) -> Upsert | Quarantine:
        custom = self.custom_fields(object_name) if object_name in CUSTOM_FIELDS else None
        return map_record(object_name, record, custom)

    def custom_fields(self, object_name: str = "account") -> dict[str, str]:
        """An object's custom fields by name -> the key its records carry them under
        (`custom.cf_…`), from `/custom_field/lead/` or `/custom_field/opportunity/`.

        The fields the mapping reads ("Industry", "List Price", …) are found by name,
        exactly or else ignoring case. An organization that names them otherwise says so
        in the connection's config: `lead_custom_fields: {"industry": "Sector", ...}`,
        `opportunity_custom_fields: {"list_amount": "List Value"}` (common column -> its
        name); the mapping then finds that field's key under the usual name.
        """
        if object_name not in self._custom:
            resource, defaults, setting = CUSTOM_FIELDS[object_name]
            data = self._get(f"custom_field/{resource}").get("data") or []
            keys = {f["name"]: f"custom.{f['id']}" for f in data
                    if isinstance(f, dict) and isinstance(f.get("name"), str) and "id" in f}
            folded: dict[str, str] = {}
            for name, field_key in keys.items():
                folded.setdefault(name.casefold(), field_key)

            def find(name: str) -> str | None:
                return keys.get(name) or folded.get(name.casefold())

            named = dict(self.config.get(setting) or {})
            found = dict(keys)
            for default, column in defaults.items():
                wanted = named.get(column)
                key = find(str(wanted)) if wanted else None
                if wanted and key is None:
                    log.warning("Close has no %s custom field named %r (config %s.%s); "
                                "looking for %r", resource, wanted, setting, column, default)
                key = key or find(default)
                if key is not None:
                    found[default] = key
            self._custom[object_name] = found
        return self._custom[object_name]

    def read(self, object_name: str, state: Mapping[str, Any] | None, *,
             reconcile: bool = False) -> Iterator[Change]:
        resources = _sources(object_name)
        if len(resources) > 1:  # activities: calls, e-mails, meetings and tasks
            yield from read_parts(
                lambda resource, part: self._read_resource(object_name, resource, part),
                lambda: self.live_ids(object_name), resources, state, reconcile=reconcile)
            return
        covered, final = yield from self._read_resource(object_name, resources[0], state)
        if reconcile or not covered:
            yield self.live_ids(object_name)
        yield Checkpoint(final)

    def _read_resource(self, object_name: str, resource: str, state: Mapping[str, Any] | None
                       ) -> Generator[Change, None, tuple[bool, dict[str, Any]]]:
        """Pages since the state's cursor, then what the event log says: (log covered the
        gap?, final state). The caller yields the final state, after a `LiveIds` if owed.

        A resource Close windows by `date_updated` brings its changes itself; one windowed
        by `date_created` (activities, tasks) brings only new records, and the log's
        `updated` events name the changed ones, fetched by id. When the log no longer covers
        the gap, such a resource is read again whole (`resync_since` marks a re-read under
        way, so a crash resumes it), and the caller reconciles ids.
        """
        state = state or {}
        key = WINDOW_FIELD.get(resource, CURSOR_FIELD)
        lookback = timedelta(seconds=int(self.config["lookback_seconds"]))
        cursor = state.get("cursor")
        fields = list(state.get("fields") or [])
        # Where the event log was last replayed: kept apart from the cursor, which moves
        # page by page, so a crash mid-read never skips a stretch of the log.
        events_since = state.get("events_since", cursor)
        covered = not events_since or self._log_covers(parse_close_datetime(events_since))
        resync_since = state.get("resync_since")
        if key != CURSOR_FIELD and not covered and resync_since is None:
            cursor, resync_since = None, close_datetime(self.server_now())
        start = parse_close_datetime(cursor) - lookback if cursor else None
        mark: str | None = resync_since
        seen: set[str] = set()
        for records, position in self._scan(resource, start, key=key):
            if mark is None:  # Close's time at the first answer: the next replay's start
                mark = close_datetime(self.server_now())
            for record in records:
                seen.update(record)
                yield self.map_record(object_name, record)
            if position is not None:
                cursor = close_datetime(position)
            if seen:
                fields = sorted(seen)
            # A first read that crashes resumes with the log replayed from its start.
            checkpoint = _state(cursor, fields, events_since or mark)
            if resync_since:
                checkpoint["resync_since"] = resync_since
            yield Checkpoint(checkpoint)
        if events_since and covered and resource in EVENT_TYPES:
            since = parse_close_datetime(events_since)
            if key != CURSOR_FIELD:
                yield from self._updated_since(object_name, resource, since)
            yield from self._deletes(EVENT_TYPES[resource], since)
        return covered and not resync_since, _state(
            cursor, fields, mark or close_datetime(self.server_now()))

    def _log_covers(self, since: datetime) -> bool:
        """Does the event log (30 days, on Close's clock) still reach back to `since`?

        Asked before the read (a resource windowed on creation must then be read whole),
        with one cheap call for Close's time now: its answer's `Date`.
        """
        self._get("me")
        return since >= self.server_now() - EVENT_RETENTION + RETENTION_MARGIN

    def live_ids(self, object_name: str) -> LiveIds:
        """Every live id (of every resource read), stamped with Close's time before the
        listing began."""
        as_of = self.server_now()
        ids: set[str] = set()
        for resource in _sources(object_name):
            key = WINDOW_FIELD.get(resource, CURSOR_FIELD)
            for records, _ in self._scan(resource, None, fields=f"id,{key}", key=key):
                ids.update(str(r["id"]) for r in records if "id" in r)
        return LiveIds(frozenset(ids), as_of)

    # -- reading -----------------------------------------------------------------------

    def _scan(self, resource: str, start: datetime | None, fields: str | None = None,
              key: str = CURSOR_FIELD) -> Iterator[tuple[list[dict[str, Any]], datetime | None]]:
        """Pages of records in `key` order (`date_updated`, or `date_created` where Close
        sorts by nothing else) from `start`, each page a new window.

        Yields (records not yielded before, the last stamp read so far). Records sharing
        the window's opening stamp are asked for again and dropped here; only when more
        of them than half a page share one stamp does the next request skip them. A page
        out of order or below its window means Close ignored the window: an error, never
        a silent loop or a skipped record.
        """
        if resource in UNWINDOWED:
            yield from self._scan_all(resource, fields)
            return
        page_size = int(self.config["page_size"])
        max_skip = int(self.config["max_skip"])
        position, ties = start, set[str]()
        while True:
            skip = len(ties) if len(ties) > page_size // 2 else 0
            if skip > max_skip:
                raise ConnectorError(
                    f"more than {max_skip:,} Close {resource} records share the update time "
                    f"{position}: too many to page through")
            params: dict[str, Any] = {"_order_by": key, "_limit": page_size, "_skip": skip}
            if position is not None:
                params[f"{key}__gte"] = close_datetime(position)
            if fields:
                params["_fields"] = fields
            page = self._get(resource, params)
            data = [r for r in page.get("data") or [] if isinstance(r, dict)]
            fresh = [r for r in data
                     if not (r.get("id") in ties and _stamp(r, key) == position)]
            for record in data:
                stamp = _stamp(record, key)
                if stamp is None:
                    continue  # unreadable: the mapping quarantines it
                if position is not None and stamp < position:
                    raise ConnectorError(
                        f"Close answered {resource} out of {key} order (a record of "
                        f"{close_datetime(stamp)} after {close_datetime(position)})")
                if stamp != position:
                    position, ties = stamp, set()
                ties.add(str(record.get("id")))
            yield fresh, position
            if not page.get("has_more") or not data:
                return
            if not fresh:
                raise ConnectorError(f"Close repeated a page of {resource}: cannot go on")

    def _scan_all(self, resource: str, fields: str | None
                  ) -> Iterator[tuple[list[dict[str, Any]], datetime | None]]:
        """A small resource read whole with `_skip` paging, every sync (no window)."""
        page_size = int(self.config["page_size"])
        skip, newest = 0, None
        while True:
            params: dict[str, Any] = {"_limit": page_size, "_skip": skip}
            if fields:
                params["_fields"] = fields
            page = self._get(resource, params)
            data = [r for r in page.get("data") or [] if isinstance(r, dict)]
            stamps = [s for s in map(_stamp, data) if s is not None]
            newest = max([*stamps, *([newest] if newest else [])], default=None)
            yield data, newest
            if not page.get("has_more") or not data:
                return
            skip += len(data)

    def _events(self, object_type: str, action: str, since: datetime
                ) -> Iterator[dict[str, Any]]:
        """The log's events of one type and action since `since` (less the lookback)."""
        lookback = timedelta(seconds=int(self.config["lookback_seconds"]))
        params: dict[str, Any] = {"object_type": object_type, "action": action,
                                  f"{CURSOR_FIELD}__gte": close_datetime(since - lookback)}
        while True:
            page = self._get("event", params)
            yield from (e for e in page.get("data") or [] if isinstance(e, dict))
            if not page.get("cursor_next"):
                return
            # The cursor carries the position; the other filters are sent again.
            params = {"object_type": object_type, "action": action,
                      "_cursor": page["cursor_next"]}

    def _deletes(self, object_type: str, since: datetime) -> Iterator[Delete]:
        """Replay the event log's deletes since `since`."""
        for event in self._events(object_type, "deleted", since):
            stamp = _stamp(event)
            if stamp and event.get("object_id"):
                yield Delete(str(event["object_id"]), stamp)

    def _updated_since(self, object_name: str, resource: str, since: datetime
                       ) -> Iterator[Upsert | Quarantine]:
        """Records the log says changed since `since`, fetched by id (`id__in`) as they are
        now; one deleted meanwhile is not found, and its `deleted` event says so.

        `created` events count too: Close folds a change made soon after a creation into
        the creation's event, which then carries the change's time and no `updated`.
        """
        ids = list(dict.fromkeys(
            str(e["object_id"]) for action in ("created", "updated")
            for e in self._events(EVENT_TYPES[resource], action, since) if e.get("object_id")))
        batch = int(self.config["page_size"])
        for index in range(0, len(ids), batch):
            chunk = ids[index:index + batch]
            page = self._get(resource, {"id__in": ",".join(chunk), "_limit": len(chunk)})
            for record in page.get("data") or []:
                if isinstance(record, dict):
                    yield self.map_record(object_name, record)


def _sources(object_name: str) -> tuple[str, ...]:
    try:
        return SOURCES[object_name]
    except KeyError:
        raise ConnectorError(f"Close has no {object_name} (it offers "
                             f"{', '.join(SOURCES)})") from None


def _stamp(record: Mapping[str, Any], key: str = CURSOR_FIELD) -> datetime | None:
    value = record.get(key)
    try:
        return parse_close_datetime(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _state(cursor: str | None, fields: list[str], events_since: str | None) -> dict[str, Any]:
    state: dict[str, Any] = {"cursor": cursor, "fields": fields}
    if events_since is not None:
        state["events_since"] = events_since
    return state
