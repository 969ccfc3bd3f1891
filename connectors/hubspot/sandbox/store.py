"""The HubSpot sandbox's state: one SQLite file of CRM objects, their versions, associations,
owners, tokens and settings.

Why versions: HubSpot's search index lags its writes (a change reaches `/search` seconds
after the write that made it, while the list and read endpoints show it at once). The
store keeps every written version of an object with the time it was written; search reads,
per object, the newest version written at least `index_lag` ago, so a recent change is
invisible (or still shows its previous values) exactly as on HubSpot.

Every object is `{"id", "properties", "createdAt", "updatedAt", "archived"[, "archivedAt"]}`
with property values as strings. Archiving does not move the modification stamp (as on
HubSpot); `archivedAt` is never earlier than the object's last modification.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.sandbox_kit.fault_wsgi import LATE_BY
from connectors.sandbox_kit.state import SqliteState

# The property holding each object type's modification stamp (contacts are the exception).
MODIFIED_PROPERTY = {"companies": "hs_lastmodifieddate", "contacts": "lastmodifieddate",
                     "deals": "hs_lastmodifieddate", "line_items": "hs_lastmodifieddate",
                     "products": "hs_lastmodifieddate"}
OBJECT_TYPES = tuple(MODIFIED_PROPERTY)

SCHEMA = """
CREATE TABLE IF NOT EXISTS object (
    kind TEXT NOT NULL, id INTEGER NOT NULL, created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL, archived_ms INTEGER, body TEXT NOT NULL,
    PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS version (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, id INTEGER NOT NULL,
    written_ms INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS version_kind ON version (kind, written_ms);
CREATE TABLE IF NOT EXISTS association (
    from_kind TEXT NOT NULL, from_id INTEGER NOT NULL, to_kind TEXT NOT NULL,
    to_id INTEGER NOT NULL, type_id INTEGER NOT NULL,
    PRIMARY KEY (from_kind, from_id, to_kind, to_id, type_id));
CREATE TABLE IF NOT EXISTS owner (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS token (
    token TEXT PRIMARY KEY, kind TEXT NOT NULL, client_id TEXT, expires_ms INTEGER);
"""


def to_ms(value: datetime) -> int:
    return int(round(value.astimezone(UTC).timestamp() * 1000))


def iso(ms: int) -> str:
    """HubSpot's spelling of a stamp: ISO 8601 with milliseconds and `Z`."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def parse_stamp(text: str) -> int:
    """Epoch milliseconds from epoch-ms digits or an ISO date / date-time; ValueError else."""
    value = str(text).strip()
    if value.lstrip("-").isdigit():
        return int(value)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return to_ms(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


class HubSpotStore(SqliteState):
    """The portal's file (the kit's `SqliteState`: one connection under one lock, `meta`)."""

    def __init__(self, path: Path, clock: Callable[[], datetime] | None = None,
                 index_lag: timedelta = timedelta(0)) -> None:
        super().__init__(path, SCHEMA, clock)
        self.index_lag = index_lag

    def now_ms(self) -> int:
        return to_ms(self.clock())

    def next_id(self, count: int = 1) -> int:
        """The first of `count` new object ids, from a high-water mark: HubSpot never
        reuses an id."""
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE name = 'next_id'").fetchone()
            value = int(json.loads(row[0])) if row else 10_001
            db.execute("INSERT OR REPLACE INTO meta VALUES ('next_id', ?)",
                       (str(value + count),))
        return value

    def is_empty(self) -> bool:
        return int(self.query("SELECT COUNT(*) FROM object")[0][0]) == 0

    # -- tokens ---------------------------------------------------------------------

    def add_token(self, token: str, kind: str, client_id: str | None = None,
                  expires_ms: int | None = None) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO token VALUES (?, ?, ?, ?)",
                       (token, kind, client_id, expires_ms))

    def token(self, token: str) -> tuple[str, str | None, int | None] | None:
        """(kind, client id, expiry in epoch ms) of a token the portal issued."""
        rows = self.query("SELECT kind, client_id, expires_ms FROM token WHERE token = ?",
                          (token,))
        return (str(rows[0][0]), rows[0][1], rows[0][2]) if rows else None

    def take_token(self, token: str, kind: str) -> str | None:
        """Use a single-use token (an authorization code) once: its client id, or None."""
        with self.transaction() as db:
            row = db.execute("SELECT client_id, expires_ms FROM token WHERE token = ? AND "
                             "kind = ?", (token, kind)).fetchone()
            db.execute("DELETE FROM token WHERE token = ? AND kind = ?", (token, kind))
        if row is None or (row[1] is not None and row[1] < self.now_ms()):
            return None
        return str(row[0] or "")

    # -- objects --------------------------------------------------------------------

    def load(self, kind: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Seed records as they are (their own stamps): the portal's past, indexed long ago."""
        rows = [(kind, int(r["id"]), parse_stamp(r["createdAt"]), parse_stamp(r["updatedAt"]),
                 None, json.dumps(r)) for r in records]
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO object VALUES (?, ?, ?, ?, ?, ?)", rows)
            db.executemany("INSERT INTO version (kind, id, written_ms, body) VALUES (?, ?, 0, ?)",
                           [(k, i, b) for k, i, _, _, _, b in rows])

    def get(self, kind: str, object_id: int) -> dict[str, Any] | None:
        rows = self.query("SELECT body FROM object WHERE kind = ? AND id = ?",
                          (kind, object_id))
        return json.loads(rows[0][0]) if rows else None

    def page(self, kind: str, *, archived: bool, after: int, limit: int
             ) -> tuple[list[dict[str, Any]], int | None]:
        """A list page in id order from `after` (exclusive): (records, next after or None)."""
        flag = "IS NOT NULL" if archived else "IS NULL"
        rows = self.query(
            f"SELECT id, body FROM object WHERE kind = ? AND archived_ms {flag} AND id > ? "
            "ORDER BY id LIMIT ?", (kind, after, limit + 1))
        records = [json.loads(r[1]) for r in rows[:limit]]
        return records, (int(rows[limit - 1][0]) if len(rows) > limit else None)

    def count(self, kind: str) -> int:
        return int(self.query(
            "SELECT COUNT(*) FROM object WHERE kind = ? AND archived_ms IS NULL", (kind,))[0][0])

    def indexed(self, kind: str) -> list[dict[str, Any]]:
        """What search sees: per object, the newest version written `index_lag` ago or
        earlier, unless that version is archived."""
        cutoff = to_ms(self.clock() - self.index_lag)
        if not self.index_lag:
            return [json.loads(r[0]) for r in self.query(
                "SELECT body FROM object WHERE kind = ? AND archived_ms IS NULL", (kind,))]
        rows = self.query(
            "SELECT id, body FROM version WHERE kind = ? AND written_ms <= ? ORDER BY seq",
            (kind, cutoff))
        latest: dict[int, dict[str, Any]] = {}
        for object_id, body in rows:
            latest[int(object_id)] = json.loads(body)
        return [b for b in latest.values() if not b.get("archived")]

    def write_ms(self, floor_ms: int = 0) -> int:
        """A write's stamp: now, or earlier under the late-commit fault, but never before
        `floor_ms` (the object's previous stamp + 1 ms: a stamp never goes backwards)."""
        return max(to_ms(self.clock() - LATE_BY.get()), floor_ms)

    def insert(self, kind: str, properties: Mapping[str, str | None],
               modified_property: str) -> dict[str, Any]:
        object_id = self.next_id()
        stamp = self.write_ms()
        props = {**properties, "hs_object_id": str(object_id), "createdate": iso(stamp),
                 modified_property: iso(stamp)}
        record = {"id": str(object_id), "properties": props, "createdAt": iso(stamp),
                  "updatedAt": iso(stamp), "archived": False}
        with self.transaction() as db:
            db.execute("INSERT INTO object VALUES (?, ?, ?, ?, NULL, ?)",
                       (kind, object_id, stamp, stamp, json.dumps(record)))
            self._version(db, kind, object_id, record)
        return record

    def update(self, kind: str, object_id: int, properties: Mapping[str, str | None],
               modified_property: str) -> dict[str, Any] | None:
        """Apply property changes to a live object and move its stamp forward (None: no
        such live object)."""
        with self.transaction() as db:
            live = _live(db, kind, object_id)
            if live is None:
                return None
            record, modified_ms = live
            stamp = self.write_ms(modified_ms + 1)
            record["properties"] = {**record["properties"], **properties,
                                    modified_property: iso(stamp)}
            record["updatedAt"] = iso(stamp)
            db.execute("UPDATE object SET modified_ms = ?, body = ? WHERE kind = ? AND id = ?",
                       (stamp, json.dumps(record), kind, object_id))
            self._version(db, kind, object_id, record)
        return record

    def archive(self, kind: str, object_id: int) -> bool:
        """Archive (HubSpot's delete): `archived`, `archivedAt`; `updatedAt` unchanged."""
        with self.transaction() as db:
            live = _live(db, kind, object_id)
            if live is None:
                return False
            record, modified_ms = live
            stamp = self.write_ms(modified_ms)
            record.update(archived=True, archivedAt=iso(stamp))
            db.execute("UPDATE object SET archived_ms = ?, body = ? WHERE kind = ? AND id = ?",
                       (stamp, json.dumps(record), kind, object_id))
            self._version(db, kind, object_id, record)
        return True

    def _version(self, db: sqlite3.Connection, kind: str, object_id: int,
                 record: Mapping[str, Any]) -> None:
        if self.index_lag:  # without a lag, search reads the objects themselves
            db.execute("INSERT INTO version (kind, id, written_ms, body) VALUES (?, ?, ?, ?)",
                       (kind, object_id, self.now_ms(), json.dumps(record)))

    # -- associations and owners ------------------------------------------------------

    def associate(self, pairs: Sequence[tuple[str, int, str, int, int]]) -> None:
        """(from kind, from id, to kind, to id, type id) rows; both directions are stored
        by the caller (HubSpot's types differ by direction)."""
        with self.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO association VALUES (?, ?, ?, ?, ?)", pairs)

    def associations(self, from_kind: str, from_id: int, to_kind: str
                     ) -> list[tuple[int, list[int]]]:
        """(to id, type ids) of one object's associations, by to id."""
        rows = self.query(
            "SELECT to_id, type_id FROM association WHERE from_kind = ? AND from_id = ? AND "
            "to_kind = ? ORDER BY to_id, type_id", (from_kind, from_id, to_kind))
        grouped: dict[int, list[int]] = {}
        for to_id, type_id in rows:
            grouped.setdefault(int(to_id), []).append(int(type_id))
        return list(grouped.items())

    def load_owners(self, owners: Sequence[Mapping[str, Any]]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO owner VALUES (?, ?)",
                           [(int(o["id"]), json.dumps(o)) for o in owners])

    def owners(self, *, archived: bool) -> list[dict[str, Any]]:
        rows = self.query("SELECT body FROM owner ORDER BY id")
        return [o for o in (json.loads(r[0]) for r in rows) if bool(o["archived"]) == archived]


def _live(db: sqlite3.Connection, kind: str, object_id: int) -> tuple[dict[str, Any], int] | None:
    """A live object and its modification stamp (ms), read inside the writer's transaction;
    None when there is no such object or it is archived."""
    row = db.execute("SELECT body, modified_ms FROM object WHERE kind = ? AND id = ? "
                     "AND archived_ms IS NULL", (kind, object_id)).fetchone()
    return None if row is None else (json.loads(row[0]), int(row[1]))
