"""Query execution and server-side cursors (query locators).

A query runs once to fix the ordered list of matching ids (that is the
cursor, as in Salesforce: later pages do not re-run the filter), then each
page is projected straight to JSON text inside SQLite with `json_object`, so a
2,000-record page is a join on the primary key and a string join in Python.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ApiError
from .ids import QUERY_LOCATOR_PREFIX, make_id
from .schema import FieldDef, ObjectDef
from .soql_compiler import CompiledQuery
from .standard_objects import ADDRESS_KEYS

_MAX_PAIRS = 60  # json_object takes at most 127 arguments in stock SQLite builds


def _value_sql(definition: FieldDef) -> str:
    """SQL whose value embeds into json_object as the field's JSON value."""
    name = definition.name
    if name in ("Id", "SystemModstamp"):
        return f"t.{name}"
    if name == "IsDeleted":
        return "json(CASE WHEN t.IsDeleted THEN 'true' ELSE 'false' END)"
    if definition.type == "address":
        parts = ADDRESS_KEYS[name]
        pairs = ", ".join(f"'{key}', t.data -> '$.{part}'" for part, key in parts)
        present = " OR ".join(f"json_extract(t.data, '$.{part}') IS NOT NULL"
                              for part, _ in parts)
        return f"CASE WHEN {present} THEN json_object({pairs}) END"
    return f"t.data -> '$.{name}'"


def projection_sql(obj: ObjectDef, fields: list[FieldDef]) -> list[str]:
    """json_object expressions for one record; the first carries `attributes`."""
    items = [f"'{d.name}', {_value_sql(d)}" for d in fields]
    attributes = "'attributes', json_object('type', ?, 'url', ? || t.Id)"
    chunks: list[list[str]] = [[attributes]]
    for item in items:
        if len(chunks[-1]) >= _MAX_PAIRS:
            chunks.append([])
        chunks[-1].append(item)
    return [f"json_object({', '.join(chunk)})" for chunk in chunks]


@dataclass
class Cursor:
    """The frozen result of one query, paged on demand."""

    obj: ObjectDef
    fields: list[FieldDef]
    ids: list[str]
    endpoint: str  # "query" or "queryAll": where nextRecordsUrl points
    page_size: int
    last_used: float


class QueryEngine:
    """Runs compiled queries and keeps their cursors in memory with an idle expiry."""

    def __init__(self, ttl: Callable[[], float], capacity: Callable[[], int],
                 clock: Callable[[], float]) -> None:
        self._clock = clock  # seconds; the sandbox clock, so tests can age cursors
        self._ttl = ttl
        self._capacity = capacity
        self._cursors: OrderedDict[str, Cursor] = OrderedDict()
        self._lock = threading.Lock()
        self._counter = secrets.randbelow(62**6)

    def execute(self, conn: sqlite3.Connection, compiled: CompiledQuery, *, include_deleted: bool,
                version: str, page_size: int) -> str:
        """Run a query and return the first page as JSON text."""
        obj = compiled.obj
        where = compiled.where
        if not include_deleted:
            where = f"({where}) AND IsDeleted = 0"
        params = list(compiled.params)
        if compiled.count_only:
            sql = f'SELECT count(*) FROM "{obj.table}" WHERE {where}'
            total = int(conn.execute(sql, params).fetchone()[0])
            if compiled.offset:
                total = max(0, total - compiled.offset)
            if compiled.limit is not None:
                total = min(total, compiled.limit)
            return json.dumps({"totalSize": total, "done": True, "records": []},
                              separators=(",", ":"))
        sql = f'SELECT Id FROM "{obj.table}" WHERE {where} ORDER BY {compiled.order_by}'
        if compiled.limit is not None or compiled.offset:
            sql += " LIMIT ? OFFSET ?"
            params += [compiled.limit if compiled.limit is not None else -1, compiled.offset or 0]
        ids = [row[0] for row in conn.execute(sql, params)]
        cursor = Cursor(obj, compiled.fields, ids, "queryAll" if include_deleted else "query",
                        page_size, self._clock())
        locator = self._register(cursor) if len(ids) > page_size else None
        return self._page(conn, cursor, locator, 0, version)

    def more(self, conn: sqlite3.Connection, locator_text: str, version: str) -> str:
        """Serve `query/{locator}-{offset}`."""
        locator, _, offset_text = locator_text.rpartition("-")
        with self._lock:
            self._prune()
            cursor = self._cursors.get(locator)
            if cursor is not None:
                cursor.last_used = self._clock()
                self._cursors.move_to_end(locator)
        if cursor is None or not offset_text.isdigit() or not (
            0 < int(offset_text) < len(cursor.ids)
        ):
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(conn, cursor, locator, int(offset_text), version)

    def _register(self, cursor: Cursor) -> str:
        with self._lock:
            self._prune()
            self._counter += 1
            locator = make_id(QUERY_LOCATOR_PREFIX, self._counter)[:15]
            self._cursors[locator] = cursor
            while len(self._cursors) > self._capacity():
                self._cursors.popitem(last=False)
            return locator

    def _prune(self) -> None:
        deadline = self._clock() - self._ttl()
        stale = [key for key, c in self._cursors.items() if c.last_used < deadline]
        for key in stale:
            del self._cursors[key]

    def expire_all(self) -> None:
        with self._lock:
            self._cursors.clear()

    def _page(self, conn: sqlite3.Connection, cursor: Cursor, locator: str | None, offset: int,
              version: str) -> str:
        page_ids = cursor.ids[offset:offset + cursor.page_size]
        rows = self.fetch(conn, cursor.obj, cursor.fields, page_ids, version)
        end = offset + len(page_ids)
        done = end >= len(cursor.ids)
        head: dict[str, object] = {"totalSize": len(cursor.ids), "done": done}
        if not done:
            head["nextRecordsUrl"] = f"/services/data/v{version}/{cursor.endpoint}/{locator}-{end}"
        return json.dumps(head, separators=(",", ":"))[:-1] + ',"records":[' + ",".join(rows) + "]}"

    @staticmethod
    def fetch(conn: sqlite3.Connection, obj: ObjectDef, fields: list[FieldDef], ids: list[str],
              version: str) -> list[str]:
        """JSON texts of the given records, in the given order (vanished ones skipped)."""
        if not ids:
            return []
        chunks = projection_sql(obj, fields)
        sql = (
            f"SELECT {', '.join(chunks)} FROM json_each(?) AS wanted "
            f'JOIN "{obj.table}" AS t ON t.Id = wanted.value ORDER BY wanted.key'
        )
        url = f"/services/data/v{version}/sobjects/{obj.name}/"
        rows = conn.execute(sql, [obj.name, url, json.dumps(ids)]).fetchall()
        if len(chunks) == 1:
            return [row[0] for row in rows]
        return [
            row[0][:-1] + "," + ",".join(part[1:-1] for part in row[1:] if part != "{}") + "}"
            for row in rows
        ]
