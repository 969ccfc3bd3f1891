"""The warehouse's hot path: JSON encoded once, rows handed to the driver's own bulk path.

Why (issue 15, profile of `Warehouse.apply` on a real page): validating a record's JSON
by walking it in Python, then letting SQLAlchemy `json.dumps` it once for the row and
twice more for the change log, and running SQLAlchemy's bind processing on every value
of every row cost most of apply's time. Here each document is encoded once, by orjson
after one walk that finds it plain (the careful walk decides otherwise), the same text
goes to the row and the log, values are spelled a column at a time, and
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
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import repeat
from operator import attrgetter, is_
from typing import Any
from uuid import UUID

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from accrue.schema import UtcDateTime
from accrue.warehouse.rows import Rows


class NotFastJson(Exception):
    """The fast encoder met something only the careful walk can judge (or refuse with a path)."""


def _default(value: Any) -> Any:
    """What the careful walk (`warehouse.to_json`) makes of non-JSON types, for orjson."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        number = float(value)
        if number - number != 0:  # NaN, an infinity, or beyond a float's range
            raise NotFastJson
        return number
    if isinstance(value, set | frozenset):
        return list(value)
    raise NotFastJson


_SCALARS = frozenset({str, int, bool, type(None)})
_CONTAINERS = frozenset({dict, list, tuple, set, frozenset})
_DEFAULTED = (datetime, date, UUID, Decimal)  # what `_default` spells


def _plain_and_finite(value: Any) -> bool:
    """Whether `value` holds only types spelled here as the careful walk spells them, and
    no NaN or infinity: orjson writes those as null, which would change the value."""
    kind = type(value)
    items = value.values() if kind is dict else value if kind in _CONTAINERS else (value,)
    for item in items:
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is float:
            if item - item != 0:
                return False
        elif kind in _CONTAINERS:
            if not _plain_and_finite(item):
                return False
        elif not isinstance(item, _DEFAULTED):
            return False
    return True


ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME  # instants spelled by `_default`, as the walk does
ORJSON_NUL = "\\u0000"  # how orjson spells a NUL, which PostgreSQL cannot store


def fast_json_text(value: Any) -> str:
    """`value` as compact JSON text, or NotFastJson when the careful walk must decide.

    orjson (several times the standard library's C encoder) does the work once the walk
    above has found only plain, finite values. orjson refuses what the careful walk might
    treat otherwise, so it falls back there: keys that are not strings, lone surrogates,
    integers beyond 64 bits, nesting beyond its limit. NUL survives as \\u0000 in the
    text, so it is looked for there.
    """
    if not _plain_and_finite(value):
        raise NotFastJson
    try:
        text = orjson.dumps(value, default=_default, option=ORJSON_OPTIONS).decode()
    except (TypeError, RecursionError, NotFastJson):  # orjson.JSONEncodeError is a TypeError
        raise NotFastJson from None
    if ORJSON_NUL in text:
        raise NotFastJson
    return text


def dumps(value: Any) -> str:
    """Compact JSON text of a document already made storable (no fallback needed)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


# --------------------------------------------------------------------------- transport

# Text handed to the driver per call: psycopg2 releases the interpreter lock around each
# send, and with the reader thread busy every re-acquisition waited; its default of 8 KB
# made thousands of them per page (a PostgreSQL load took 35 s with it, 31.5 s without).
COPY_CHUNK = 4 << 20
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
Column = list[Any]  # one column's values over a page's rows
Spell = Callable[[Column], Column]  # a column's values as the driver (or COPY) takes them


def _copy_text(values: Column) -> Column:
    """Text in COPY's text format: only backslash, tab, newline and carriage return escaped
    (`isprintable` is False for each of the last three, so most values skip the translate)."""
    return ["\\N" if v is None else v if v.isprintable() and "\\" not in v
            else v.translate(_COPY_ESCAPES) for v in values]


def _copy_json(values: Column) -> Column:
    """JSON text in COPY's text format: JSON holds no raw tab, newline or carriage return
    (inside strings they are escaped), so only its backslashes are doubled (one scan;
    `replace` returns the same string when there is none)."""
    return ["\\N" if v is None else v.replace("\\", "\\\\") for v in values]


def _copy_bool(values: Column) -> Column:
    return ["\\N" if v is None else "t" if v else "f" for v in values]


def _copy_other(values: Column) -> Column:
    """Numbers, instants and dates: the text their column type parses (repr keeps a
    float's every digit; an aware datetime's ISO text keeps its instant)."""
    return ["\\N" if v is None else repr(v) if type(v) is float
            else v.isoformat() if isinstance(v, datetime | date) else str(v) for v in values]


def _sqlite_instant(value: datetime | None) -> str | None:
    """A UTC instant as SQLAlchemy's SQLite dialect spells `UtcDateTime` (one text format, so
    the upsert's "newer wins" and every range read compare instants as text correctly)."""
    return None if value is None else value.isoformat(" ", "microseconds")[:26]


_tzinfo = attrgetter("tzinfo")


def all_utc(instants: Sequence[datetime]) -> bool:
    """Each instant's zone is the very `UTC` object (what connectors send). Another zone of
    offset 0 compares equal to it, so only identity says the value needs no conversion."""
    return all(map(is_, map(_tzinfo, instants), repeat(UTC)))


_MEMO_LIMIT = 20_000  # spelled values kept between writes (a few pages' worth)
_MISSING = object()


def _once_each(spell: Callable[[Any], Any], memo: dict[Any, Any], null: str | None = None
               ) -> Spell:
    """Each distinct value of a column spelled once (`isoformat` costs ~3 µs; a page's rows
    share `synced_at`, and the row and its log version share their stamp), the memo shared
    by every column of its kind. The column is looked up in this call's own dict, so
    another thread clearing the memo meanwhile changes nothing."""
    def column(values: Column) -> Column:
        if len(memo) > _MEMO_LIMIT:
            memo.clear()
        spelled = {}
        for value in set(values):
            text = memo.get(value, _MISSING)
            if text is _MISSING:
                text = memo[value] = null if value is None else spell(value)
            spelled[value] = text
        return list(map(spelled.__getitem__, values))
    return column


def _isoformat(value: date) -> str:
    return value.isoformat()


def _each(process: Callable[[Any], Any]) -> Spell:
    return lambda values: [None if v is None else process(v) for v in values]


class BulkWriter:
    """Runs one of `Warehouse`'s INSERT ... ON CONFLICT statements over many rows.

    Rows carry JSON columns as text (`fast_json_text`); every other value as the
    table's type takes it. `statement(base)` builds the ON CONFLICT statement on an
    INSERT `base` (plain on SQLite, INSERT ... SELECT from the staging table on
    PostgreSQL), so both backends run the same conflict rule. Values are spelled a
    column at a time (one comprehension per column, not a call per value), with the
    dialect's own bind processing: the text stored is the text SQLAlchemy would store.
    """

    def __init__(self, dialect: sa.Dialect) -> None:
        self.dialect = dialect
        self.postgres = dialect.name == "postgresql"
        self._sql: dict[tuple[str, str, tuple[str, ...]], str] = {}
        self._spells: dict[tuple[str, str], Spell | None] = {}
        self._instants: dict[Any, Any] = {}
        self._dates: dict[Any, Any] = {}

    def write(
        self,
        conn: Connection,
        table: sa.Table,
        statement: Callable[[Any], Any],
        key: str,
        rows: Rows,
        insert: Callable[..., Any],
    ) -> int:
        """Rows inserted or updated (a conflict the statement skips is not counted)."""
        if not len(rows):
            return 0
        columns = rows.names
        if self.postgres:
            return self._copy_then_insert(conn, table, statement, key, rows, columns, insert)
        sql = self._sql.get((table.name, key, columns))
        if sql is None:
            compiled = statement(insert(table)).compile(dialect=self.dialect,
                                                        column_keys=list(columns))
            if list(compiled.positiontup or ()) != list(columns):
                raise AssertionError(f"unexpected parameter order for {table.name}")
            sql = self._sql[(table.name, key, columns)] = str(compiled)
        params = list(zip(*self._columns(table, rows), strict=True))
        # Through the Connection (no compiled object, so no bind processing): the
        # driver's executemany, with the engine's events still seeing the statement.
        return int(conn.exec_driver_sql(sql, params).rowcount)

    def _columns(self, table: sa.Table, rows: Rows) -> list[Column]:
        """Each column's values over `rows`, spelled for the driver (or for COPY)."""
        spelled = []
        for name, values in zip(rows.names, rows.columns, strict=True):
            spell = self._spell(table, name)
            spelled.append(values if spell is None else spell(values))
        return spelled

    def _spell(self, table: sa.Table, name: str) -> Spell | None:
        """How `table.name`'s values go to the driver; None: as they are."""
        key = (table.name, name)
        if key in self._spells:
            return self._spells[key]
        column = table.c[name]
        spell: Spell | None
        if self.postgres:
            if isinstance(column.type, sa.JSON):
                spell = _copy_json  # JSON columns already hold their text
            elif isinstance(column.type, sa.String):
                spell = _copy_text
            elif isinstance(column.type, sa.Boolean):
                spell = _copy_bool
            elif isinstance(column.type, UtcDateTime | sa.DateTime):
                spell = _once_each(_isoformat, self._instants, "\\N")
            elif isinstance(column.type, sa.Date):
                spell = _once_each(_isoformat, self._dates, "\\N")
            else:
                spell = _copy_other
        elif isinstance(column.type, sa.JSON):
            spell = None  # already JSON text
        elif isinstance(column.type, sa.Boolean):
            spell = None  # sqlite3 stores a bool as the integer SQLAlchemy would bind
        elif isinstance(column.type, UtcDateTime):
            utc = column.type.process_bind_param  # refuses a naive instant, as every write does
            dialect = self.dialect

            def instant(value: Any) -> str | None:
                if type(value) is datetime and value.tzinfo is UTC:  # what connectors send
                    return value.isoformat(" ", "microseconds")[:26]
                return _sqlite_instant(utc(value, dialect))
            spell = _once_each(instant, self._instants)
        else:
            process = column.type.dialect_impl(self.dialect).bind_processor(self.dialect)
            spell = None if process is None else _each(process)
        self._spells[key] = spell
        return spell

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

    def insert_new(self, conn: Connection, table: sa.Table, statement: Callable[[Any], Any],
                   key: str, rows: Rows, insert: Callable[..., Any]) -> int:
        """Rows whose keys the table does not hold (looked up in this transaction, or
        assumed after a page of only new records: `WritePath.apply`): on
        PostgreSQL COPYed straight into the table, with no staging and no ON CONFLICT
        (the speculative insertion and the second pass were most of the server's work
        on an initial load). Should another writer have added one meanwhile, the key's
        unique index refuses the page and the transaction rolls back whole, so nothing
        is lost or duplicated; the caller writes it again the usual way. SQLite runs the
        usual statement: an upsert of a new row costs it no more than an insert."""
        if not len(rows):
            return 0
        if not self.postgres:
            return self.write(conn, table, statement, key, rows, insert)
        self._copy(conn, f'"{table.name}"', table, rows)
        return len(rows)

    def _copy_then_insert(self, conn: Connection, table: sa.Table,
                          statement: Callable[[Any], Any], key: str,
                          rows: Rows, columns: tuple[str, ...],
                          insert: Callable[..., Any]) -> int:
        """COPY the rows into the session's staging table, then INSERT ... SELECT from it.

        The commit empties the stage (`ON COMMIT DELETE ROWS`), a rollback takes back the
        COPY; a second write to the same table in one transaction empties it first.
        """
        stage = _stage(table)
        sql = self._sql.get((table.name, key, columns))
        if sql is None:
            source: Any = sa.select(*(sa.column(name) for name in columns)).select_from(
                sa.table(stage))
            staged = statement(insert(table).from_select(list(columns), source))
            sql = self._sql[(table.name, key, columns)] = str(staged.compile(dialect=self.dialect))
        used: set[str] = conn.connection.info.setdefault("accrue_stages_used", set())
        if stage in used:
            conn.exec_driver_sql(f"DELETE FROM {stage}")
        used.add(stage)
        self._copy(conn, stage, table, rows)
        return int(conn.exec_driver_sql(sql).rowcount)

    def _copy(self, conn: Connection, target: str, table: sa.Table, rows: Rows) -> None:
        """`rows` into `target` (a table shaped like `table`) by COPY ... FROM STDIN.

        The driver's errors are raised as SQLAlchemy raises them for any statement
        (IntegrityError, OperationalError...): the sync's retry rules know those."""
        quoted = ", ".join(f'"{name}"' for name in rows.names)
        lines = map("\t".join, zip(*self._columns(table, rows), strict=True))
        buffer = io.StringIO("\n".join(lines) + "\n")
        sql = f"COPY {target} ({quoted}) FROM STDIN"
        dbapi_error = self.dialect.loaded_dbapi.Error
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.copy_expert(sql, buffer, COPY_CHUNK)
        except dbapi_error as exc:
            raise sa.exc.DBAPIError.instance(sql, None, exc, dbapi_error,
                                             dialect=self.dialect) from exc
        finally:
            cursor.close()


def _stage(table: sa.Table) -> str:
    """The staging table of `table` in a session, named by the columns this code knows
    (a process of another version, with other columns, stages elsewhere)."""
    digest = hashlib.sha1(repr(tuple(table.c.keys())).encode()).hexdigest()[:10]
    return f"accrue_stage_{table.name}_{digest}"
