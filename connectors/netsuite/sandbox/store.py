"""The sandbox account's state in one SQLite file: records, deletes, integrations, nonces.

Every write goes through `write`, `delete` or `put_raw`, which move the record's
`lastmodifieddate` to the account's clock (whole seconds, as NetSuite keeps them)
and log deletes in `deletedrecord`, so a connector sees exactly what NetSuite
would show it. One connection behind one lock: the sandbox serves tests and demos,
not load, and SQLite never has to answer "database is locked".
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from connectors.sandbox_kit.fault_wsgi import in_api_call

from .schema import RECORD_TYPES, TABLES, created_column, ddl, modified_column
from .suiteql import QueryError, translate

Clock = Callable[[], datetime]

_AUTH_DDL = """
CREATE TABLE IF NOT EXISTS ns_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ns_integration (
    consumer_key TEXT PRIMARY KEY, consumer_secret TEXT NOT NULL, client_id TEXT UNIQUE,
    tba_enabled INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS ns_token (
    token_id TEXT PRIMARY KEY, token_secret TEXT NOT NULL, consumer_key TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ns_certificate (
    certificate_id TEXT PRIMARY KEY, client_id TEXT NOT NULL, public_key_pem TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ns_nonce (nonce TEXT PRIMARY KEY, seen_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ns_access_token (token TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ns_login_audit (
    at REAL NOT NULL, method TEXT NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL);
"""

_FORMATS = {"YYYY": "%Y", "MM": "%m", "DD": "%d", "HH24": "%H", "MI": "%M", "SS": "%S"}


def oracle_format(fmt: str) -> str:
    """An Oracle date format ('YYYY-MM-DD HH24:MI:SS') as a strftime pattern."""
    out = fmt.replace('"T"', "T")
    for oracle, python in sorted(_FORMATS.items(), key=lambda kv: -len(kv[0])):
        out = out.replace(oracle, python)
    return out


class AccountStore:
    """One NetSuite account: its records in NetSuite's tables, in the account's time zone."""

    def __init__(self, path: str, *, timezone: str = "America/Los_Angeles",
                 clock: Clock | None = None) -> None:
        self.tz = ZoneInfo(timezone)
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.lock = threading.RLock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(ddl() + _AUTH_DDL)
        if not self.db.execute('SELECT 1 FROM "dual"').fetchone():
            self.db.execute("""INSERT INTO "dual" VALUES ('X')""")  # Oracle's one-row table
        self.db.create_function("ns_to_timestamp", 2, self._to_timestamp, deterministic=True)
        self.db.create_function("ns_to_char", 2, self._to_char, deterministic=True)
        self.db.create_function("ns_sysdate", 0, lambda: self.now_epoch())
        # How late the write of the current API call commits (the kit's late commits): its
        # stamp is that much in the past when a reader first sees it.
        self.late_by: Callable[[], timedelta | None] = lambda: None

    # -- time ------------------------------------------------------------------

    def now_epoch(self) -> float:
        return float(int(self.clock().timestamp()))  # NetSuite keeps whole seconds

    def write_epoch(self) -> float:
        """The stamp a write gets now: the clock, or earlier for a late commit."""
        late = self.late_by() if in_api_call() else None
        return self.now_epoch() - (late.total_seconds() if late else 0.0)

    def _to_timestamp(self, text: str | None, fmt: str | None) -> float | None:
        if text is None or fmt is None:
            return None
        try:
            local = datetime.strptime(text, oracle_format(fmt))
        except ValueError:
            raise ValueError(f"Invalid date value '{text}' for format '{fmt}'") from None
        return local.replace(tzinfo=self.tz).timestamp()

    def _to_char(self, value: Any, fmt: str | None) -> str | None:
        if value is None or fmt is None:
            return None
        if isinstance(value, int | float):
            moment = datetime.fromtimestamp(float(value), UTC).astimezone(self.tz)
            return moment.strftime(oracle_format(fmt))
        try:
            return date.fromisoformat(str(value)).strftime(oracle_format(fmt))
        except ValueError:
            return str(value)

    def to_iso(self, epoch: float) -> str:
        """A stored date-time as the record service writes it (ISO 8601, UTC)."""
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def display_date(self, value: Any, kind: str) -> str:
        """How SuiteQL shows a bare date or date-time column: the account's date format."""
        if kind == "datetime" and isinstance(value, int | float):
            day = datetime.fromtimestamp(float(value), UTC).astimezone(self.tz).date()
        else:
            try:
                day = date.fromisoformat(str(value))
            except ValueError:
                return str(value)
        return f"{day.month}/{day.day}/{day.year}"

    # -- settings --------------------------------------------------------------

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.fetchone("SELECT value FROM ns_meta WHERE key = ?", (key,))
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO ns_meta VALUES (?, ?)", (key, value))

    # -- queries ---------------------------------------------------------------

    def query(self, q: str, limit: int, offset: int) -> tuple[list[dict[str, str]], int]:
        """One page of a SuiteQL query: (items with string values, nulls left out; total)."""
        translation = translate(q)
        with self.lock:
            try:
                total = self.db.execute(f"SELECT COUNT(*) FROM ({translation.sql})").fetchone()[0]
                rows = self.db.execute(f"{translation.sql} LIMIT ? OFFSET ?",
                                       (limit, offset)).fetchall()
            except sqlite3.Error as exc:
                raise QueryError(str(exc)) from None
        items = []
        for row in rows:
            item: dict[str, str] = {}
            for name, kind, value in zip(translation.columns, translation.kinds, row,
                                         strict=True):
                if value is None:
                    continue
                if kind in ("datetime", "date"):
                    item[name] = self.display_date(value, kind)
                elif isinstance(value, float) and value.is_integer():
                    item[name] = str(int(value))
                else:
                    item[name] = str(value)
            items.append(item)
        return items, int(total)

    # Every statement runs under the lock, reads included. The connection is shared by the
    # server's threads; a statement outside the lock can hold the GIL while it waits for
    # SQLite's connection mutex, which a query calling back into Python (ns_to_char)
    # holds while it waits for the GIL: a deadlock (found by the chaos run).

    def fetchone(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        with self.lock:
            row: tuple[Any, ...] | None = self.db.execute(sql, params).fetchone()
        return row

    def fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            return list(self.db.execute(sql, params).fetchall())

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        with self.lock:
            self.db.execute(sql, params)

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        with self.lock:
            row = self.db.execute(sql, params).fetchone()
        return row[0] if row else None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # -- writes ----------------------------------------------------------------

    def next_id(self, table: str) -> int:
        """The next internal id; never one used before (NetSuite never reuses ids: a new
        record taking a deleted one's id would merge two records in every copy)."""
        key = TABLES[table].key
        with self.lock:
            current = int(self.scalar(f'SELECT COALESCE(MAX("{key}"), 0) + 1 FROM "{table}"'))
            issued = int(self.meta(f"next_id:{table}") or 0)
            value = max(current, issued)
            self.set_meta(f"next_id:{table}", str(value + 1))
        return value

    def _after(self, table: str, where: str, params: list[Any], stamp: float) -> float:
        """`stamp`, or the record's current modification date if that is later: a late
        commit is dated in the past, but never before the record's previous change (a stamp
        going backwards would make every copy keep the older version). Equal is fine: two
        writes in one second share a stamp in NetSuite, and copies apply a tie."""
        column = modified_column(table)
        if column not in TABLES[table].columns:
            return stamp
        previous = self.scalar(f'SELECT "{column}" FROM "{table}" WHERE {where}', tuple(params))
        return stamp if previous is None else max(stamp, float(previous))

    def insert(self, table: str, values: Mapping[str, Any], *, stamp: float | None = None
               ) -> int:
        """Insert a row (seeding and the record service); stamps created/modified dates."""
        spec = TABLES[table]
        row = dict(values)
        now = self.write_epoch() if stamp is None else stamp
        if "lastmodifieddate" in spec.columns or table == "transactionline":
            row.setdefault(modified_column(table), now)
            row.setdefault(created_column(table), row[modified_column(table)])
        with self.lock:
            if spec.key not in row and table not in ("pricing",):
                row[spec.key] = self.next_id(table)
            unknown = set(row) - set(spec.columns)
            if unknown:
                raise KeyError(f"{table} has no column(s) {sorted(unknown)}")
            names = ", ".join(f'"{c}"' for c in row)
            marks = ", ".join("?" for _ in row)
            self.db.execute(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', list(row.values()))
        return int(row.get(spec.key, 0) or 0)

    def update(self, table: str, key: int, values: Mapping[str, Any], *, touch: bool = True
               ) -> bool:
        """Change columns; `touch` moves the modification date as every NetSuite write does."""
        spec = TABLES[table]
        row = dict(values)
        if not row and not touch:
            return True
        with self.lock:
            if touch and modified_column(table) in spec.columns:
                row[modified_column(table)] = self._after(
                    table, f'"{spec.key}" = ?', [key], self.write_epoch())
            if not row:
                return True
            sets = ", ".join(f'"{c}" = ?' for c in row)
            cursor = self.db.execute(f'UPDATE "{table}" SET {sets} WHERE "{spec.key}" = ?',
                                     [*row.values(), key])
        return cursor.rowcount > 0

    def delete(self, record_type: str, key: int) -> bool:
        """Delete a record and log it in DeletedRecord (its lines go with it, unlogged)."""
        table, fixed = RECORD_TYPES[record_type]
        where = " AND ".join([f'"{c}" = ?' for c in fixed] + ['"id" = ?'])
        with self.transaction() as db:
            row = db.execute(f'SELECT * FROM "{table}" WHERE {where}',
                             [*fixed.values(), key]).fetchone()
            if row is None:
                return False
            if table == "transaction":
                db.execute('DELETE FROM "transactionline" WHERE "transaction" = ?', (key,))
            if table == "item":
                db.execute('DELETE FROM "pricing" WHERE "item" = ?', (key,))
            deleted_at = self._after(table, where, [*fixed.values(), key], self.write_epoch())
            db.execute(f'DELETE FROM "{table}" WHERE "id" = ?', (key,))
            db.execute('INSERT INTO "deletedrecord" VALUES (?, ?, ?, ?, ?)',
                       (key, record_type, str(row[1]), deleted_at, "webservices"))
        return True

    def purge_deleted_before(self, cutoff: datetime) -> int:
        """Drop DeletedRecord rows older than `cutoff` (what a retention period does)."""
        with self.lock:
            cursor = self.db.execute('DELETE FROM "deletedrecord" WHERE "deleteddate" < ?',
                                     (cutoff.timestamp(),))
        return cursor.rowcount

    def get(self, table: str, key: int, fixed: Mapping[str, str] | None = None
            ) -> dict[str, Any] | None:
        spec = TABLES[table]
        where = " AND ".join([f'"{c}" = ?' for c in (fixed or {})] + [f'"{spec.key}" = ?'])
        with self.lock:
            cursor = self.db.execute(f'SELECT * FROM "{table}" WHERE {where}',
                                     [*(fixed or {}).values(), key])
            row = cursor.fetchone()
            names = [d[0] for d in cursor.description]
        return dict(zip(names, row, strict=True)) if row else None

    def count(self, table: str, where: str = "1=1", params: tuple[Any, ...] = ()) -> int:
        return int(self.scalar(f'SELECT COUNT(*) FROM "{table}" WHERE {where}', params))

    # -- auth bookkeeping --------------------------------------------------------

    def audit(self, method: str, status: str, detail: str) -> None:
        """NetSuite's Login Audit Trail: the only place it says why a login failed."""
        with self.lock:
            self.db.execute("INSERT INTO ns_login_audit VALUES (?, ?, ?, ?)",
                            (self.now_epoch(), method, status, detail))

    def login_audit(self) -> list[tuple[str, str, str]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT method, status, detail FROM ns_login_audit ORDER BY rowid").fetchall()
        return [tuple(r) for r in rows]

    def use_nonce(self, nonce: str, window: timedelta, now: float) -> bool:
        """True the first time a nonce is seen within `window`; False when reused."""
        with self.lock:
            self.db.execute("DELETE FROM ns_nonce WHERE seen_at < ?",
                            (now - 2 * window.total_seconds(),))
            try:
                self.db.execute("INSERT INTO ns_nonce VALUES (?, ?)", (nonce, now))
            except sqlite3.IntegrityError:
                return False
        return True

    def close(self) -> None:
        with self.lock:
            self.db.close()
