"""SQLite persistence for one sandbox org: records, sessions, counters, settings.

One state file holds everything, so copying the file copies the org. Records
live one table per sObject as a JSON document, with the columns the API
filters on most (Id, SystemModstamp, IsDeleted) and a few foreign keys
indexed for real, so large tables stay fast. Readers share a pool of
connections (WAL lets them run beside a writer); writers are serialised by one
lock so that SQLite never has to answer "database is locked".
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from .ids import make_id
from .schema import ObjectDef

_SCHEMA_VERSION = 1
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _document(data: dict[str, Any]) -> str:
    """The stored JSON of a record; null fields are left out (absent reads as null)."""
    return _encode({k: v for k, v in data.items() if v is not None})


@dataclass
class StoredRecord:
    """A row as kept: the field document plus recycle-bin bookkeeping."""

    data: dict[str, Any]
    is_deleted: bool
    deleted_date: str | None
    deleted_by: str | None


class SandboxStore:
    """Thread-safe access to the state file."""

    def __init__(self, path: str, *, pool_size: int = 8) -> None:
        self.path = path
        self._pool: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._pool_size = pool_size
        self.write_lock = threading.RLock()
        self._closed = False
        with self.connection() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(
                """
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS id_counters (
                    prefix TEXT PRIMARY KEY, last INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS sessions (
                    sid TEXT PRIMARY KEY, user_id TEXT NOT NULL, created_at REAL NOT NULL,
                    last_used_at REAL NOT NULL, expires_at REAL NOT NULL);
                CREATE TABLE IF NOT EXISTS api_usage (
                    day TEXT PRIMARY KEY, calls INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS custom_fields (
                    sobject TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL,
                    PRIMARY KEY (sobject, name));
                """
            )
            conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(_SCHEMA_VERSION),)
            )

    # -- connections ---------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA temp_store=MEMORY")
        return conn

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A pooled connection in autocommit mode, for reads."""
        if self._closed:
            raise RuntimeError("sandbox store is closed")
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self._open()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.rollback()
            if self._closed or self._pool.qsize() >= self._pool_size:
                self._discard(conn)
            else:
                self._pool.put(conn)

    @staticmethod
    def _discard(conn: sqlite3.Connection) -> None:
        with suppress(sqlite3.Error):
            conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One serialised write transaction; rolled back if the block raises."""
        with self.write_lock, self.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close idle connections now; ones in use close when they are handed back."""
        self._closed = True
        while True:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                break
            self._discard(conn)

    # -- meta ----------------------------------------------------------------

    def meta_get(self, conn: sqlite3.Connection, key: str) -> Any:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def meta_set(self, conn: sqlite3.Connection, key: str, value: Any) -> None:
        conn.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    # -- tables --------------------------------------------------------------

    def ensure_tables(self, conn: sqlite3.Connection, objects: Iterable[ObjectDef]) -> None:
        for obj in objects:
            conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{obj.table}" ('
                " Id TEXT PRIMARY KEY, SystemModstamp TEXT NOT NULL,"
                " IsDeleted INTEGER NOT NULL DEFAULT 0, DeletedDate TEXT, DeletedBy TEXT,"
                " data TEXT NOT NULL)"
            )
            self.create_indexes(conn, obj)

    @staticmethod
    def _index_definitions(obj: ObjectDef) -> dict[str, str]:
        """Secondary indexes by name.

        The covering (IsDeleted, SystemModstamp, Id) and (IsDeleted, Id) indexes
        serve the two hot paths, incremental windows and full scans in id
        order, without touching the table or sorting; the recycle-bin index is
        partial so the planner never picks it for live-row queries.
        """
        table = obj.table
        indexes = {
            f"ix_{table}_modstamp": f'"{table}" (SystemModstamp, Id)',
            f"ix_{table}_live_modstamp": f'"{table}" (IsDeleted, SystemModstamp, Id)',
            f"ix_{table}_live_id": f'"{table}" (IsDeleted, Id)',
            f"ix_{table}_bin": f'"{table}" (DeletedDate) WHERE IsDeleted = 1',
            f"ix_{table}_cascade": f'"{table}" (DeletedBy) WHERE DeletedBy IS NOT NULL',
        }
        for name in obj.indexed_fields:
            indexes[f"ix_{table}_{name}"] = f"\"{table}\" (json_extract(data, '$.{name}'))"
        return indexes

    def create_indexes(self, conn: sqlite3.Connection, obj: ObjectDef) -> None:
        for name, target in self._index_definitions(obj).items():
            conn.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON {target}')

    def drop_indexes(self, conn: sqlite3.Connection, obj: ObjectDef) -> None:
        """Bulk loads run faster when indexes are built once, afterwards."""
        for name in self._index_definitions(obj):
            conn.execute(f'DROP INDEX IF EXISTS "{name}"')

    def analyze(self, conn: sqlite3.Connection) -> None:
        """Refresh planner statistics (sampled, so it stays quick on big files)."""
        conn.execute("PRAGMA analysis_limit=2000")
        conn.execute("ANALYZE")

    # -- ids -----------------------------------------------------------------

    def allocate_ids(self, conn: sqlite3.Connection, prefix: str, count: int) -> list[str]:
        """Reserve `count` sequential ids; sequential ids sort in creation order."""
        row = conn.execute(
            "INSERT INTO id_counters VALUES (?, ?) ON CONFLICT(prefix) DO UPDATE "
            "SET last = last + ? RETURNING last",
            (prefix, count, count),
        ).fetchone()
        last = int(row[0])
        return [make_id(prefix, n) for n in range(last - count + 1, last + 1)]

    # -- records -------------------------------------------------------------

    def get(self, conn: sqlite3.Connection, obj: ObjectDef, record_id: str) -> StoredRecord | None:
        row = conn.execute(
            f'SELECT data, IsDeleted, DeletedDate, DeletedBy FROM "{obj.table}" WHERE Id = ?',
            (record_id,),
        ).fetchone()
        if row is None:
            return None
        return StoredRecord(json.loads(row[0]), bool(row[1]), row[2], row[3])

    def insert(self, conn: sqlite3.Connection, obj: ObjectDef, data: dict[str, Any]) -> None:
        conn.execute(
            f'INSERT INTO "{obj.table}" (Id, SystemModstamp, IsDeleted, data) VALUES (?, ?, 0, ?)',
            (data["Id"], data["SystemModstamp"], _document(data)),
        )

    def insert_many(self, conn: sqlite3.Connection, obj: ObjectDef,
                    records: Iterable[dict[str, Any]]) -> int:
        """Bulk load (the generator's path); returns the number of rows."""
        rows = [(r["Id"], r["SystemModstamp"], 1 if r.get("IsDeleted") else 0, _document(r))
                for r in records]
        conn.executemany(
            f'INSERT INTO "{obj.table}" (Id, SystemModstamp, IsDeleted, data) VALUES (?, ?, ?, ?)',
            rows,
        )
        return len(rows)

    def save(self, conn: sqlite3.Connection, obj: ObjectDef, data: dict[str, Any], *,
             is_deleted: bool, deleted_date: str | None = None,
             deleted_by: str | None = None) -> None:
        """Rewrite an existing row, keeping the indexed columns in step with `data`."""
        conn.execute(
            f'UPDATE "{obj.table}" SET SystemModstamp = ?, IsDeleted = ?, DeletedDate = ?, '
            "DeletedBy = ?, data = ? WHERE Id = ?",
            (data["SystemModstamp"], 1 if is_deleted else 0, deleted_date, deleted_by,
             _document(data), data["Id"]),
        )

    def child_ids(self, conn: sqlite3.Connection, child: ObjectDef, field: str,
                  parent_id: str, *, deleted: bool) -> list[str]:
        rows = conn.execute(
            f'SELECT Id FROM "{child.table}" WHERE json_extract(data, \'$.{field}\') = ? '
            "AND IsDeleted = ?",
            (parent_id, 1 if deleted else 0),
        ).fetchall()
        return [r[0] for r in rows]

    def cascade_deleted_ids(self, conn: sqlite3.Connection, obj: ObjectDef,
                            root_id: str) -> list[str]:
        rows = conn.execute(
            f'SELECT Id FROM "{obj.table}" WHERE DeletedBy = ? AND IsDeleted = 1', (root_id,)
        ).fetchall()
        return [r[0] for r in rows]

    def hard_delete(self, conn: sqlite3.Connection, obj: ObjectDef, ids: Sequence[str]) -> int:
        removed = 0
        for record_id in ids:
            removed += conn.execute(
                f'DELETE FROM "{obj.table}" WHERE Id = ?', (record_id,)
            ).rowcount
        return removed

    def purge(self, conn: sqlite3.Connection, obj: ObjectDef) -> int:
        return conn.execute(f'DELETE FROM "{obj.table}" WHERE IsDeleted = 1').rowcount

    def count(self, conn: sqlite3.Connection, obj: ObjectDef, *,
              deleted: bool | None = None) -> int:
        if deleted is None:
            return int(conn.execute(f'SELECT count(*) FROM "{obj.table}"').fetchone()[0])
        return int(conn.execute(
            f'SELECT count(*) FROM "{obj.table}" WHERE IsDeleted = ?', (1 if deleted else 0,)
        ).fetchone()[0])

    # -- sessions ------------------------------------------------------------

    def add_session(self, conn: sqlite3.Connection, sid: str, user_id: str, now: float,
                    lifetime: float) -> None:
        conn.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                     (sid, user_id, now, now, now + lifetime))

    def find_session(self, conn: sqlite3.Connection, sid: str) -> tuple[str, float, float] | None:
        """(user id, last used, expires at) of a session, if it exists."""
        row = conn.execute(
            "SELECT user_id, last_used_at, expires_at FROM sessions WHERE sid = ?", (sid,)
        ).fetchone()
        return None if row is None else (row[0], float(row[1]), float(row[2]))

    def touch_session(self, conn: sqlite3.Connection, sid: str, now: float,
                      lifetime: float) -> None:
        conn.execute("UPDATE sessions SET last_used_at = ?, expires_at = ? WHERE sid = ?",
                     (now, now + lifetime, sid))

    def expire_sessions(self, conn: sqlite3.Connection, now: float) -> int:
        return conn.execute(
            "UPDATE sessions SET expires_at = ? WHERE expires_at > ?", (now, now)
        ).rowcount

    def prune_sessions(self, conn: sqlite3.Connection, before: float) -> None:
        conn.execute("DELETE FROM sessions WHERE expires_at < ?", (before,))

    # -- API usage -----------------------------------------------------------

    def api_calls(self, conn: sqlite3.Connection, day: str) -> int:
        row = conn.execute("SELECT calls FROM api_usage WHERE day = ?", (day,)).fetchone()
        return 0 if row is None else int(row[0])

    def add_api_call(self, conn: sqlite3.Connection, day: str) -> int:
        row = conn.execute(
            "INSERT INTO api_usage VALUES (?, 1) ON CONFLICT(day) DO UPDATE "
            "SET calls = calls + 1 RETURNING calls",
            (day,),
        ).fetchone()
        return int(row[0])

    # -- custom fields -------------------------------------------------------

    def custom_field_specs(self, conn: sqlite3.Connection) -> list[dict[str, Any]]:
        rows = conn.execute("SELECT spec FROM custom_fields ORDER BY rowid").fetchall()
        return [json.loads(r[0]) for r in rows]

    def add_custom_field(self, conn: sqlite3.Connection, sobject: str, name: str,
                         spec: dict[str, Any]) -> None:
        conn.execute("INSERT INTO custom_fields VALUES (?, ?, ?)",
                     (sobject, name, json.dumps(spec)))

    def remove_custom_field(self, conn: sqlite3.Connection, obj: ObjectDef, name: str) -> bool:
        removed = conn.execute(
            "DELETE FROM custom_fields WHERE sobject = ? AND name = ?", (obj.name, name)
        ).rowcount
        if removed:
            conn.execute(
                f'UPDATE "{obj.table}" SET data = json_remove(data, \'$.{name}\') '
                f"WHERE json_type(data, '$.{name}') IS NOT NULL"
            )
        return bool(removed)
