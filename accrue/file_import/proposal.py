"""What an admin sees before an import: the proposed mapping, samples, and the type check.

`propose` reads the file twice, streaming: once for the conventions its values show (the
decimal separator, the date order), once to convert every mapped value under them and
count what would be quarantined, with the first problems and their line numbers. A
mapping remembered for the tenant and object with the same header shape is used as it is
and the proposal says so: the import then asks nothing.

Remembered mappings live in `file_import_mapping` (one row per tenant, object and header
shape); an import's progress lives in the object's state, under "file_import".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue.db import dialect_insert
from accrue.file_import.mapping import (
    ID,
    MODIFIED,
    FileMapping,
    Match,
    header_signature,
    mapping_from_matches,
    propose_columns,
    propose_outcome,
    targets,
)
from accrue.file_import.reading import (
    CsvDialect,
    CsvFile,
    FileImportError,
    csv_files,
    detect_dialect,
    detect_encoding,
    read_rows,
)
from accrue.file_import.values import FormatVotes, ValueFormat, ValueProblem, convert
from accrue.schema import file_import_mapping, utcnow
from accrue.tenants import validate_tenant_id
from accrue.warehouse import Warehouse
from connectors.common_model import Column

STATE_KEY = "file_import"
SAMPLES = 3
DISTINCT_KEPT = 50  # words per header kept to propose outcome flags (a status, a stage)
PROBLEMS_SHOWN = 5
_MODIFIED_COLUMN = Column(MODIFIED, "datetime")
_ID_COLUMN = Column(ID, "str", None)


def column_of(mapping: FileMapping, target: str) -> Column:
    if target == ID:
        return _ID_COLUMN
    if target == MODIFIED:
        return _MODIFIED_COLUMN
    column = targets(mapping.object_name).get(target)
    assert column is not None
    return column


def choose_file(path: str | Path, object_name: str, member: str | None = None) -> CsvFile:
    """The CSV to import: the file, or the zip member named, or the only / obvious one."""
    files = csv_files(path)
    if member is not None:
        for found in files:
            if found.member == member:
                return found
        raise FileImportError(f"{Path(path).name} holds no {member!r}")
    if len(files) == 1:
        return files[0]
    words = {object_name, object_name.replace("_", ""), "deal" if object_name == "opportunity"
             else object_name}
    named = [f for f in files if any(w in Path(f.member or "").stem.lower().replace("_", "")
                                     for w in words)]
    if len(named) == 1:
        return named[0]
    raise FileImportError(
        f"{Path(path).name} holds several CSVs ({', '.join(f.member or '' for f in files)}): "
        "name the one to import")


# --------------------------------------------------------------------------- memory


def remembered_mapping(
    warehouse: Warehouse, tenant_id: str, object_name: str, headers: list[str]
) -> FileMapping | None:
    """The mapping confirmed for this tenant, object and header shape, if it still fits."""
    t = file_import_mapping
    with warehouse.engine.connect() as conn:
        found = conn.execute(sa.select(t.c.mapping).where(
            t.c.tenant_id == tenant_id, t.c.object_name == object_name,
            t.c.header_signature == header_signature(headers))).scalar_one_or_none()
    if not found:
        return None
    try:
        mapping = FileMapping.from_json(found)
    except ValueError:
        return None
    return mapping if not mapping.problems(headers) else None


def merged_state(current: Mapping[str, Any] | None, *, run: Mapping[str, Any]) -> dict[str, Any]:
    """The object's state with the file import's progress replaced (other keys kept)."""
    state = dict(current or {})
    section = dict(state.get(STATE_KEY) or {})
    section["run"] = dict(run)
    state[STATE_KEY] = section
    return state


def remember_mapping(
    engine: Engine, tenant_id: str, headers: list[str], mapping: FileMapping
) -> None:
    """Keep a mapping for the next file of the same header shape (the tenant must exist)."""
    validate_tenant_id(tenant_id)
    t = file_import_mapping
    now = utcnow()
    stmt = dialect_insert(engine.dialect)(t).values(
        tenant_id=tenant_id, object_name=mapping.object_name,
        header_signature=header_signature(headers), headers=list(headers),
        mapping=mapping.as_json(), created_at=now, updated_at=now)
    with engine.begin() as conn:
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["tenant_id", "object_name", "header_signature"],
            set_={"mapping": stmt.excluded.mapping, "headers": stmt.excluded.headers,
                  "updated_at": stmt.excluded.updated_at}))


# --------------------------------------------------------------------------- proposal


@dataclass
class ColumnReport:
    header: str
    target: str | None = None
    how: str | None = None
    score: float | None = None
    samples: list[str] = field(default_factory=list)
    filled: int = 0
    bad: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Proposal:
    file: CsvFile
    encoding: str
    dialect: CsvDialect
    headers: list[str]
    rows: int
    mapping: FileMapping | None
    remembered: bool
    columns: list[ColumnReport]
    notes: list[str]

    @property
    def signature(self) -> str:
        return header_signature(self.headers)

    @property
    def bad_rows(self) -> int:
        return sum(c.bad for c in self.columns)

    def as_json(self) -> dict[str, Any]:
        """The proposal as the concierge keeps it with an upload (what the admin was shown)."""
        return {
            "file": self.file.name, "member": self.file.member, "encoding": self.encoding,
            "delimiter": self.dialect.delimiter, "headers": list(self.headers),
            "rows": self.rows, "remembered": self.remembered, "notes": list(self.notes),
            "mapping": self.mapping.as_json() if self.mapping else None,
            "columns": [{"header": c.header, "target": c.target, "how": c.how,
                         "samples": list(c.samples), "filled": c.filled, "bad": c.bad,
                         "problems": [list(p) for p in c.problems]} for c in self.columns],
        }

    def render(self) -> str:
        """The proposal as the CLI prints it."""
        delimiter = {"\t": "TAB"}.get(self.dialect.delimiter, self.dialect.delimiter)
        lines = [f"{self.file.name}: {self.rows:,} rows, {self.encoding}, delimiter "
                 f"{delimiter!r}"]
        if self.mapping is None:
            lines.append("no column holds the record id: write a mapping (--mapping)")
        else:
            fmt = self.mapping.format
            lines.append(
                ("remembered mapping " if self.remembered else "proposed mapping ")
                + f"to {self.mapping.object_name} (decimal separator "
                f"{fmt.decimal or 'not known'}, date order {fmt.date_order or 'not known'}, "
                f"times in {fmt.timezone})")
        for col in self.columns:
            target = col.target or "-"
            how = f" [{col.how}]" if col.how else ""
            samples = ", ".join(repr(s) for s in col.samples) or "(empty)"
            bad = f"  {col.bad} bad" if col.bad else ""
            lines.append(f"  {col.header[:40]:<40} -> {target:<18}{how:<15} {samples[:70]}{bad}")
            for line, reason in col.problems:
                lines.append(f"      line {line}: {reason}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _values_by_target(mapping: FileMapping) -> dict[str, str]:
    by_target = dict(mapping.columns)
    by_target[ID] = mapping.id_column
    if mapping.modified_column:
        by_target[MODIFIED] = mapping.modified_column
    return by_target


def propose(
    warehouse: Warehouse, tenant_id: str, object_name: str, path: str | Path, *,
    mapping: FileMapping | None = None, member: str | None = None,
) -> Proposal:
    """Detect, match and type-check the whole file; nothing is written."""
    source = choose_file(path, object_name, member)
    encoding = detect_encoding(source)
    dialect = detect_dialect(source, encoding)
    with read_rows(source, encoding, dialect) as (headers, _rows):
        pass
    remembered = False
    matches: list[Match] = []
    if mapping is None:
        mapping = remembered_mapping(warehouse, tenant_id, object_name, headers)
        remembered = mapping is not None
    if mapping is None:
        matches = propose_columns(object_name, headers)
        mapping = mapping_from_matches(object_name, matches)
    elif mapping.object_name != object_name:
        raise FileImportError(f"the mapping is for {mapping.object_name}, not {object_name}")
    notes: list[str] = []
    if mapping is not None:
        problems = mapping.problems(headers)
        if problems:
            raise FileImportError("the mapping does not fit the file: " + "; ".join(problems))
    reports = {h: ColumnReport(h) for h in headers}
    for m in matches:
        reports[m.header].target, reports[m.header].how = m.target, m.how
        reports[m.header].score = round(m.score, 1)
    by_target = _values_by_target(mapping) if mapping else {}
    if not matches:
        for target, header in by_target.items():
            reports[header].target = target
            reports[header].how = "remembered" if remembered else "given"
    index = {h: i for i, h in enumerate(headers)}
    numeric, dated = [], []
    for target, header in by_target.items():
        kind = column_of(mapping, target).type if mapping else "str"
        if kind in ("float", "int"):
            numeric.append(index[header])
        elif kind in ("date", "datetime"):
            dated.append(index[header])
    rows = 0
    votes = FormatVotes()
    distinct: dict[str, set[str]] = {h: set() for h in headers}
    too_many: set[str] = set()
    with read_rows(source, encoding, dialect) as (_, rows_iter):
        for row in rows_iter:
            rows += 1
            values = row.values
            for i, header in enumerate(headers):
                text = values[i] if i < len(values) else ""
                if text:
                    report = reports[header]
                    report.filled += 1
                    if len(report.samples) < SAMPLES and text not in report.samples:
                        report.samples.append(text)
                    if header not in too_many:
                        words = distinct[header]
                        words.add(text)
                        if len(words) > DISTINCT_KEPT:
                            too_many.add(header)
                            words.clear()
            # Evidence for the conventions, counted as it streams by.
            for i in numeric:
                if i < len(values) and values[i]:
                    votes.number(values[i])
            for i in dated:
                if i < len(values) and values[i]:
                    votes.date(values[i])
    if mapping is not None:
        inferred, format_notes = votes.decide(mapping.format.timezone)
        notes += format_notes
        fmt = ValueFormat(mapping.format.decimal or inferred.decimal,
                          mapping.format.date_order or inferred.date_order,
                          mapping.format.timezone)
        mapping = replace(mapping, format=fmt)
        if matches:
            mapping, outcome_notes = propose_outcome(mapping, headers, distinct)
            notes += outcome_notes
            for target in ("is_won", "is_closed"):
                fed_by = mapping.columns.get(target)
                if fed_by and target in mapping.value_maps:
                    report = reports[fed_by]
                    report.target = f"{report.target}+{target}" if report.target else target
                    report.how = report.how or "outcome words"
        _type_check(source, encoding, dialect, mapping, headers, reports)
        if not remembered and not any(m.target == MODIFIED for m in matches):
            notes.append("no last-modified column: each import stamps its rows with its "
                         "own time (unchanged rows are left as they are)")
    return Proposal(source, encoding, dialect, headers, rows, mapping, remembered,
                    list(reports.values()), notes)


def _type_check(
    source: CsvFile, encoding: str, dialect: CsvDialect, mapping: FileMapping,
    headers: list[str], reports: dict[str, ColumnReport],
) -> None:
    checks = [(headers.index(h), reports[h], column_of(mapping, t),
               mapping.value_maps.get(t)) for t, h in _values_by_target(mapping).items()]
    with read_rows(source, encoding, dialect) as (_, rows_iter):
        for row in rows_iter:
            for i, report, column, words in checks:
                text = row.values[i] if i < len(row.values) else ""
                if not text:
                    if column.name == ID:
                        report.bad += 1
                        if len(report.problems) < PROBLEMS_SHOWN:
                            report.problems.append((row.line, "no id"))
                    continue
                try:
                    if words is not None:
                        if text not in words:
                            raise ValueProblem(f"{text!r} is not one of the mapping's values "
                                               f"for {column.name}")
                        text = words[text]
                    convert(text, column, mapping.format)
                except ValueProblem as exc:
                    report.bad += 1
                    if len(report.problems) < PROBLEMS_SHOWN:
                        report.problems.append((row.line, str(exc)))
