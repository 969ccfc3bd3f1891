"""The warehouse's hot path: JSON encoded once, rows handed to the driver's own bulk path.

Why (issue 15, profile of `Warehouse.apply` on a real page): validating a record's JSON
by walking it in Python, then letting SQLAlchemy `json.dumps` it once for the row and
twice more for the change log, and running SQLAlchemy's bind processing on every value
of every row cost most of apply's time. Here each document is encoded once by the C
encoder (and validated on its text), the same text goes to the row and the log, and
the rows go to the driver in one call: `executemany` on SQLite, `COPY` into a staging
table then one `INSERT ... SELECT ... ON CONFLICT` on PostgreSQL (the staging tables are
the session's own, made once by `prepare`: creating and dropping one per write cost two
round trips and catalog writes, a third of a page's time on a busy server). The statements are the
very ones `Warehouse` builds (same conflict targets, same "newest wins" conditions), so
the guarantees of docs/sync-guarantees.md are unchanged; only the transport differs.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from accrue.schema import UtcDateTime


class NotFastJson(Exception):
    """The C encoder met something only the careful walk can judge (or refuse with a path)."""


def _default(value: Any) -> Any:
    """What the careful walk (`warehouse.to_json`) makes of non-JSON types, for the C encoder."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise NotFastJson
        return float(value)
    if isinstance(value, set | frozenset):
        return list(value)
    raise NotFastJson


_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_default
).encode


def fast_json_text(value: Any) -> str:
    """`value` as compact JSON text, or NotFastJson when the careful walk must decide.

    Falls back on anything the walk might treat otherwise: a boolean or None key, NUL
    (escaped as \\u0000 in the text), lone surrogates (not encodable as UTF-8),
    non-finite or over-long numbers, types it does not know. Other keys (numbers) are
    spelled alike by both.
    """
    try:
        text = _encode(value)
    except (ValueError, TypeError, RecursionError, NotFastJson):
        raise NotFastJson from None
    if "\\u0000" in text:
        raise NotFastJson
    # JSON spells a True, False or None key as "true", "false", "null"; the walk as
    # "True"... A quote inside a string is escaped, so `"true":` in the text is a key.
    if '"true":' in text or '"false":' in text or '"null":' in text:
        raise NotFastJson
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise NotFastJson from None
    return text


def dumps(value: Any) -> str:
    """Compact JSON text of a document already made storable (no fallback needed)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


# --------------------------------------------------------------------------- transport

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_field(value: Any) -> str:
    """One value in COPY's text format (the staging table's column types parse it)."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _is_json(column: sa.Column[Any]) -> bool:
    return isinstance(column.type, sa.JSON)


class BulkWriter:
    """Runs one of `Warehouse`'s INSERT ... ON CONFLICT statements over many rows.

    Rows carry JSON columns as text (`fast_json_text`); every other value as the
    table's type takes it. `statement(base)` builds the ON CONFLICT statement on an
    INSERT `base` (plain on SQLite, INSERT ... SELECT from the staging table on
    PostgreSQL), so both backends run the same conflict rule.
    """

    def __init__(self, dialect: sa.Dialect) -> None:
        self.dialect = dialect
        self.postgres = dialect.name == "postgresql"
        self._sql: dict[tuple[str, str, tuple[str, ...]], str] = {}

    def write(
        self,
        conn: Connection,
        table: sa.Table,
        statement: Callable[[Any], Any],
        key: str,
        rows: Sequence[Mapping[str, Any]],
        insert: Callable[..., Any],
    ) -> int:
        """Rows inserted or updated (a conflict the statement skips is not counted)."""
        if not rows:
            return 0
        columns = tuple(rows[0])
        if self.postgres:
            return self._copy_then_insert(conn, table, statement, key, rows, columns, insert)
        sql = self._sql.get((table.name, key, columns))
        if sql is None:
            compiled = statement(insert(table)).compile(dialect=self.dialect,
                                                        column_keys=list(columns))
            if list(compiled.positiontup or ()) != list(columns):
                raise AssertionError(f"unexpected parameter order for {table.name}")
            sql = self._sql[(table.name, key, columns)] = str(compiled)
        processors: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(columns):
            column = table.c[name]
            if _is_json(column):
                continue  # already JSON text
            processor = column.type.bind_processor(self.dialect)
            if processor is not None:
                processors.append((index, processor))
        # A page's rows share instants (`synced_at`, often the stamps): each is spelled once.
        # Equal aware datetimes are one instant, which UtcDateTime spells one way.
        memos: list[dict[Any, Any] | None] = [
            {} if isinstance(table.c[columns[index]].type, UtcDateTime) else None
            for index, _ in processors]
        params = []
        for row in rows:
            values = [row[name] for name in columns]
            for (index, process), memo in zip(processors, memos, strict=True):
                value = values[index]
                if value is None:
                    continue
                if memo is None:
                    values[index] = process(value)
                    continue
                done = memo.get(value)
                if done is None:
                    done = memo[value] = process(value)
                values[index] = done
            params.append(tuple(values))
        # Through the Connection (no compiled object, so no bind processing): the
        # driver's executemany, with the engine's events still seeing the statement.
        return int(conn.exec_driver_sql(sql, params).rowcount)

    def prepare(self, conn: Connection, tables: Sequence[sa.Table]) -> None:
        """Called before each page's transaction. PostgreSQL: make the session's staging
        tables for `tables`, committed on their own (made inside the page's transaction,
        a rollback would take them away behind the session's back); once per connection."""
        if not self.postgres:
            return
        info = conn.connection.info
        info["accrue_stages_used"] = set()  # by the coming transaction
        made: set[str] = info.setdefault("accrue_stages", set())
        missing = [table for table in tables if _stage(table) not in made]
        if not missing:
            return
        for table in missing:
            conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {_stage(table)} "
                                 f'ON COMMIT DELETE ROWS AS SELECT * FROM "{table.name}" '
                                 "WITH NO DATA")
        conn.commit()
        made.update(_stage(table) for table in missing)

    def _copy_then_insert(self, conn: Connection, table: sa.Table,
                          statement: Callable[[Any], Any], key: str,
                          rows: Sequence[Mapping[str, Any]], columns: tuple[str, ...],
                          insert: Callable[..., Any]) -> int:
        """COPY the rows into the session's staging table, then INSERT ... SELECT from it.

        The commit empties the stage (`ON COMMIT DELETE ROWS`), a rollback takes back the
        COPY; a second write to the same table in one transaction empties it first.
        """
        stage = _stage(table)
        quoted = ", ".join(f'"{name}"' for name in columns)
        sql = self._sql.get((table.name, key, columns))
        if sql is None:
            source: Any = sa.select(*(sa.column(name) for name in columns)).select_from(
                sa.table(stage))
            staged = statement(insert(table).from_select(list(columns), source))
            sql = self._sql[(table.name, key, columns)] = str(staged.compile(dialect=self.dialect))
        buffer = io.StringIO()
        write = buffer.write
        for row in rows:
            write("\t".join([_copy_field(row[name]) for name in columns]))
            write("\n")
        buffer.seek(0)
        used: set[str] = conn.connection.info.setdefault("accrue_stages_used", set())
        if stage in used:
            conn.exec_driver_sql(f"DELETE FROM {stage}")
        used.add(stage)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.copy_expert(f"COPY {stage} ({quoted}) FROM STDIN", buffer)
        finally:
            cursor.close()
        return int(conn.exec_driver_sql(sql).rowcount)


def _stage(table: sa.Table) -> str:
    """The staging table of `table` in a session, named by the columns this code knows
    (a process of another version, with other columns, stages elsewhere)."""
    digest = hashlib.sha1(repr(tuple(table.c.keys())).encode()).hexdigest()[:10]
    return f"accrue_stage_{table.name}_{digest}"
