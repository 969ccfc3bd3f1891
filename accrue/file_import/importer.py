"""Import one exported file into a tenant's warehouse, page by page, through `Warehouse.apply`.

Each row becomes an `Upsert` keyed by the mapped id (its values converted exactly, its
whole text row kept as `raw`) or a `Quarantine` naming the line and the reason; pages
commit with the import's progress in the object's state, so an interrupted import
resumes after the last committed page and a finished one is not applied twice.

Stamps: a mapped last-modified column dates each row; without one, every row of an
import carries the import's own time (kept in the state, so a resumed import uses the
same). A row whose values and raw text equal the stored row is left alone, so importing
the same export again, or a later export, changes only what changed. With `snapshot`,
the file is the whole object: a `LiveIds` of every id in it goes with the last page,
and the warehouse marks deleted the live rows older than the import that it lacks.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue.file_import.mapping import FileMapping
from accrue.file_import.proposal import (
    STATE_KEY,
    choose_file,
    column_of,
    merged_state,
    remember_mapping,
)
from accrue.file_import.reading import (
    CsvFile,
    FileImportError,
    Row,
    detect_dialect,
    detect_encoding,
    fingerprint,
    read_rows,
)
from accrue.file_import.values import ValueProblem, comparable, convert, parse_datetime
from accrue.schema import object_table
from accrue.tenants import validate_tenant_id
from accrue.warehouse import Warehouse, WriteStats
from accrue.warehouse.values import _RowBuilder
from connectors.base import Change, Checkpoint, LiveIds, Quarantine, Upsert
from connectors.common_model import COMMON_OBJECTS, ID_LENGTH

PAGE_ROWS = 2000
ERRORS_KEPT = 100
ProgressFn = Callable[[str], None]


@dataclass
class ImportResult:
    tenant_id: str
    object_name: str
    file: str
    rows: int = 0
    upserted: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped_stale: int = 0
    quarantined: int = 0
    resumed_after_line: int = 0
    already_imported: bool = False
    dry_run: bool = False
    errors: list[tuple[int, str]] = field(default_factory=list)  # the first ERRORS_KEPT
    changed: int = 0  # rows sent to the warehouse: new, or different from the stored row
    read_quarantined: int = 0  # rows the reading sent to quarantine (line and reason)
    headers: list[str] = field(default_factory=list)
    as_of: datetime | None = None  # the import's stamp (a snapshot's deletes carry it)

    def summary(self) -> str:
        if self.already_imported:
            return f"{self.file}: already imported with this mapping; nothing changed"
        verb = "would import" if self.dry_run else "imported"
        text = (f"{self.file}: {verb} {self.rows:,} rows: {self.upserted:,} upserted, "
                f"{self.unchanged:,} unchanged, {self.deleted:,} marked deleted, "
                f"{self.quarantined:,} quarantined")
        if self.resumed_after_line:
            text += f" (resumed after line {self.resumed_after_line})"
        return text


@dataclass
class _RunCounts:
    """A run's figures so far, saved with each checkpoint (a resumed run goes on counting)."""

    rows: int = 0
    changed: int = 0  # upserts sent: new or different from the stored row
    unchanged: int = 0
    quarantined: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    @classmethod
    def of(cls, run: Mapping[str, Any]) -> _RunCounts:
        saved = run.get("counts") or {}
        return cls(int(saved.get("rows") or 0), int(saved.get("changed") or 0),
                   int(saved.get("unchanged") or 0), int(saved.get("quarantined") or 0),
                   [(int(line), str(why)) for line, why in run.get("errors") or []])

    def as_json(self) -> dict[str, Any]:
        return {"counts": {"rows": self.rows, "changed": self.changed,
                           "unchanged": self.unchanged, "quarantined": self.quarantined},
                "errors": [list(e) for e in self.errors]}

    def into(self, result: ImportResult) -> None:
        result.rows, result.unchanged = self.rows, self.unchanged
        result.changed, result.read_quarantined = self.changed, self.quarantined
        result.errors = list(self.errors)


def _as_of_now(previous: Mapping[str, Any] | None) -> datetime:
    """This import's stamp: now, and always after the previous import's (same second or a
    clock step back), so its versions never collide with the last import's in history."""
    now = datetime.now(UTC)
    try:
        last = datetime.fromisoformat(str((previous or {})["as_of"]))
    except (KeyError, ValueError, TypeError):
        return now
    return max(now, last + timedelta(microseconds=1))


class _RowMapper:
    """One text row to an Upsert, or a Quarantine naming its line and every reason."""

    def __init__(self, mapping: FileMapping, headers: list[str], stamp: datetime):
        self.mapping = mapping
        self.headers = headers
        self.stamp = stamp
        index = {h: i for i, h in enumerate(headers)}
        self.id_index = index[mapping.id_column]
        self.modified_index = (index[mapping.modified_column]
                               if mapping.modified_column else None)
        self.builder = _RowBuilder(mapping.object_name)
        order = [c.name for c in COMMON_OBJECTS[mapping.object_name]]
        self.fields = [(target, index[mapping.columns[target]], column_of(mapping, target))
                       for target in order if target in mapping.columns]

    def raw(self, row: Row) -> dict[str, Any]:
        raw: dict[str, Any] = dict(zip(self.headers, row.values, strict=False))
        if len(row.values) > len(self.headers):
            raw["_extra"] = list(row.values[len(self.headers):])
        return raw

    def map(self, row: Row) -> Upsert | Quarantine:
        raw = self.raw(row)
        values = row.values
        source_id = values[self.id_index] if self.id_index < len(values) else ""
        problems = []
        if len(values) != len(self.headers):
            problems.append(f"{len(values)} values, the header has {len(self.headers)}")
        if not source_id:
            return Quarantine(None, None, raw,
                              f"line {row.line}: no {self.mapping.id_column!r} (record id)")
        stamp = self.stamp
        if self.modified_index is not None:
            text = values[self.modified_index] if self.modified_index < len(values) else ""
            if text:
                try:
                    stamp = parse_datetime(text, self.mapping.format)
                except ValueProblem as exc:
                    problems.append(f"{self.mapping.modified_column}: {exc}")
        fields: dict[str, Any] = {}
        for target, i, column in self.fields:
            text = values[i] if i < len(values) else ""
            if not text:
                fields[target] = None
                continue
            words = self.mapping.value_maps.get(target)
            if words is not None:
                if text not in words:
                    problems.append(f"{self.headers[i]} ({target}): {text!r} is not one of "
                                    "the mapping's values for it")
                    continue
                text = words[text]
            try:
                fields[target] = convert(text, column, self.mapping.format)
            except ValueProblem as exc:
                problems.append(f"{self.headers[i]} ({target}): {exc}")
        if len(source_id) > ID_LENGTH:
            problems.append(f"the id has {len(source_id)} characters, at most {ID_LENGTH} fit")
        # The warehouse's own rules (a float's digits, text it cannot hold), checked here
        # so the quarantined row names its line.
        prefix = f"{self.mapping.object_name}."
        problems += [p.removeprefix(prefix) for p in self.builder.fields(fields)[1]]
        if problems:
            return Quarantine(source_id if len(source_id) <= ID_LENGTH else None, stamp, raw,
                              f"line {row.line}: " + "; ".join(problems))
        return Upsert(source_id, stamp, fields, raw)


class _SeenIds:
    """The ids read so far and their lines, in a private temporary SQLite database on disk
    (SQLite's "" database), so memory stays flat however many rows the file has."""

    def __init__(self) -> None:
        self.db = sqlite3.connect("")
        self.db.execute("CREATE TABLE seen (id TEXT PRIMARY KEY, line INTEGER) WITHOUT ROWID")

    def add(self, source_id: str, line: int) -> int | None:
        """None for a new id; else the line where the file already had it."""
        if self.db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)",
                           (source_id, line)).rowcount:
            return None
        earlier = self.db.execute("SELECT line FROM seen WHERE id = ?", (source_id,)).fetchone()
        return int(earlier[0])

    def all(self) -> frozenset[str]:
        """Every id (a snapshot's LiveIds: the warehouse takes them as one set)."""
        return frozenset(row[0] for row in self.db.execute("SELECT id FROM seen"))

    def close(self) -> None:
        self.db.close()


def _unchanged(engine: Engine, tenant_id: str, object_name: str,
               upserts: list[Upsert]) -> set[str]:
    """Ids of upserts whose values and raw text equal the stored, live row."""
    if not upserts:
        return set()
    table = object_table(object_name)
    columns = COMMON_OBJECTS[object_name]
    with engine.connect() as conn:
        stored = {
            row.source_id: row for row in conn.execute(
                sa.select(table).where(table.c.tenant_id == tenant_id,
                                       table.c.source_id.in_([u.source_id for u in upserts])))
        }
    same = set()
    for upsert in upserts:
        row = stored.get(upsert.source_id)
        if row is None or row.is_deleted or dict(row.raw or {}) != dict(upsert.raw):
            continue
        if all(comparable(upsert.fields.get(c.name), c) == getattr(row, c.name)
               for c in columns):
            same.add(upsert.source_id)
    return same


def read_file(
    engine: Engine,
    tenant_id: str,
    source: CsvFile,
    mapping: FileMapping,
    result: ImportResult,
    *,
    snapshot: bool,
    state: Mapping[str, Any] | None,
    run_key: Mapping[str, Any] | None = None,
    page_rows: int = PAGE_ROWS,
    repeat: bool = False,
) -> Iterator[Change]:
    """The file as pages of changes, each closed by a `Checkpoint` whose state holds the
    import's progress: the one reading of an import, shared by `accrue import` (which
    applies each page itself) and the pipelines' file feed (whose sync engine does).

    Each page: the rows' `Upsert`s (rows equal to the stored ones left out) and
    `Quarantine`s; with `snapshot`, the last page carries the `LiveIds` of every id in the
    file. A saved run of the same file, mapping, mode and `run_key` resumes after its last
    committed line; a finished one yields nothing (`result.already_imported`) unless
    `repeat`. The counts of a run live in its state, so they survive a resume.
    """
    object_name = mapping.object_name
    encoding = detect_encoding(source)
    dialect = detect_dialect(source, encoding)
    section = (state or {}).get(STATE_KEY) or {}
    saved_run = section.get("run") if isinstance(section, Mapping) else None
    key = {"file": fingerprint(source), "mapping": mapping.fingerprint(), "snapshot": snapshot,
           **(run_key or {})}
    resume_line = 0
    as_of = _as_of_now(saved_run if isinstance(saved_run, Mapping) else None)
    counts = _RunCounts()
    if isinstance(saved_run, Mapping) and all(saved_run.get(k) == v for k, v in key.items()):
        if saved_run.get("done") and not repeat:
            result.already_imported = True
            counts = _RunCounts.of(saved_run)
            counts.into(result)
            return
        if not saved_run.get("done"):
            resume_line = int(saved_run.get("line") or 0)
            as_of = datetime.fromisoformat(str(saved_run["as_of"]))
            counts = _RunCounts.of(saved_run)
    result.resumed_after_line = resume_line
    result.as_of = as_of

    with read_rows(source, encoding, dialect) as (headers, rows):
        problems = mapping.problems(headers)
        if problems:
            raise FileImportError("the mapping does not fit the file: " + "; ".join(problems))
        result.headers = list(headers)
        mapper = _RowMapper(mapping, headers, as_of)
        seen = _SeenIds()
        page: list[Upsert | Quarantine] = []
        last_line = resume_line

        def close_page(done: bool) -> Iterator[Change]:
            nonlocal state
            upserts = [c for c in page if isinstance(c, Upsert)]
            same = _unchanged(engine, tenant_id, object_name, upserts)
            counts.unchanged += len(same)
            counts.changed += len(upserts) - len(same)
            counts.quarantined += len(page) - len(upserts)
            for change in page:
                if not (isinstance(change, Upsert) and change.source_id in same):
                    yield change
            if done and snapshot:
                yield LiveIds(seen.all(), as_of)
            run = {**key, "line": last_line, "as_of": as_of.isoformat(), "done": done,
                   **counts.as_json()}
            state = merged_state(state, run=run)
            page.clear()
            counts.into(result)
            yield Checkpoint(state)

        try:
            for row in rows:
                change = mapper.map(row)
                source_id = change.source_id
                if source_id is not None:
                    earlier = seen.add(source_id, row.line)
                    if earlier is not None:
                        change = Quarantine(None, None, change.raw,
                                            f"line {row.line}: the id {source_id!r} is on line "
                                            f"{earlier} too")
                if row.line <= resume_line:
                    continue
                counts.rows += 1
                if isinstance(change, Quarantine) and len(counts.errors) < ERRORS_KEPT:
                    counts.errors.append((row.line, change.reason.split(": ", 1)[1]))
                page.append(change)
                last_line = row.line
                if len(page) >= page_rows:
                    yield from close_page(done=False)
            yield from close_page(done=True)
        finally:
            seen.close()


def import_file(
    engine: Engine,
    tenant_id: str,
    object_name: str,
    path: str | Path,
    mapping: FileMapping,
    *,
    snapshot: bool,
    member: str | None = None,
    dry_run: bool = False,
    page_rows: int = PAGE_ROWS,
    progress: ProgressFn | None = None,
) -> ImportResult:
    """Upsert the file's rows by the mapped id; bad rows to quarantine with line and reason.

    `snapshot`: the file is a full export, so live records absent from it are marked
    deleted. `dry_run`: convert and count, write nothing. Each page is applied with its
    checkpoint in one transaction (`read_file` reads). The mapping used is remembered for
    the tenant and object once the import finishes.
    """
    validate_tenant_id(tenant_id)
    if mapping.object_name != object_name:
        raise FileImportError(f"the mapping is for {mapping.object_name}, not {object_name}")
    warehouse = Warehouse(engine)
    source = choose_file(path, object_name, member)
    result = ImportResult(tenant_id, object_name, source.name, dry_run=dry_run)
    page: list[Any] = []
    for change in read_file(engine, tenant_id, source, mapping, result, snapshot=snapshot,
                            state=warehouse.get_state(tenant_id, object_name),
                            page_rows=page_rows, repeat=dry_run):
        if not isinstance(change, Checkpoint):
            page.append(change)
            continue
        if dry_run:
            result.upserted += sum(isinstance(c, Upsert) for c in page)
            result.quarantined += sum(isinstance(c, Quarantine) for c in page)
        else:
            _count(result, warehouse.apply(tenant_id, object_name, page, change.state))
            if progress:
                progress(result.summary())
        page.clear()
    if not dry_run and not result.already_imported:
        remember_mapping(engine, tenant_id, result.headers, mapping)
    return result


def _count(result: ImportResult, stats: WriteStats) -> None:
    result.upserted += stats.upserted
    result.deleted += stats.deleted
    result.skipped_stale += stats.skipped_stale
    result.quarantined += stats.quarantined

