"""Reading the customer's data as push records: a database through SQLAlchemy, or a folder
of CSV exports (read by accrue.file_import.reading, the one CSV reader).

A source yields `Unit`s per mapped object: a stream of `Change`s (one push record each,
with what the checkpoint learns once it is acknowledged) and, for an export, the file's
fingerprint to remember when all of it is acknowledged.

* Database, with an updated-at column: rows after the checkpoint's (updated_at, id), in
  that order, a page at a time (short queries: no long read transaction holding the
  customer's database). A truthy `deleted_flag` makes the row a delete. Rows without an
  updated-at value are counted, not pushed (their change cannot be placed in time).
* Database without one, and every export: the whole set is read and compared with the
  digests of what was pushed before; only new or changed records are pushed.
* `deletes_by_absence`: an id pushed before and no longer in the table (or in a full
  export) is pushed as a delete.
Values leave exactly: a naive date-time is read in the source's time zone and sent with
its offset; a decimal that a float cannot hold exactly is sent as text (the warehouse then
quarantines it with the reason rather than store a rounded number).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from accrue.agent.checkpoint import ObjectState
from accrue.agent.mapping import AgentConfig, MappingError, ObjectMapping
from accrue.file_import import reading, values
from connectors.common_model import COMMON_OBJECTS

_TRUE = frozenset({"1", "true", "t", "yes", "y"})


@dataclass(frozen=True)
class Change:
    record: dict[str, Any]  # {object, id, action, data?, occurred_at?}
    key: tuple[Any, Any] | None = None  # (updated_at, id) to continue after, incremental
    digest: str | None = None  # what `seen` keeps for the id once acknowledged
    forget: bool = False  # an absence delete: the id leaves `seen`


@dataclass
class Unit:
    object_name: str
    changes: Iterator[Change]
    file: str | None = None  # an export's fingerprint, remembered once all is acknowledged
    label: str = ""
    warnings: list[str] = field(default_factory=list)


def digest(record: Mapping[str, Any]) -> str:
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return bool(value)


def json_value(value: Any, zone: ZoneInfo) -> Any:
    """A database value as JSON, exactly (see the module docstring)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=zone)
        return aware.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        as_float = float(value)
        exact = math.isfinite(as_float) and Decimal(repr(as_float)) == value
        return as_float if exact else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    raise ValueError(f"a {type(value).__name__} value cannot be pushed")


def occurred_at(value: Any, zone: ZoneInfo) -> str | None:
    """An updated-at value as the push API's occurred_at (ISO 8601 with an offset)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).isoformat()
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip())
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=zone)).isoformat()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=zone).isoformat()
    raise ValueError(f"updated-at value {value!r} is not a date-time")


def build_record(mapping: ObjectMapping, row: Mapping[str, Any], source_id: str,
                 data: dict[str, Any], stamp: str | None) -> dict[str, Any]:
    deleted = mapping.deleted_flag is not None and truthy(row.get(mapping.deleted_flag))
    record: dict[str, Any] = {"object": mapping.object, "id": source_id,
                              "action": "delete" if deleted else "update"}
    if not deleted:
        record["data"] = data
    if stamp is not None:
        record["occurred_at"] = stamp
    return record


def _fetch(conn: sa.Connection, query: sa.Select[Any]) -> list[Mapping[str, Any]]:
    return [cast(Mapping[str, Any], row) for row in conn.execute(query).mappings()]


def _absence_deletes(mapping: ObjectMapping, state: ObjectState,
                     present: set[str]) -> Iterator[Change]:
    for source_id in sorted(set(state.seen) - present):
        yield Change({"object": mapping.object, "id": source_id, "action": "delete"},
                     forget=True)


# ------------------------------------------------------------------------ database


class DatabaseSource:
    """Tables of a database; the engine never writes (only SELECTs are issued)."""

    def __init__(self, config: AgentConfig, url: str, page: int) -> None:
        self.config = config
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.zone = ZoneInfo(config.timezone)
        self.page = page
        self._tables: dict[str, sa.Table] = {}

    def close(self) -> None:
        self.engine.dispose()

    def table(self, mapping: ObjectMapping) -> sa.Table:
        """The mapped table, reflected; every column the mapping names must exist."""
        assert mapping.table is not None
        if mapping.table in self._tables:
            return self._tables[mapping.table]
        schema, _, name = mapping.table.rpartition(".")
        where = f"{self.config.path}: object {mapping.object!r}"
        try:
            table = sa.Table(name, sa.MetaData(), schema=schema or None,
                             autoload_with=self.engine)
        except sa.exc.NoSuchTableError:
            known = sa.inspect(self.engine).get_table_names(schema=schema or None)
            raise MappingError(f"{where}: no table {mapping.table!r} in the database "
                               f"(tables: {', '.join(sorted(known)) or 'none'})") from None
        missing = [c for c in mapping.columns() if c not in table.c]
        if missing:
            raise MappingError(
                f"{where}: table {mapping.table} has no column {', '.join(map(repr, missing))}"
                f" (its columns: {', '.join(table.c.keys())})")
        self._tables[mapping.table] = table
        return table

    def _change(self, mapping: ObjectMapping, row: Mapping[str, Any]) -> dict[str, Any]:
        data = {target: json_value(row[column], self.zone)
                for column, target in mapping.fields.items()}
        data.update({column: json_value(row[column], self.zone) for column in mapping.extra})
        stamp = occurred_at(row[mapping.updated_at], self.zone) if mapping.updated_at else None
        return build_record(mapping, row, str(row[mapping.id]), data, stamp)

    def units(self, mapping: ObjectMapping, state: ObjectState) -> Iterator[Unit]:
        table = self.table(mapping)
        if mapping.updated_at is None:
            yield Unit(mapping.object, self._snapshot(mapping, table, state),
                       label=mapping.table or "")
            return
        unit = Unit(mapping.object, iter(()), label=mapping.table or "")
        unit.changes = self._incremental(mapping, table, state, unit)
        yield unit
        if mapping.deletes_by_absence:
            ids = self._ids(table, mapping)
            yield Unit(mapping.object, _absence_deletes(mapping, state, ids),
                       label=f"{mapping.table} (ids no longer there)")

    def _incremental(self, mapping: ObjectMapping, table: sa.Table, state: ObjectState,
                     unit: Unit) -> Iterator[Change]:
        updated, key = table.c[mapping.updated_at or ""], table.c[mapping.id]
        columns = [table.c[c] for c in mapping.columns()]
        after = state.after
        with self.engine.connect() as conn:
            undated = conn.scalar(sa.select(sa.func.count()).select_from(table)
                                  .where(updated.is_(None)))
        if undated:
            unit.warnings.append(f"{undated} row(s) of {mapping.table} have no "
                                 f"{mapping.updated_at}: not pushed")
        track = mapping.deletes_by_absence
        while True:
            query = sa.select(*columns).where(updated.is_not(None))
            if after is not None:
                query = query.where(sa.or_(updated > after[0],
                                           sa.and_(updated == after[0], key > after[1])))
            query = query.order_by(updated, key).limit(self.page)
            with self.engine.connect() as conn:
                rows = _fetch(conn, query)
            for row in rows:
                record = self._change(mapping, row)
                yield Change(record, key=(row[mapping.updated_at or ""], row[mapping.id]),
                             digest="" if track and record["action"] != "delete" else None,
                             forget=track and record["action"] == "delete")
            if len(rows) < self.page:
                return
            last = rows[-1]
            after = (last[mapping.updated_at or ""], last[mapping.id])

    def _rows(self, mapping: ObjectMapping, table: sa.Table) -> Iterator[Mapping[str, Any]]:
        """Every row, by id, a page at a time."""
        key = table.c[mapping.id]
        columns = [table.c[c] for c in mapping.columns()]
        last: Any = None
        while True:
            query = sa.select(*columns).order_by(key).limit(self.page)
            if last is not None:
                query = query.where(key > last)
            with self.engine.connect() as conn:
                rows = _fetch(conn, query)
            yield from rows
            if len(rows) < self.page:
                return
            last = rows[-1][mapping.id]

    def _ids(self, table: sa.Table, mapping: ObjectMapping) -> set[str]:
        with self.engine.connect() as conn:
            return {str(i) for i in conn.scalars(sa.select(table.c[mapping.id]))}

    def _snapshot(self, mapping: ObjectMapping, table: sa.Table,
                  state: ObjectState) -> Iterator[Change]:
        present: set[str] = set()
        for row in self._rows(mapping, table):
            record = self._change(mapping, row)
            present.add(record["id"])
            seal = digest(record)
            if state.seen.get(record["id"]) != seal:
                yield Change(record, digest=seal)
        if mapping.deletes_by_absence:
            yield from _absence_deletes(mapping, state, present)


# ------------------------------------------------------------------------- exports


class ExportSource:
    """A folder of CSV exports: each new file matching an object's glob, oldest first."""

    def __init__(self, config: AgentConfig) -> None:
        assert config.exports is not None
        self.config = config
        self.folder = config.exports
        self.format = values.ValueFormat(config.decimal,  # type: ignore[arg-type]
                                         config.date_order,  # type: ignore[arg-type]
                                         config.timezone)
        self.zone = ZoneInfo(config.timezone)

    def close(self) -> None:
        pass

    def files(self, mapping: ObjectMapping) -> list[Path]:
        if not self.folder.is_dir():
            raise MappingError(f"{self.config.path}: [source] exports {self.folder} is not a "
                               "folder")
        found = [p for p in self.folder.glob(mapping.files or "") if p.is_file()]
        return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))

    def units(self, mapping: ObjectMapping, state: ObjectState) -> Iterator[Unit]:
        for path in self.files(mapping):
            source = reading.CsvFile(path)
            fingerprint = reading.fingerprint(source)
            if fingerprint in state.files:
                continue
            unit = Unit(mapping.object, iter(()), file=fingerprint, label=path.name)
            unit.changes = self._file(mapping, source, state, unit)
            yield unit

    def _file(self, mapping: ObjectMapping, source: reading.CsvFile, state: ObjectState,
              unit: Unit) -> Iterator[Change]:
        encoding = reading.detect_encoding(source)
        dialect = reading.detect_dialect(source, encoding)
        columns = {c.name: c for c in COMMON_OBJECTS[mapping.object]}
        present: set[str] = set()
        with reading.read_rows(source, encoding, dialect) as (headers, rows):
            missing = [c for c in mapping.columns() if c not in headers]
            if missing:
                raise MappingError(
                    f"{self.config.path}: object {mapping.object!r}: {source.name} has no "
                    f"column {', '.join(map(repr, missing))} (its columns: {', '.join(headers)})")
            for row in rows:
                cells = dict(zip(headers, row.values, strict=False))
                source_id = (cells.get(mapping.id) or "").strip()
                if not source_id:
                    unit.warnings.append(f"{source.name} line {row.line}: no {mapping.id}; "
                                         "skipped")
                    continue
                present.add(source_id)
                data: dict[str, Any] = {}
                for column, target in mapping.fields.items():
                    data[target] = self._value(cells.get(column, ""), columns[target],
                                               f"{source.name} line {row.line}", unit)
                data.update({column: cells.get(column, "") for column in mapping.extra})
                stamp = None
                if mapping.updated_at and cells.get(mapping.updated_at, "").strip():
                    stamp = values.parse_datetime(cells[mapping.updated_at].strip(),
                                                  self.format).isoformat()
                record = build_record(mapping, cells, source_id, data, stamp)
                seal = digest(record)
                if state.seen.get(source_id) != seal:
                    yield Change(record, digest=seal)
        if mapping.deletes_by_absence:
            yield from _absence_deletes(mapping, state, present)

    def _value(self, text: str, column: Any, where: str, unit: Unit) -> Any:
        """The exported text as the column's value; a text that is not exactly one goes
        as it is (the warehouse quarantines it with the reason), with a warning."""
        if not text.strip():
            return None
        try:
            value = values.convert(text.strip(), column, self.format)
        except values.ValueProblem as exc:
            unit.warnings.append(f"{where}: {column.name}: {exc}; sent as text")
            return text
        return json_value(value, self.zone)


def open_source(config: AgentConfig, url: str | None) -> DatabaseSource | ExportSource:
    if config.exports is not None:
        return ExportSource(config)
    assert url is not None
    return DatabaseSource(config, url, config.batch_size)
