"""A sandbox's state in one SQLite file, shared by the server's threads.

Every statement runs under one lock, on one connection: a statement outside it deadlocked
NetSuite's sandbox once (docs/chaos.md, Findings 1). `meta` holds the org's settings as
JSON values. A CRM's store subclasses this with its own schema and records.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

META_SCHEMA = "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"


class SqliteState:
    """The file at `path` with `schema` (and `meta`) created; `clock` is the org's time."""

    def __init__(self, path: Path, schema: str,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.path = path
        self.clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.executescript(schema + META_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, list(args)).fetchall()

    def set_meta(self, name: str, value: Any) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, json.dumps(value)))

    def meta(self, name: str, default: Any = None) -> Any:
        rows = self.query("SELECT value FROM meta WHERE name = ?", (name,))
        return json.loads(rows[0][0]) if rows else default
