"""The Close sandbox's state: one SQLite file of JSON documents and the event log.

Every object is a JSON document keyed by its Close id, with `date_created` and
`date_updated` copied into indexed columns so list filters and `_order_by` run in SQL.
Every create, update and delete appends to `event`, as Close's event log does (a change
within seconds of another to the same object updates that event instead); events
older than the retention (30 days on the sandbox's clock) are dropped when the log is
read, so a sync paused too long really finds the log incomplete.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.sandbox_kit.fault_wsgi import LATE_BY
from connectors.sandbox_kit.state import SqliteState

EVENT_RETENTION = timedelta(days=30)
EVENT_MERGE = timedelta(seconds=10)  # changes this close together share one event
_ALPHABET = string.ascii_letters + string.digits

SCHEMA = """
CREATE TABLE IF NOT EXISTS object (
    kind TEXT NOT NULL, id TEXT PRIMARY KEY, date_created TEXT NOT NULL,
    date_updated TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS object_updated ON object (kind, date_updated, id);
CREATE INDEX IF NOT EXISTS object_created ON object (kind, date_created, id);
CREATE TABLE IF NOT EXISTS event (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, date_created TEXT NOT NULL,
    date_updated TEXT NOT NULL, object_type TEXT NOT NULL, object_id TEXT NOT NULL,
    lead_id TEXT, action TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS api_key (key TEXT PRIMARY KEY);
"""

# The store kind of the opportunity custom fields (`/custom_field/opportunity/`); the lead
# custom fields are kind `custom_field`.
OPPORTUNITY_CUSTOM_FIELD_KIND = "opportunity_custom_field"
# The id prefix Close gives each kind of object.
PREFIXES = {"lead": "lead", "contact": "cont", "opportunity": "oppo", "user": "user",
            "activity": "acti", "task": "task", "status": "stat", "custom_field": "cf",
            "event": "ev", "organization": "orga"}


def close_time(value: datetime) -> str:
    """Close's spelling of a date-time: ISO 8601, microseconds, `+00:00`."""
    utc = value.astimezone(UTC)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S.%f}+00:00"


def parse_time(text: str) -> datetime:
    """An ISO date or date-time (Z or offset; naive is UTC) as aware UTC; ValueError else."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def new_id(kind: str, rng: Callable[[int], str] | None = None) -> str:
    """`lead_` + 43 letters and digits, the shape of Close's ids."""
    body = rng(43) if rng else "".join(secrets.choice(_ALPHABET) for _ in range(43))
    return f"{PREFIXES[kind]}_{body}"


@dataclass(frozen=True)
class ListQuery:
    """One list request after parsing: filters in SQL terms, order, skip and limit."""

    kind: str
    conditions: tuple[tuple[str, str, str], ...] = ()  # (column, operator, value)
    equals: tuple[tuple[str, str], ...] = ()  # (document key, value): lead_id, _type...
    order: tuple[tuple[str, bool], ...] = (("date_created", True),)  # (column, descending)
    skip: int = 0
    limit: int = 100
    ids: tuple[str, ...] | None = None  # `id__in`


class CloseStore(SqliteState):
    """The organization's documents, event log and API keys (the kit's SQLite state)."""

    def __init__(self, path: Path, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(path, SCHEMA, clock)

    def now(self) -> str:
        return close_time(self.clock())

    def write_stamp(self) -> str:
        """A write's `date_updated`: now, or earlier under the late-commit fault (a write
        that becomes visible after readers have passed its stamp)."""
        return close_time(self.clock() - LATE_BY.get())

    # -- setup ------------------------------------------------------------------

    def is_empty(self) -> bool:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM object").fetchone()[0]) == 0

    def add_api_key(self, key: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO api_key VALUES (?)", (key,))

    def key_is_valid(self, key: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM api_key WHERE key = ?", (key,)).fetchone() \
                is not None

    def load(self, kind: str, documents: Sequence[Mapping[str, Any]]) -> None:
        """Seed documents as they are (their own stamps), without events: the org's past."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO object VALUES (?, ?, ?, ?, ?)",
                [(kind, d["id"], d["date_created"], d["date_updated"], json.dumps(d))
                 for d in documents])

    # -- reads ------------------------------------------------------------------

    def get(self, kind: str, object_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM object WHERE kind = ? AND id = ?",
                                   (kind, object_id)).fetchone()
        return json.loads(row[0]) if row else None

    def select(self, query: ListQuery) -> tuple[list[dict[str, Any]], bool, int]:
        """(page, has_more, total_results) for a list request."""
        where = ["kind = ?"]
        args: list[Any] = [query.kind]
        for column, operator, value in query.conditions:
            where.append(f"{column} {operator} ?")
            args.append(value)
        for key, value in query.equals:
            where.append(f"json_extract(body, '$.{key}') = ?")
            args.append(value)
        if query.ids is not None:
            where.append(f"id IN ({','.join('?' * len(query.ids)) or 'NULL'})")
            args.extend(query.ids)
        order = "".join(f"{c} {'DESC' if d else 'ASC'}, " for c, d in query.order)
        sql = f"FROM object WHERE {' AND '.join(where)}"
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) {sql}", args).fetchone()[0]
            rows = self._db.execute(
                f"SELECT body {sql} ORDER BY {order}id ASC LIMIT ? OFFSET ?",
                [*args, query.limit + 1, query.skip]).fetchall()
        page = [json.loads(r[0]) for r in rows[: query.limit]]
        return page, len(rows) > query.limit, total

    def count(self, kind: str, **equals: str) -> int:
        return self.select(ListQuery(kind, equals=tuple(equals.items()), limit=0))[2]

    # -- writes -----------------------------------------------------------------

    def insert(self, kind: str, document: Mapping[str, Any], *, object_type: str | None = None,
               lead_id: str | None = None) -> dict[str, Any]:
        stamp = self.write_stamp()
        body = {**document, "id": document.get("id") or new_id(kind),
                "date_created": stamp, "date_updated": stamp}
        with self.transaction() as db:
            db.execute("INSERT INTO object VALUES (?, ?, ?, ?, ?)",
                       (kind, body["id"], stamp, stamp, json.dumps(body)))
            self._event(db, object_type or kind, body["id"], lead_id, "created", body, None)
        return body

    def update(self, kind: str, object_id: str, changes: Mapping[str, Any], *,
               object_type: str | None = None) -> dict[str, Any] | None:
        """Apply changes (Close's PUT behaves as a PATCH) and move `date_updated` forward."""
        with self.transaction() as db:
            row = db.execute("SELECT body FROM object WHERE kind = ? AND id = ?",
                             (kind, object_id)).fetchone()
            if row is None:
                return None
            before = json.loads(row[0])
            stamp = max(self.write_stamp(), _later_than(before["date_updated"]))
            body = {**before, **changes, "id": object_id, "date_created": before["date_created"],
                    "date_updated": stamp}
            db.execute("UPDATE object SET date_updated = ?, body = ? WHERE id = ?",
                       (stamp, json.dumps(body), object_id))
            self._event(db, object_type or kind, object_id, body.get("lead_id"), "updated",
                        body, before)
        return body

    def delete(self, kind: str, object_id: str, *,
               object_type: Callable[[Mapping[str, Any]], str] | None = None) -> bool:
        """Delete an object (a lead takes its contacts, opportunities and activities along);
        each deleted object gets its own `deleted` event."""
        with self.transaction() as db:
            row = db.execute("SELECT kind, body FROM object WHERE kind = ? AND id = ?",
                             (kind, object_id)).fetchone()
            if row is None:
                return False
            doomed = [(row[0], json.loads(row[1]))]
            if kind == "lead":
                doomed += [(k, json.loads(b)) for k, b in db.execute(
                    "SELECT kind, body FROM object WHERE kind != 'lead' AND "
                    "json_extract(body, '$.lead_id') = ?", (object_id,))]
            for doomed_kind, body in doomed:
                db.execute("DELETE FROM object WHERE id = ?", (body["id"],))
                name = object_type(body) if object_type else doomed_kind
                self._event(db, name, body["id"], body.get("lead_id", body["id"]), "deleted",
                            None, body)
        return True

    def _event(self, db: sqlite3.Connection, object_type: str, object_id: str,
               lead_id: str | None, action: str, data: Mapping[str, Any] | None,
               previous: Mapping[str, Any] | None) -> None:
        stamp = self.now()
        changed = sorted(k for k in (data or {}) if previous and previous.get(k) != data.get(k)
                         and k != "date_updated") if data and previous else []
        event_id, created = new_id("event"), stamp
        if action == "updated":
            # As Close does, a change soon after another to the same object updates that
            # event (its action, id and date_created stay) instead of logging a new one.
            merged = db.execute(
                "SELECT seq, id, date_created, action, body FROM event WHERE object_id = ? "
                "AND action IN ('created', 'updated') AND date_updated >= ? "
                "ORDER BY seq DESC LIMIT 1",
                (object_id, close_time(self.clock() - EVENT_MERGE))).fetchone()
            if merged is not None:
                db.execute("DELETE FROM event WHERE seq = ?", (merged[0],))
                event_id, created, action = merged[1], merged[2], merged[3]
                earlier = json.loads(merged[4])
                previous = earlier["previous_data"]
                changed = sorted({*earlier["changed_fields"], *changed})
        body = {"data": data, "previous_data": previous, "changed_fields": changed,
                "meta": {}, "user_id": None, "request_id": None, "api_key_id": None,
                "organization_id": self.meta("organization_id")}
        db.execute(
            "INSERT INTO event (id, date_created, date_updated, object_type, object_id, "
            "lead_id, action, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (event_id, created, stamp, object_type, object_id, lead_id, action,
             json.dumps(body)))

    # -- the event log ----------------------------------------------------------

    def events(self, filters: Mapping[str, str], conditions: Sequence[tuple[str, str, str]],
               before_seq: int | None, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        """Newest first; (events, the seq to continue below, or None at the end)."""
        cutoff = close_time(self.clock() - EVENT_RETENTION)
        where: list[str] = ["date_created >= ?"]
        args: list[Any] = [cutoff]
        for column, value in filters.items():
            where.append(f"{column} = ?")
            args.append(value)
        for column, operator, value in conditions:
            where.append(f"{column} {operator} ?")
            args.append(value)
        if before_seq is not None:
            where.append("seq < ?")
            args.append(before_seq)
        with self.transaction() as db:
            db.execute("DELETE FROM event WHERE date_created < ?", (cutoff,))
            rows = db.execute(
                "SELECT seq, id, date_created, date_updated, object_type, object_id, lead_id, "
                f"action, body FROM event WHERE {' AND '.join(where)} ORDER BY seq DESC "
                "LIMIT ?", [*args, limit + 1]).fetchall()
        events = [{"id": r[1], "date_created": r[2], "date_updated": r[3], "object_type": r[4],
                   "object_id": r[5], "lead_id": r[6], "action": r[7], **json.loads(r[8])}
                  for r in rows[:limit]]
        return events, (rows[limit - 1][0] if len(rows) > limit else None)


def _later_than(stamp: str) -> str:
    """One microsecond after `stamp`: a write always moves `date_updated` forward, even
    when the clock stands still (tests freeze it)."""
    return close_time(parse_time(stamp) + timedelta(microseconds=1))
