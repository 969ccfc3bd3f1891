"""The one write path into the warehouse (requirements F2, F3, F4).

Every sync writes through `Warehouse.apply`, which makes these promises:

* Idempotence (F2): rows are keyed on (tenant_id, source_id) and written with
  INSERT ... ON CONFLICT DO UPDATE, so replaying a page never duplicates a row;
  change-log versions are keyed on (record, source_modified_at, is_deleted) and
  written with ON CONFLICT DO NOTHING, so a replay never logs a version twice.
* Newest wins, history kept (F3): the crm_* row only takes a version that is
  not older than the stored one, while every version, stale ones included,
  lands in `crm_change_log`; `history`, `as_of` and `changes_since` read it.
* Deletes are flagged, never lost and never physical: `Delete`, soft-deleted
  upserts and reconciliation (`LiveIds`) set `is_deleted`, and log a version.
* Faithful or quarantined: a record the warehouse cannot store exactly as the
  CRM has it (over-long text, NUL, invalid unicode, absurd numbers, bad dates,
  wrong types) goes to `crm_quarantine` with the reason; the rest of the page
  lands. Nothing is truncated, stripped or silently altered.
* Atomic checkpoints (F4): a page, its change-log versions, its quarantined
  records and the connector state that covers them are committed in one
  transaction, so a sync that dies midway resumes with nothing lost or doubled.

Every query is scoped by tenant_id: a tenant never reads or writes another's rows.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from accrue.bulk_write import BulkWriter, NotFastJson, dumps, fast_json_text
from accrue.crypto import redact
from accrue.db import dialect_insert
from accrue.schema import (
    ERROR_KINDS,
    OBJECT_TABLES,
    RUN_STATUSES,
    UtcDateTime,
    change_log_raw,
    crm_change_log,
    crm_quarantine,
    file_upload,
    file_upload_chunk,
    object_table,
    pipeline_summary,
    push_inbox,
    push_schema,
    record_history,
    sync_run,
    sync_state,
    utcnow,
)
from accrue.shared_history import fields_json, fill_fields, row_fields
from accrue.tenants import validate_tenant_id
from connectors.base import Delete, LiveIds, Quarantine, Upsert
from connectors.common_model import (
    COMMON_OBJECTS,
    ID_LENGTH,
    OPTIONAL_REFERENCES,
    REFERENCES,
    Column,
)

logger = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 500
ERROR_MAX_CHARS = 8_000
REASON_MAX_CHARS = 2_000
RECONCILE_BATCH_IDS = 5_000  # ids per UPDATE when reconciliation marks rows deleted
RECONCILE_STAMP_STEP = timedelta(microseconds=1)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT_LIMIT = 1e15  # beyond this a CRM amount or ratio is a data error, not a value
_JSON_INT_LIMIT = 10**4000  # Python will not even print longer integers (int_max_str_digits)
ABANDONED_ERROR = "abandoned: the process died before finishing"
_KEY = ("tenant_id", "source_id")

PageChange = Upsert | Delete | Quarantine | LiveIds  # what `apply` takes


def _bind_parameter_limit(dialect_name: str) -> int:
    """Most bound parameters one statement may carry on this backend."""
    if dialect_name == "sqlite":
        # SQLITE_MAX_VARIABLE_NUMBER: 999 before 3.32, 32766 since.
        return 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
    return 65_535  # PostgreSQL wire protocol limit


@dataclass(frozen=True)
class WriteStats:
    """What one `apply` (or, summed with +, one sync) did."""

    upserted: int = 0
    deleted: int = 0  # includes rows reconciliation found gone from the CRM
    skipped_stale: int = 0  # older than what is stored, or superseded within the same page
    quarantined: int = 0  # kept in crm_quarantine instead (not stored faithfully otherwise)

    @property
    def total(self) -> int:
        return self.upserted + self.deleted + self.skipped_stale + self.quarantined

    def __add__(self, other: WriteStats) -> WriteStats:
        return WriteStats(
            self.upserted + other.upserted,
            self.deleted + other.deleted,
            self.skipped_stale + other.skipped_stale,
            self.quarantined + other.quarantined,
        )


class UnstorableValue(ValueError):
    """A value that cannot be stored faithfully, the same way, on SQLite and PostgreSQL."""


def _utc(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{what}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what}: naive datetime; connectors must emit timezone-aware UTC")
    return value.astimezone(UTC)


def _text_problem(text: str) -> str | None:
    """Why PostgreSQL text (UTF-8, no NUL) could not hold `text` as it is, or None."""
    if "\x00" in text:
        return "contains a NUL character, which PostgreSQL text cannot hold"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"not valid unicode (lone surrogate {text[exc.start]!r} at index {exc.start})"
    return None


def _is_finite(value: float | Decimal) -> bool:
    return value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)


class _JsonProblem(Exception):
    """Raised deep in a document; each level adds its key so the path is built only on error."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem
        self.where: list[str] = []


def _json(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if -_JSON_INT_LIMIT < value < _JSON_INT_LIMIT:
            return value
        raise _JsonProblem("integer too long for JSON")
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem:
            raise _JsonProblem(problem)
        return value
    if isinstance(value, float | Decimal):
        if not _is_finite(value):
            raise _JsonProblem(f"not a finite number ({value})")
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = key if isinstance(key, str) else str(key)
            problem = _text_problem(name)
            if problem:
                raise _JsonProblem(f"key {name!r}: {problem}")
            try:
                out[name] = _json(item)
            except _JsonProblem as exc:
                exc.where.append(f".{name}")
                raise
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = []
        for index, item in enumerate(value):
            try:
                items.append(_json(item))
            except _JsonProblem as exc:
                exc.where.append(f"[{index}]")
                raise
        return items
    raise _JsonProblem(f"{type(value).__name__} is not JSON-serializable")


def to_json(value: Any, path: str = "raw") -> Any:
    """A JSON document both backends store exactly, or UnstorableValue naming the path.

    Datetimes and dates become ISO 8601 strings, decimals and UUIDs numbers and
    strings. What has no faithful JSON form on PostgreSQL's JSONB (NaN and
    infinities, NUL characters, lone surrogates, unknown types) is refused
    rather than altered, so the caller can quarantine the record.
    """
    try:
        return _json(value)
    except _JsonProblem as exc:
        raise UnstorableValue(f"{path}{''.join(reversed(exc.where))}: {exc.problem}") from None


def json_text(value: Any, path: str = "raw") -> str:
    """`to_json`'s document as compact JSON text, encoded once (the row and the log share it).

    The C encoder does the work; whatever it might spell otherwise than `to_json`
    (non-string keys, NUL, lone surrogates, odd numbers) goes the careful way, which
    stores the same or names the path of what cannot be stored.
    """
    try:
        return fast_json_text(value)
    except NotFastJson:
        pass
    document = to_json(value, path)
    try:
        return dumps(document)
    except ValueError:  # a finite decimal beyond a float's range
        raise UnstorableValue(f"{path}: a number beyond a float's range") from None


def _raw_text(raw: Any) -> str:
    """Quarantined documents as ASCII JSON text: lone surrogates and NUL survive as escapes."""
    if isinstance(raw, Mapping) and not isinstance(raw, dict):
        raw = dict(raw)
    try:
        return json.dumps(raw, ensure_ascii=True, default=str)
    except (TypeError, ValueError, RecursionError):
        pass
    try:
        return json.dumps({"unserializable": repr(raw)}, ensure_ascii=True)
    except (ValueError, RecursionError):
        return json.dumps({"unserializable": type(raw).__name__})


def _clean_reason(reason: object) -> str:
    """A reason PostgreSQL text can hold (it may quote a bad key), at a bounded length."""
    text = str(reason).replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode()
    return text if len(text) <= REASON_MAX_CHARS else text[: REASON_MAX_CHARS - 1] + "…"


# --------------------------------------------------------------------------- row building

Coerce = Callable[[Any], Any]


def _wrong_type(expected: str, value: Any) -> UnstorableValue:
    return UnstorableValue(f"expected {expected}, got {type(value).__name__}")


def _text_coercer(length: int | None) -> Coerce:
    def coerce(value: Any) -> str:
        if isinstance(value, str):
            text = value
        elif isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise _wrong_type("text", value)
        elif not isinstance(value, int) and not _is_finite(value):
            raise UnstorableValue(f"not a finite number ({value})")
        else:
            try:
                text = str(value)
            except ValueError:  # an integer longer than Python will print
                raise UnstorableValue("number too long for text") from None
        problem = _text_problem(text)
        if problem:
            raise UnstorableValue(problem)
        if length is not None and len(text) > length:
            raise UnstorableValue(f"{len(text)} characters, the column holds {length}")
        return text

    return coerce


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise _wrong_type("an integer", value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, float | Decimal):
        if not _is_finite(value):
            raise UnstorableValue(f"not a finite number ({value})")
        if value != int(value):
            raise UnstorableValue(f"expected an integer, got {value}")
        number = int(value)
    elif isinstance(value, str):
        digits = value.strip()
        if not digits.lstrip("+-").isdigit():
            raise _wrong_type("an integer", value)
        try:
            number = int(digits)
        except ValueError:
            raise _wrong_type("an integer", value) from None
    else:
        raise _wrong_type("an integer", value)
    if not INT64_MIN <= number <= INT64_MAX:
        raise UnstorableValue("outside the 64-bit integer range")
    return number


def _float(value: Any) -> float:
    """A float column's value, only if the float says the same number (shortest form).

    An integer beyond 2**53 or a decimal with more digits than a float holds would be
    rounded on the way in: refused instead, so the record is quarantined, not changed.
    """
    if isinstance(value, bool):
        raise _wrong_type("a number", value)
    if isinstance(value, str):
        try:
            exact = Decimal(value.strip())
        except ArithmeticError:
            raise _wrong_type("a number", value) from None
    elif isinstance(value, int | float | Decimal):
        try:
            exact = Decimal(value)
        except (ArithmeticError, ValueError):  # an integer longer than Python converts
            raise UnstorableValue("number too long for a float") from None
    else:
        raise _wrong_type("a number", value)
    if not exact.is_finite():
        raise UnstorableValue(f"not a finite number ({value})")
    if abs(exact) > FLOAT_LIMIT:
        raise UnstorableValue(f"{float(exact):g} is beyond {FLOAT_LIMIT:g} in magnitude")
    number = float(exact)
    if isinstance(value, float):
        return number
    if Decimal(repr(number)) != exact:
        raise UnstorableValue(f"{value} has more digits than a float holds ({number!r})")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _wrong_type("a boolean", value)


def _datetime(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise UnstorableValue("not an ISO 8601 date-time") from None
    if not isinstance(value, datetime):
        raise _wrong_type("a date-time", value)
    if value.tzinfo is None or value.utcoffset() is None:
        raise UnstorableValue("naive date-time (no time zone), so its instant is unknown")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise UnstorableValue("date-time out of range") from None


def _date(value: Any) -> date:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise UnstorableValue("not an ISO 8601 date") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    raise _wrong_type("a date", value)


def _coercer(column: Column) -> Coerce:
    match column.type:
        case "str":
            return _text_coercer(column.length)
        case "int":
            return _int
        case "float":
            return _float
        case "bool":
            return _bool
        case "datetime":
            return _datetime
        case "date":
            return _date
    raise TypeError(f"{column.name}: unsupported column type {column.type!r}")


class _RowBuilder:
    """Turns `Upsert.fields` into a row of one crm_* table, with the same rules on both backends.

    The database is not left to coerce: SQLite would store anything and
    PostgreSQL would reject the whole page, so the same record would behave
    differently per backend. A value that does not fit is reported, never
    truncated or cleaned, so the record can be quarantined whole.

    The plan (column, kind, limit, coercer) is built once per object. A value that
    already is the column's exact type and plainly fits (ASCII text without NUL
    within the length, a float or an integer within range, a UTC datetime...) is
    taken as it is: the coercer would return it unchanged, and calling it for
    every value was most of the cost of building a row (issue 15).
    """

    def __init__(self, object_name: str):
        self.object_name = object_name
        self.plan: tuple[tuple[str, str, int, Coerce], ...] = tuple(
            (c.name, c.type, c.length if c.length is not None else sys.maxsize, _coercer(c))
            for c in COMMON_OBJECTS[object_name]
        )

    def fields(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The row's model columns, and the problems ("object.column: why") that block it."""
        if not isinstance(values, Mapping):
            raise TypeError(f"Upsert.fields must be a mapping, got {type(values).__name__}")
        row: dict[str, Any] = {}
        problems: list[str] = []
        get = values.get
        for name, kind, limit, coerce in self.plan:
            value = get(name)
            if value is None:
                row[name] = None
                continue
            exact = type(value)
            if exact is str:
                if kind == "str" and len(value) <= limit and value.isascii() \
                        and "\x00" not in value:
                    row[name] = value
                    continue
            elif exact is float:
                if kind == "float" and -FLOAT_LIMIT <= value <= FLOAT_LIMIT:  # NaN fails too
                    row[name] = value
                    continue
            elif exact is datetime:
                if kind == "datetime" and value.tzinfo is UTC:
                    row[name] = value
                    continue
            elif exact is bool:
                if kind == "bool":
                    row[name] = value
                    continue
            elif exact is int:
                if kind == "int" and INT64_MIN <= value <= INT64_MAX:
                    row[name] = value
                    continue
                if kind == "float" and -FLOAT_LIMIT <= value <= FLOAT_LIMIT:  # below 2**53
                    row[name] = float(value)
                    continue
            elif exact is date and kind == "date":
                row[name] = value
                continue
            try:
                row[name] = coerce(value)
            except UnstorableValue as exc:
                problems.append(f"{self.object_name}.{name}: {exc}")
        return row, problems


def _batches(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _stamp(change: Upsert | Delete) -> datetime:
    if isinstance(change, Upsert):
        return _utc(change.modified_at, f"modified_at of record {change.source_id!r}")
    return _utc(change.deleted_at, f"deleted_at of record {change.source_id!r}")


def _source_id_problem(source_id: object) -> str | None:
    """None for an id the key can hold; raises for what no CRM sends (a connector bug)."""
    if not isinstance(source_id, str) or not source_id:
        raise ValueError(f"invalid source_id {source_id!r}: expected a non-empty string")
    problem = _text_problem(source_id)
    if problem:
        return problem
    if len(source_id) > ID_LENGTH:
        return f"{len(source_id)} characters, the column holds {ID_LENGTH}"
    return None


class _Page:
    """One `apply` call sorted into what to write, before any transaction opens."""

    def __init__(
        self, tenant_id: str, object_name: str, now: datetime, sync_run_id: int | None
    ) -> None:
        self.tenant_id = tenant_id
        self.object_name = object_name
        self.now = now
        self.sync_run_id = sync_run_id
        self.builder = _RowBuilder(object_name)
        self.records = 0
        self.bare_deletes = 0  # deletions kept from soft-deleted records that were quarantined
        # The newest change per record (on a tie the later one: a re-read of the same
        # version is at least as fresh). One INSERT ... ON CONFLICT may not touch a row twice.
        self.winners: dict[str, tuple[datetime, dict[str, Any]]] = {}
        self.log: dict[tuple[str, datetime, bool], dict[str, Any]] = {}
        self.quarantine: list[dict[str, Any]] = []
        # Per record, the newest valid version seen: it resolves older quarantine rows.
        self.resolving: dict[str, datetime] = {}
        # Per record, the logged version whose document the winning row carries.
        self.carried: dict[str, tuple[str, datetime, bool]] = {}
        self.live_ids: LiveIds | None = None

    def add(self, change: PageChange) -> None:
        if isinstance(change, LiveIds):
            if self.live_ids is not None:
                raise ValueError("apply() takes at most one LiveIds per call")
            _utc(change.as_of, "LiveIds.as_of")
            if isinstance(change.source_ids, str) or not isinstance(change.source_ids, Collection):
                raise TypeError("LiveIds.source_ids must be a collection of ids")
            self.live_ids = change
        elif isinstance(change, Quarantine):
            self.records += 1
            self._add_quarantined(change)
        elif isinstance(change, Upsert | Delete):
            self.records += 1
            stamp = _stamp(change)
            if isinstance(change, Upsert):
                self._add_upsert(change, stamp)
            else:
                self._add_delete(change, stamp)
        else:
            raise TypeError(
                f"apply() takes Upsert, Delete, Quarantine and LiveIds, got "
                f"{type(change).__name__} (checkpoints are passed as `state`)"
            )

    def _add_upsert(self, change: Upsert, stamp: datetime) -> None:
        source_id = change.source_id
        id_problem = _source_id_problem(source_id)
        if id_problem:
            self._quarantine(None, stamp, f"{self.object_name}.source_id: {id_problem}", change.raw)
            return
        values, problems = self.builder.fields(change.fields)
        try:
            raw = json_text(change.raw)
        except UnstorableValue as exc:
            problems.append(f"{self.object_name}.{exc}")
        deleted = change.is_deleted
        if not isinstance(deleted, bool):  # truthiness would delete on "false": a connector bug
            raise TypeError(f"Upsert.is_deleted of {source_id!r} must be a bool, got "
                            f"{type(deleted).__name__}; map the CRM's flag strictly")
        if problems:
            self._quarantine(source_id, stamp, "; ".join(problems), change.raw)
            if deleted:
                # The deletion itself is a fact to keep: a record must never stay live
                # because its last values could not be stored.
                self.bare_deletes += 1
                self._add_version(source_id, stamp, None, None, True, resolves=False)
            return
        self._add_version(source_id, stamp, values, raw, deleted)

    def _add_delete(self, change: Delete, stamp: datetime) -> None:
        id_problem = _source_id_problem(change.source_id)
        if id_problem:
            raw = {"source_id": change.source_id, "deleted_at": stamp.isoformat()}
            self._quarantine(None, stamp, f"{self.object_name}.source_id: {id_problem}", raw)
            return
        self._add_version(change.source_id, stamp, None, None, True)

    def _add_version(
        self,
        source_id: str,
        stamp: datetime,
        values: dict[str, Any] | None,
        raw: str | None,
        deleted: bool,
        *,
        resolves: bool = True,
    ) -> None:
        """A storable version: `values` None means an id-only delete (a tombstone).

        `resolves`: whether this version supersedes quarantined older ones (not so
        for the bare deletion kept from a soft-deleted record that was quarantined).
        """
        row: dict[str, Any] = {"tenant_id": self.tenant_id, "source_id": source_id}
        if values is not None:
            row.update(values)
            row.update(
                source_modified_at=stamp,
                is_deleted=deleted,
                deleted_at=stamp if deleted else None,
                synced_at=self.now,
                raw=raw,
            )
        else:
            row.update(source_modified_at=stamp, is_deleted=True, deleted_at=stamp)
            row.update(synced_at=self.now)
        key = (source_id, stamp, deleted if values is not None else True)
        previous = self.winners.get(source_id)
        if previous is None or (values is not None and stamp >= previous[0]):
            self.winners[source_id] = (stamp, row)
            self._carry(source_id, key if values is not None else None)
        elif values is None and "raw" in previous[1]:
            # An id-only delete (the CRM's delete log) never replaces a version that
            # carries values: at a tie that version already says it is deleted; a later
            # delete marks it deleted and keeps its values (and carries that document).
            if stamp > previous[0]:
                kept = dict(previous[1])
                kept.update(is_deleted=True, deleted_at=stamp, source_modified_at=stamp)
                self.winners[source_id] = (stamp, kept)
        elif stamp >= previous[0]:
            self.winners[source_id] = (stamp, row)
            self._carry(source_id, None)
        if resolves:
            known = self.resolving.get(source_id)
            if known is None or stamp > known:
                self.resolving[source_id] = stamp
        if values is None and key in self.log:
            return  # an id-only delete adds nothing to a soft-deleted version's values
        self.log[key] = {
            "tenant_id": self.tenant_id,
            "object_name": self.object_name,
            "source_id": source_id,
            "source_modified_at": stamp,
            "is_deleted": key[2],
            # The values' JSON text is spelled in `log_rows`, only for the versions that
            # keep their own copy (most share their row's: `Warehouse._share_raw`).
            "fields": values if values is not None else "{}",
            "raw": raw if values is not None else None,
            "synced_at": self.now,
            "sync_run_id": self.sync_run_id,
            "raw_in_row": False,  # until `Warehouse._share_raw` knows the row takes it
        }

    def _carry(self, source_id: str, key: tuple[str, datetime, bool] | None) -> None:
        if key is None:
            self.carried.pop(source_id, None)
        else:
            self.carried[source_id] = key

    def _add_quarantined(self, change: Quarantine) -> None:
        """A connector's own quarantine: what cannot be keyed or dated is noted, not refused."""
        notes = []
        source_id = change.source_id
        if source_id is not None:
            if not isinstance(source_id, str) or not source_id:
                problem: str | None = f"not a non-empty string ({type(source_id).__name__})"
            else:
                problem = _text_problem(source_id)
                if problem is None and len(source_id) > ID_LENGTH:
                    problem = f"{len(source_id)} characters, the column holds {ID_LENGTH}"
            if problem:
                notes.append(f"source_id not storable: {problem}")
                source_id = None
        stamp = change.modified_at
        if stamp is not None:
            try:
                stamp = _utc(stamp, "modified_at")
            except (TypeError, ValueError) as exc:
                notes.append(str(exc))
                stamp = None
        reason = str(change.reason) + "".join(f" ({note})" for note in notes)
        self._quarantine(source_id, stamp, reason, change.raw)

    def _quarantine(
        self, source_id: str | None, stamp: datetime | None, reason: str, raw: Any
    ) -> None:
        self.quarantine.append(
            {
                "tenant_id": self.tenant_id,
                "object_name": self.object_name,
                "source_id": source_id,
                "source_modified_at": stamp,
                "reason": _clean_reason(reason),
                "raw_text": _raw_text(raw),
                "first_seen_at": self.now,
                "last_seen_at": self.now,
                "attempts": 1,
            }
        )

    def rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """The winners as (live, soft-deleted, tombstone) rows, in a stable (lock) order."""
        live: list[dict[str, Any]] = []
        soft_deleted: list[dict[str, Any]] = []
        tombstones: list[dict[str, Any]] = []
        for source_id in sorted(self.winners):
            row = self.winners[source_id][1]
            if "raw" not in row:
                tombstones.append(row)
            elif row["is_deleted"]:
                soft_deleted.append(row)
            else:
                live.append(row)
        return live, soft_deleted, tombstones

    def log_rows(self) -> list[dict[str, Any]]:
        """The change-log rows, `fields` as JSON text (or NULL when the row holds them)."""
        rows = []
        for key in sorted(self.log):
            row = self.log[key]
            if isinstance(row["fields"], dict):
                row["fields"] = dumps(fields_json(row["fields"]))
            rows.append(row)
        return rows


def _not_older(new: datetime | None, old: datetime | None) -> bool:
    """Newest wins; an unknown stamp counts as new (it is what the connector sent last)."""
    return new is None or old is None or new >= old


_HISTORY_COLUMNS = tuple(
    record_history.c[name]
    for name in (
        "id",
        "source_id",
        "version",
        "valid_from",
        "valid_to",
        "source_modified_at",
        "is_deleted",
        "fields",
        "raw",
        "synced_at",
        "sync_run_id",
    )
)


class Warehouse:
    """Tenant-scoped reads and writes of the warehouse tables."""

    def __init__(self, engine: Engine, *, batch_rows: int = DEFAULT_BATCH_ROWS):
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        self.engine = engine
        # Kept for callers: the bulk path (accrue/bulk_write.py) sends a page's rows in one
        # driver call (executemany, COPY), which no bind-parameter limit bounds.
        self.batch_rows = batch_rows
        self._insert = dialect_insert(engine.dialect)
        self._param_limit = _bind_parameter_limit(engine.dialect.name)
        self._bulk = BulkWriter(engine.dialect)

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        return f"Warehouse({url})"

    # ------------------------------------------------------------------ writes

    def apply(
        self,
        tenant_id: str,
        object_name: str,
        changes: Iterable[PageChange],
        state: Mapping[str, Any] | None = None,
        *,
        sync_run_id: int | None = None,
        records_read: int | None = None,
    ) -> WriteStats:
        """Write one page of changes and, atomically with it, the state that covers it.

        Upserts and deletes update the current rows (newest wins) and log every
        version to the change log; records that cannot be stored faithfully, and
        `Quarantine` changes, go to crm_quarantine; a `LiveIds` (at most one) then
        marks deleted the older live rows the CRM no longer has. Everything is
        validated and converted before the transaction opens; any error inside
        it rolls back rows, history, quarantine and state together (F4). With a
        `sync_run_id`, the running sync's counts in the ledger move in the same
        transaction (`records_read`: the sync's total so far), so the status page's
        progress never counts a page that was rolled back, at no extra commit.
        """
        validate_tenant_id(tenant_id)
        table = object_table(object_name)
        page = _Page(tenant_id, object_name, utcnow(), sync_run_id)
        for change in changes:
            page.add(change)
        live, soft_deleted, tombstones = page.rows()
        state_doc = to_json(state, "state") if state is not None else None
        if state is not None and not isinstance(state_doc, dict):
            raise TypeError("state must be a mapping")

        with self.engine.connect() as conn, self._prepared(conn, table).begin():
            self._write_quarantine(conn, tenant_id, object_name, page.quarantine)
            self._share_raw(conn, table, page)
            upsert = self._upsert_clause(table)
            upserted = self._bulk_write(conn, table, upsert, "upsert", live)
            deleted = self._bulk_write(conn, table, upsert, "upsert", soft_deleted)
            deleted += self._bulk_write(
                conn, table, self._delete_clause(table), "delete", tombstones
            )
            self._bulk_write(conn, crm_change_log, self._log_clause, "log", page.log_rows())
            reconciled: list[str] = []
            if page.live_ids is not None:
                reconciled = self._reconcile(conn, table, page, page.live_ids)
                as_of = _utc(page.live_ids.as_of, "LiveIds.as_of")
                for source_id in reconciled:
                    page.resolving.setdefault(source_id, as_of)
            self._resolve_superseded(conn, table, page)
            if state_doc is not None:
                self._write_state(conn, tenant_id, object_name, state_doc, page.now)
            if sync_run_id is not None and page.records + page.bare_deletes:
                self._count_progress(conn, sync_run_id, records_read, upserted,
                                     deleted + len(reconciled), len(page.quarantine))

        quarantined = len(page.quarantine)
        if quarantined:
            logger.warning(
                "tenant %s %s: %d record(s) could not be stored faithfully and were "
                "quarantined (see crm_quarantine)",
                tenant_id,
                object_name,
                quarantined,
            )
        # A quarantined soft-deleted record also counts its deletion (written or stale).
        stale = max(0, page.records + page.bare_deletes - upserted - deleted - quarantined)
        stats = WriteStats(upserted, deleted + len(reconciled), stale, quarantined)
        logger.debug("tenant %s %s: %s", tenant_id, object_name, stats)
        return stats

    def _share_raw(self, conn: Connection, table: sa.Table, page: _Page) -> None:
        """Store each document the rows take once: in the row, its log version pointing there.

        A version the row takes (not older than the stored one, the upsert's own rule)
        is logged with `raw_in_row` and no copy; the stored row's document, about to be
        replaced, is first copied into the versions that pointed at it. A stale version
        keeps its own copy. Rows are locked (FOR UPDATE) between the read and the upsert.
        """
        if not page.carried:
            return
        size = max(1, min(RECONCILE_BATCH_IDS, self._param_limit - 16))
        stored: dict[str, datetime] = {}
        for batch in _batches(sorted(page.carried), size):
            stored.update(conn.execute(
                sa.select(table.c.source_id, table.c.source_modified_at)
                .where(table.c.tenant_id == page.tenant_id, table.c.source_id.in_(batch))
                .with_for_update()
            ).tuples().all())
        replaced = []
        for source_id, key in page.carried.items():
            old = stored.get(source_id)
            stamp, row = page.winners[source_id]
            if old is not None and stamp < old:
                continue  # stale: the row keeps its version and document
            if old is not None:
                replaced.append(source_id)
            # The same version logged again in the page with another document: the log
            # keeps that one (the row the first), so this version keeps its own copy.
            if page.log[key]["raw"] is row["raw"]:
                page.log[key].update(raw=None, fields=None, raw_in_row=True)
        if not replaced:
            return
        log = crm_change_log
        row_raw = (
            sa.select(table.c.raw)
            .where(table.c.tenant_id == log.c.tenant_id, table.c.source_id == log.c.source_id)
            .scalar_subquery()
        )
        values = row_fields(conn, page.tenant_id, page.object_name, replaced)
        # Versions converted by migration 0019 kept their own fields (COALESCE keeps them).
        move = (
            sa.update(log)
            .where(log.c.tenant_id == page.tenant_id, log.c.object_name == page.object_name,
                   log.c.raw_in_row, log.c.source_id == sa.bindparam("b_source_id"))
            .values(raw=row_raw, raw_in_row=False, fields=sa.func.coalesce(
                log.c.fields, sa.bindparam("b_fields", type_=log.c.fields.type)))
        )
        conn.execute(move, [{"b_source_id": sid, "b_fields": values.get(sid, {})}
                            for sid in sorted(replaced)])

    def _prepared(self, conn: Connection, table: sa.Table) -> Connection:
        """The connection, ready for the bulk path to write `table` and the change log."""
        self._bulk.prepare(conn, (table, crm_change_log))
        return conn

    def _bulk_write(self, conn: Connection, table: sa.Table, clause: Callable[[Any], Any],
                    key: str, rows: Sequence[dict[str, Any]]) -> int:
        """Rows (JSON columns as text) through the driver's bulk path; rows written."""
        return self._bulk.write(conn, table, clause, key, rows, self._insert)

    def _upsert_clause(self, table: sa.Table) -> Callable[[Any], Any]:
        return lambda stmt: self._upsert_statement(table, stmt)

    def _delete_clause(self, table: sa.Table) -> Callable[[Any], Any]:
        return lambda stmt: self._delete_statement(table, stmt)

    def _upsert_statement(self, table: sa.Table, stmt: Any) -> Any:
        new = stmt.excluded
        updates: dict[str, Any] = {
            c.name: new[c.name] for c in table.c if c.name not in _KEY and c.name != "deleted_at"
        }
        # A record already deleted keeps the time it was first seen deleted.
        updates["deleted_at"] = sa.case(
            (
                sa.and_(table.c.is_deleted, new.is_deleted),
                sa.func.coalesce(table.c.deleted_at, new.deleted_at),
            ),
            else_=new.deleted_at,
        )
        return stmt.on_conflict_do_update(
            index_elements=list(_KEY),
            set_=updates,
            where=new.source_modified_at >= table.c.source_modified_at,
        )

    def _delete_statement(self, table: sa.Table, stmt: Any) -> Any:
        """Soft-delete known rows (keeping their last values); insert a tombstone otherwise."""
        new = stmt.excluded
        return stmt.on_conflict_do_update(
            index_elements=list(_KEY),
            set_={
                "is_deleted": sa.true(),
                "deleted_at": new.deleted_at,
                "source_modified_at": new.source_modified_at,
                "synced_at": new.synced_at,
            },
            where=new.source_modified_at >= table.c.source_modified_at,
        )

    @staticmethod
    def _log_clause(stmt: Any) -> Any:
        """A version already logged (replay, lookback overlap) is left as it is (F2)."""
        return stmt.on_conflict_do_nothing(
            index_elements=[
                "tenant_id",
                "object_name",
                "source_id",
                "source_modified_at",
                "is_deleted",
            ]
        )

    def _write_quarantine(
        self, conn: Connection, tenant_id: str, object_name: str, rows: list[dict[str, Any]]
    ) -> None:
        """One open row per record: a newer bad version replaces reason and raw; all count."""
        if not rows:
            return
        q = crm_quarantine
        keyed: dict[str, dict[str, Any]] = {}
        anonymous: list[dict[str, Any]] = []
        for row in rows:
            source_id = row["source_id"]
            if source_id is None:
                anonymous.append(row)
                continue
            known = keyed.get(source_id)
            if known is None or _not_older(row["source_modified_at"], known["source_modified_at"]):
                keyed[source_id] = row
        if keyed:
            stmt = self._insert(q)
            new = stmt.excluded
            newer = sa.or_(
                new.source_modified_at.is_(None),
                q.c.source_modified_at.is_(None),
                new.source_modified_at >= q.c.source_modified_at,
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["tenant_id", "object_name", "source_id"],
                index_where=sa.and_(q.c.resolved_at.is_(None), q.c.source_id.is_not(None)),
                set_={
                    # No bound literals here: SQLAlchemy's batched executemany renumbers
                    # parameters in VALUES only, so `attempts + 1` would break.
                    "attempts": q.c.attempts + new.attempts,
                    "last_seen_at": new.last_seen_at,
                    "reason": sa.case((newer, new.reason), else_=q.c.reason),
                    "raw_text": sa.case((newer, new.raw_text), else_=q.c.raw_text),
                    "source_modified_at": sa.case(
                        (newer, sa.func.coalesce(new.source_modified_at, q.c.source_modified_at)),
                        else_=q.c.source_modified_at,
                    ),
                },
            )
            conn.execute(stmt, [keyed[source_id] for source_id in sorted(keyed)])
        for row in anonymous:
            # No id to key on: the same document seen again is the same open row.
            existing = conn.execute(
                sa.select(q.c.id)
                .where(
                    q.c.tenant_id == tenant_id,
                    q.c.object_name == object_name,
                    q.c.source_id.is_(None),
                    q.c.resolved_at.is_(None),
                    q.c.raw_text == row["raw_text"],
                )
                .limit(1)
            ).scalar_one_or_none()
            if existing is None:
                conn.execute(sa.insert(q).values(row))
            else:
                conn.execute(
                    sa.update(q)
                    .where(q.c.id == existing)
                    .values(
                        attempts=q.c.attempts + 1,
                        last_seen_at=row["last_seen_at"],
                        reason=row["reason"],
                    )
                )

    def _reconcile(
        self, conn: Connection, table: sa.Table, page: _Page, live: LiveIds
    ) -> list[str]:
        """Mark deleted the live rows older than `as_of` that the CRM no longer lists.

        The difference is computed here against the id set (no IN list over the
        bind limit), then applied in batched UPDATEs; each row gets a delete
        version in the change log. Rows are never physically removed.
        """
        as_of = _utc(live.as_of, "LiveIds.as_of")
        keep = live.source_ids
        if not isinstance(keep, set | frozenset):
            keep = frozenset(keep)
        candidates = conn.execute(
            sa.select(table.c.source_id, table.c.source_modified_at).where(
                table.c.tenant_id == page.tenant_id,
                sa.not_(table.c.is_deleted),
                table.c.source_modified_at < as_of,
            )
        ).all()
        # The delete is stamped just after the stored version, not with our clock: any
        # real later version from the CRM (its own delete, an undelete) still wins, and
        # a replay of the stored version cannot revive the row.
        missing = sorted(
            (source_id, stamp + RECONCILE_STAMP_STEP)
            for source_id, stamp in candidates
            if source_id not in keep
        )
        stmt = (
            sa.update(table)
            .where(
                table.c.tenant_id == page.tenant_id,
                table.c.source_id == sa.bindparam("b_source_id"),
                sa.not_(table.c.is_deleted),
                table.c.source_modified_at < sa.bindparam("b_stamp", type_=UtcDateTime()),
            )
            .values(
                is_deleted=True,
                deleted_at=as_of,
                source_modified_at=sa.bindparam("b_stamp", type_=UtcDateTime()),
                synced_at=page.now,
            )
        )
        gone: list[tuple[str, datetime]] = []
        for batch in _batches(missing, RECONCILE_BATCH_IDS):
            conn.execute(stmt, [{"b_source_id": sid, "b_stamp": stamp} for sid, stamp in batch])
            gone.extend(batch)
        log: list[dict[str, Any]] = [
            {
                "tenant_id": page.tenant_id,
                "object_name": page.object_name,
                "source_id": source_id,
                "source_modified_at": stamp,
                "is_deleted": True,
                "fields": "{}",
                "raw": None,
                "synced_at": page.now,
                "sync_run_id": page.sync_run_id,
                "raw_in_row": False,
            }
            for source_id, stamp in gone
        ]
        self._bulk_write(conn, crm_change_log, self._log_clause, "log", log)
        return [source_id for source_id, _ in gone]

    def _resolve_superseded(self, conn: Connection, table: sa.Table, page: _Page) -> int:
        """Resolve open quarantine rows of the page's records that a faithful version supersedes.

        That is a valid version in this page not older than the quarantined one (any
        valid version, when the quarantined one is undated), or a stored row strictly
        newer than it (a late, stale bad version is no longer waiting for anything;
        `history` simply lacks it).
        """
        candidates = set(page.resolving)
        candidates.update(row["source_id"] for row in page.quarantine if row["source_id"])
        if not candidates:
            return 0
        q = crm_quarantine
        open_rows = (
            q.c.tenant_id == page.tenant_id,
            q.c.object_name == page.object_name,
            q.c.resolved_at.is_(None),
            q.c.source_id.is_not(None),
        )
        if conn.execute(sa.select(q.c.id).where(*open_rows).limit(1)).first() is None:
            return 0  # the usual case: one indexed probe per page
        size = max(1, min(RECONCILE_BATCH_IDS, self._param_limit - 16))
        waiting: list[tuple[int, str, datetime | None]] = []
        for batch in _batches(sorted(candidates), size):
            waiting.extend(
                conn.execute(
                    sa.select(q.c.id, q.c.source_id, q.c.source_modified_at).where(
                        *open_rows, q.c.source_id.in_(batch)
                    )
                ).tuples()
            )
        if not waiting:
            return 0
        stored: dict[str, datetime] = {}
        for batch in _batches(sorted({source_id for _, source_id, _ in waiting}), size):
            stored.update(
                conn.execute(
                    sa.select(table.c.source_id, table.c.source_modified_at).where(
                        table.c.tenant_id == page.tenant_id, table.c.source_id.in_(batch)
                    )
                )
                .tuples()
                .all()
            )
        resolved = []
        for row_id, source_id, stamp in waiting:
            valid = page.resolving.get(source_id)
            newer = stored.get(source_id)
            if valid is not None and (stamp is None or valid >= stamp):
                resolved.append(row_id)  # an undated bad version yields to any valid one
            elif stamp is not None and newer is not None and newer > stamp:
                resolved.append(row_id)
        for batch in _batches(sorted(resolved), size):
            conn.execute(sa.update(q).where(q.c.id.in_(batch)).values(resolved_at=page.now))
        return len(resolved)

    def _write_state(
        self,
        conn: Connection,
        tenant_id: str,
        object_name: str,
        state: dict[str, Any],
        now: datetime,
    ) -> None:
        stmt = self._insert(sync_state).values(
            tenant_id=tenant_id, object_name=object_name, state=state, updated_at=now
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["tenant_id", "object_name"],
                set_={"state": stmt.excluded.state, "updated_at": stmt.excluded.updated_at},
            )
        )

    # ------------------------------------------------------------------ state

    def get_state(self, tenant_id: str, object_name: str) -> dict[str, Any] | None:
        """The last committed connector state (None: sync from the beginning)."""
        validate_tenant_id(tenant_id)
        object_table(object_name)
        with self.engine.connect() as conn:
            state = conn.execute(
                sa.select(sync_state.c.state).where(
                    sync_state.c.tenant_id == tenant_id, sync_state.c.object_name == object_name
                )
            ).scalar_one_or_none()
        return dict(state) if state is not None else None

    def reset_state(self, tenant_id: str, object_name: str | None = None) -> int:
        """Forget cursors so the next sync re-reads everything (rows are kept and re-upserted)."""
        validate_tenant_id(tenant_id)
        query = sa.delete(sync_state).where(sync_state.c.tenant_id == tenant_id)
        if object_name is not None:
            object_table(object_name)
            query = query.where(sync_state.c.object_name == object_name)
        with self.engine.begin() as conn:
            return conn.execute(query).rowcount

    # Every table this module writes that holds a tenant's rows (`delete_tenant_data`).
    TENANT_TABLES: tuple[sa.Table, ...] = (
        crm_change_log, crm_quarantine, *OBJECT_TABLES.values(), sync_state, sync_run,
        pipeline_summary, push_inbox,  # pushed batches are the tenant's data too (raw bodies)
        push_schema,  # pushed objects' schemas hold sample values: data; the next push refixes
        file_upload_chunk, file_upload,  # uploaded exports: the tenant's data (bytes first)
    )

    def delete_tenant_data(self, tenant_id: str) -> dict[str, int]:
        """Delete everything synced for the tenant, and the cursors and run ledger with it
        (a cursor kept would make a later sync skip what was deleted); one transaction.

        The admin's "delete the synced data" when disconnecting. Rows deleted per table.
        """
        validate_tenant_id(tenant_id)
        deleted: dict[str, int] = {}
        with self.engine.begin() as conn:
            for table in self.TENANT_TABLES:
                result = conn.execute(sa.delete(table).where(table.c.tenant_id == tenant_id))
                deleted[table.name] = int(result.rowcount or 0)
        logger.info("deleted the synced data of tenant %s: %d rows", tenant_id,
                    sum(deleted.values()))
        return deleted

    # ------------------------------------------------------------------ reads

    def count(self, tenant_id: str, object_name: str, *, include_deleted: bool = False) -> int:
        """Rows of a tenant's object; deleted ones are kept as history, so excluded by default."""
        validate_tenant_id(tenant_id)
        table = object_table(object_name)
        query = sa.select(sa.func.count()).select_from(table).where(table.c.tenant_id == tenant_id)
        if not include_deleted:
            query = query.where(sa.not_(table.c.is_deleted))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def refresh_statistics(self, object_name: str, rows_written: int) -> bool:
        """Let PostgreSQL's planner see a bulk load now, not at autovacuum's next pass.

        Right after a tenant's first load into a fresh table the planner still believes it
        holds a few rows and joins by nested loops: the orphan check on 3,787 order lines
        took 375 ms (3.8 million row comparisons) instead of 4 ms. ANALYZE samples at most
        30,000 rows, so it costs milliseconds; it runs only when the load is at least a
        tenth of the table (autovacuum's own rule; in a large shared table a new tenant's
        rows are estimated well from the others), and is skipped if another session is
        analyzing the table already. True when it ran. SQLite plans by its indexes.
        """
        if self.engine.dialect.name != "postgresql":
            return False
        table = object_table(object_name).name
        try:
            with self.engine.begin() as conn:
                estimated = conn.execute(sa.text(
                    "SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"),
                    {"t": table}).scalar_one()
                if estimated > 0 and rows_written < 0.1 * estimated:
                    return False
                conn.execute(sa.text("SET LOCAL lock_timeout = '200ms'"))
                conn.execute(sa.text(f'ANALYZE "{table}"'))
        except sa.exc.OperationalError:  # another ANALYZE holds the table: it does our job
            return False
        return True

    def duplicate_keys(self, tenant_id: str, object_name: str) -> int:
        """How many source ids have more than one row: 0 by construction (the key is unique).

        Kept as an independent check for F2 that does not trust the write path.
        """
        validate_tenant_id(tenant_id)
        table = object_table(object_name)
        groups = (
            sa.select(table.c.source_id)
            .where(table.c.tenant_id == tenant_id)
            .group_by(table.c.source_id)
            .having(sa.func.count() > 1)
            .subquery()
        )
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(groups)).scalar_one())

    def live_ids(self, tenant_id: str, object_name: str) -> set[str]:
        """Source ids of the records not deleted (for reconciliation against the CRM)."""
        validate_tenant_id(tenant_id)
        table = object_table(object_name)
        query = sa.select(table.c.source_id).where(
            table.c.tenant_id == tenant_id, sa.not_(table.c.is_deleted)
        )
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def summary(
        self, tenant_id: str, object_names: Collection[str] | None = None
    ) -> list[dict[str, Any]]:
        """Per common object (or the ones named): live and deleted row counts and freshness,
        in one round trip."""
        validate_tenant_id(tenant_id)
        names = [n for n in OBJECT_TABLES if object_names is None or n in object_names]
        parts = []
        for object_name in names:
            table = OBJECT_TABLES[object_name]
            parts.append(
                sa.select(
                    sa.literal(object_name, sa.String()).label("object_name"),
                    sa.func.count().filter(sa.not_(table.c.is_deleted)).label("live_rows"),
                    sa.func.count().filter(table.c.is_deleted).label("deleted_rows"),
                    sa.func.max(table.c.source_modified_at).label("last_modified_at"),
                    sa.func.max(table.c.synced_at).label("last_synced_at"),
                ).where(table.c.tenant_id == tenant_id)
            )
        if not parts:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(sa.union_all(*parts) if len(parts) > 1 else parts[0])
            by_name = {row["object_name"]: row for row in rows.mappings().all()}
        return [
            {
                "object_name": name,
                "live_rows": int(by_name[name]["live_rows"] or 0),
                "deleted_rows": int(by_name[name]["deleted_rows"] or 0),
                "last_modified_at": _as_utc(by_name[name]["last_modified_at"]),
                "last_synced_at": _as_utc(by_name[name]["last_synced_at"]),
            }
            for name in names
        ]

    def write_summary(self, tenant_id: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Store `summary()` output in pipeline_summary (upsert per object, one transaction)."""
        validate_tenant_id(tenant_id)
        now = utcnow()
        values = []
        for row in rows:
            object_table(row["object_name"])
            values.append(
                {
                    "tenant_id": tenant_id,
                    "object_name": row["object_name"],
                    "live_rows": int(row["live_rows"]),
                    "deleted_rows": int(row["deleted_rows"]),
                    "last_modified_at": row.get("last_modified_at"),
                    "last_synced_at": row.get("last_synced_at"),
                    "computed_at": now,
                }
            )
        if not values:
            return 0
        stmt = self._insert(pipeline_summary).values(values)
        new = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "object_name"],
            set_={
                name: new[name]
                for name in (
                    "live_rows",
                    "deleted_rows",
                    "last_modified_at",
                    "last_synced_at",
                    "computed_at",
                )
            },
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)
        return len(values)

    def read_summary(self, tenant_id: str) -> list[dict[str, Any]]:
        """The stored pipeline_summary rows of a tenant (as last computed downstream)."""
        validate_tenant_id(tenant_id)
        query = (
            sa.select(pipeline_summary)
            .where(pipeline_summary.c.tenant_id == tenant_id)
            .order_by(pipeline_summary.c.object_name)
        )
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def orphans(self, tenant_id: str, object_name: str) -> dict[str, int]:
        """Per reference column: live rows whose column is NULL (unless the reference is
        optional) or names no live target row.

        Uses connectors.common_model.REFERENCES; an object without references gives {}.
        A parent deleted in the CRM orphans its children, which is worth knowing.
        """
        validate_tenant_id(tenant_id)
        table = object_table(object_name)
        references = REFERENCES.get(object_name, ())
        if not references:
            return {}
        # One outer join per reference on the target's primary key (no row multiplies): the
        # database plans it as one hash or merge join, where a correlated EXISTS per row was
        # a probe per child row (0.37 s for a 2,000-deal tenant's checks on PostgreSQL).
        joined: sa.FromClause = table
        counts = []
        for column, target_name in references:
            target = object_table(target_name).alias(f"target_{column}")
            joined = sa.outerjoin(joined, target, sa.and_(
                target.c.tenant_id == table.c.tenant_id,
                target.c.source_id == table.c[column],
                sa.not_(target.c.is_deleted),
            ))
            missing: sa.ColumnElement[bool] = target.c.source_id.is_(None)
            if (object_name, column) in OPTIONAL_REFERENCES:  # empty is fine, unknown is not
                missing = sa.and_(missing, table.c[column].is_not(None))
            counts.append(sa.func.count().filter(missing).label(column))
        query = sa.select(*counts).select_from(joined).where(
            table.c.tenant_id == tenant_id, sa.not_(table.c.is_deleted)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().one()
        return {column: int(row[column] or 0) for column, _ in references}

    # ------------------------------------------------------------------ history (F3)

    def history(self, tenant_id: str, object_name: str, source_id: str) -> list[dict[str, Any]]:
        """Every version of one record, oldest first, each with its validity interval.

        `valid_to` is the next version's `valid_from` (None for the current one);
        a delete is a version too (`is_deleted`, usually with empty `fields`).
        """
        validate_tenant_id(tenant_id)
        object_table(object_name)
        h = record_history
        query = (
            sa.select(*_HISTORY_COLUMNS)
            .where(
                h.c.tenant_id == tenant_id,
                h.c.object_name == object_name,
                h.c.source_id == source_id,
            )
            .order_by(h.c.version)
        )
        with self.engine.connect() as conn:
            versions = [dict(row) for row in conn.execute(query).mappings()]
            fill_fields(conn, tenant_id, versions, object_name)
        return versions

    def as_of(self, tenant_id: str, object_name: str, at: datetime) -> dict[str, dict[str, Any]]:
        """The records live at instant `at`, by source id, as their version valid then.

        That is each record's latest version with source_modified_at <= `at`;
        a record whose version then was a delete is left out.
        """
        validate_tenant_id(tenant_id)
        object_table(object_name)
        at = _utc(at, "as_of(at)")
        h = record_history
        query = sa.select(*_HISTORY_COLUMNS).where(
            h.c.tenant_id == tenant_id,
            h.c.object_name == object_name,
            h.c.valid_from <= at,
            sa.or_(h.c.valid_to.is_(None), h.c.valid_to > at),
            sa.not_(h.c.is_deleted),
        )
        with self.engine.connect() as conn:
            found = {row["source_id"]: dict(row) for row in conn.execute(query).mappings()}
            fill_fields(conn, tenant_id, found.values(), object_name)
        return found

    def changes_since(
        self, tenant_id: str, object_name: str, since: datetime, *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Versions logged at or after `since` (by synced_at), in the order they were written."""
        validate_tenant_id(tenant_id)
        object_table(object_name)
        since = _utc(since, "changes_since(since)")
        log = crm_change_log
        query = (
            sa.select(
                log.c.id,
                log.c.source_id,
                log.c.source_modified_at,
                log.c.is_deleted,
                log.c.fields,
                change_log_raw(log),
                log.c.synced_at,
                log.c.sync_run_id,
            )
            .where(
                log.c.tenant_id == tenant_id,
                log.c.object_name == object_name,
                log.c.synced_at >= since,
            )
            .order_by(log.c.synced_at, log.c.id)
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            versions = [dict(row) for row in conn.execute(query).mappings()]
            fill_fields(conn, tenant_id, versions, object_name)
        return versions

    def change_count(self, tenant_id: str, object_name: str) -> int:
        """How many versions of the tenant's object the change log holds."""
        validate_tenant_id(tenant_id)
        object_table(object_name)
        log = crm_change_log
        query = (
            sa.select(sa.func.count())
            .select_from(log)
            .where(log.c.tenant_id == tenant_id, log.c.object_name == object_name)
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    # ------------------------------------------------------------------ quarantine

    def _open_quarantine_filter(
        self, tenant_id: str, object_name: str | None
    ) -> list[sa.ColumnElement[bool]]:
        """The tenant's open quarantine rows, of one object or all (names validated)."""
        validate_tenant_id(tenant_id)
        q = crm_quarantine
        conditions = [q.c.tenant_id == tenant_id, q.c.resolved_at.is_(None)]
        if object_name is not None:
            object_table(object_name)
            conditions.append(q.c.object_name == object_name)
        return conditions

    def open_quarantine(
        self, tenant_id: str, object_name: str | None = None
    ) -> list[dict[str, Any]]:
        """Records waiting in quarantine, oldest first, with `raw` decoded back to a dict."""
        q = crm_quarantine
        query = (
            sa.select(q)
            .where(*self._open_quarantine_filter(tenant_id, object_name))
            .order_by(q.c.first_seen_at, q.c.id)
        )
        with self.engine.connect() as conn:
            rows = [dict(row) for row in conn.execute(query).mappings()]
        for row in rows:
            row["raw"] = json.loads(row.pop("raw_text"))
        return rows

    def quarantine_count(self, tenant_id: str, object_name: str | None = None) -> int:
        """How many records wait in quarantine (0 means nothing was held back)."""
        q = crm_quarantine
        query = (
            sa.select(sa.func.count())
            .select_from(q)
            .where(*self._open_quarantine_filter(tenant_id, object_name))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def resolve_quarantine(self, tenant_id: str, ids: Collection[int]) -> int:
        """Close quarantine rows of this tenant (e.g. after a re-mapped record landed).

        Idempotent: returns how many of `ids` are resolved afterwards, including rows
        `apply` already resolved when the record's valid version landed, so a caller
        counting its successful retries gets the same answer either way.
        """
        return self._touch_quarantine(tenant_id, ids, resolve=True)

    def record_quarantine_attempt(self, tenant_id: str, ids: Collection[int]) -> int:
        """Count another failed retry of open quarantine rows (attempts, last_seen_at)."""
        return self._touch_quarantine(tenant_id, ids, resolve=False)

    def _touch_quarantine(self, tenant_id: str, ids: Collection[int], *, resolve: bool) -> int:
        validate_tenant_id(tenant_id)
        q = crm_quarantine
        wanted = sorted({int(i) for i in ids})
        now = utcnow()
        values: dict[str, Any] = (
            {"resolved_at": now} if resolve else {"attempts": q.c.attempts + 1, "last_seen_at": now}
        )
        changed = 0
        size = max(1, min(RECONCILE_BATCH_IDS, self._param_limit - 16))
        with self.engine.begin() as conn:
            for batch in _batches(wanted, size):
                mine = (q.c.tenant_id == tenant_id, q.c.id.in_(batch))
                if resolve:  # rows resolved before count too (see resolve_quarantine)
                    changed += conn.execute(
                        sa.select(sa.func.count())
                        .select_from(q)
                        .where(*mine, q.c.resolved_at.is_not(None))
                    ).scalar_one()
                changed += conn.execute(
                    sa.update(q).where(*mine, q.c.resolved_at.is_(None)).values(values)
                ).rowcount
        return changed

    # ------------------------------------------------------------------ run log

    def start_run(self, tenant_id: str, object_name: str, *, run_id: str | None = None) -> int:
        """Record that a sync of one object started; returns the sync_run id.

        Runs of the same object still `running` from before are closed as failed:
        only a process that died (SIGKILL, OOM, lost host) leaves them so.
        """
        validate_tenant_id(tenant_id)
        object_table(object_name)
        started = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(sync_run)
                .where(
                    sync_run.c.tenant_id == tenant_id,
                    sync_run.c.object_name == object_name,
                    sync_run.c.status == "running",
                    sync_run.c.started_at <= started,
                )
                .values(status="failed", error=ABANDONED_ERROR, error_kind="error")
            )
            result = conn.execute(
                sa.insert(sync_run).values(
                    tenant_id=tenant_id,
                    object_name=object_name,
                    started_at=started,
                    status="running",
                    records_read=0,
                    records_upserted=0,
                    records_deleted=0,
                    records_quarantined=0,
                    run_id=run_id,
                )
            )
            primary_key = result.inserted_primary_key
            assert primary_key is not None  # always set by a single-row INSERT
            return int(primary_key[0])

    def finish_run(
        self,
        run_id: int,
        status: str,
        stats: WriteStats | Mapping[str, Any] | None = None,
        error: str | None = None,
        *,
        records_read: int | None = None,
        error_kind: str | None = None,
    ) -> None:
        """Close a sync_run row. `error` is scrubbed of credential-looking text (S1).

        `status` is `succeeded`, `failed` or `stopped` (ended cleanly before the
        end, e.g. at the API quota: partial, not complete). `error_kind` says who
        has to act: credentials, quota, outage or error. `stats` is a WriteStats
        (summed over the sync's pages) or a mapping with `upserted`, `deleted`,
        `skipped_stale`, `quarantined` and optionally `records_read`, such as a
        sync's metadata dict. `records_read` defaults to the changes handed to `apply`.
        """
        if status not in RUN_STATUSES or status == "running":
            raise ValueError(
                f"invalid final status {status!r}: use 'succeeded', 'failed' or 'stopped'"
            )
        if error_kind is not None and error_kind not in ERROR_KINDS:
            # Called while a sync is failing: raising here would hide the real error.
            logger.warning(
                "sync_run %s: unknown error kind %r stored as 'error'", run_id, error_kind
            )
            error_kind = "error"
        if isinstance(stats, Mapping):
            if records_read is None and stats.get("records_read") is not None:
                records_read = int(stats["records_read"])
            stats = WriteStats(
                int(stats.get("upserted") or 0),
                int(stats.get("deleted") or 0),
                int(stats.get("skipped_stale") or 0),
                int(stats.get("quarantined") or 0),
            )
        stats = stats or WriteStats()
        message = None
        if error is not None:
            message = redact(str(error))
            if len(message) > ERROR_MAX_CHARS:
                message = message[: ERROR_MAX_CHARS - 1] + "…"
        with self.engine.begin() as conn:
            updated = conn.execute(
                sa.update(sync_run)
                .where(sync_run.c.id == run_id)
                .values(
                    finished_at=utcnow(),
                    status=status,
                    records_read=stats.total if records_read is None else records_read,
                    records_upserted=stats.upserted,
                    records_deleted=stats.deleted,
                    records_quarantined=stats.quarantined,
                    error=message,
                    error_kind=error_kind,
                )
            ).rowcount
        if not updated:
            raise LookupError(f"no sync_run with id {run_id}")

    def record_progress(self, run_id: int, records_read: int, stats: WriteStats) -> None:
        """The counts so far of a sync still running, so the status page can show progress.

        Only a `running` row is touched: a late call never rewrites a finished run. The
        sync engine does not call this: `apply` moves the counts with each page.
        """
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(sync_run)
                .where(sync_run.c.id == run_id, sync_run.c.status == "running")
                .values(
                    records_read=records_read,
                    records_upserted=stats.upserted,
                    records_deleted=stats.deleted,
                    records_quarantined=stats.quarantined,
                )
            )

    @staticmethod
    def _count_progress(conn: Connection, run_id: int, records_read: int | None,
                        upserted: int, deleted: int, quarantined: int) -> None:
        """Add one page's writes to a running sync's ledger row (inside the page's
        transaction); `finish_run` writes the final totals."""
        values: dict[str, Any] = {
            "records_upserted": sync_run.c.records_upserted + upserted,
            "records_deleted": sync_run.c.records_deleted + deleted,
            "records_quarantined": sync_run.c.records_quarantined + quarantined,
        }
        if records_read is not None:
            values["records_read"] = records_read
        conn.execute(sa.update(sync_run).where(sync_run.c.id == run_id,
                                               sync_run.c.status == "running").values(values))

    def sync_health(self, tenant_id: str) -> dict[str, dict[str, Any]]:
        """Per object that has run: the last outcome and the failure streak since a success.

        Keys: last_status, last_error, error_kind, last_started_at,
        last_finished_at, records_read (of the last run; a running one's so far),
        consecutive_failures (failed runs after the last succeeded one; `stopped`
        runs neither count nor reset) and last_success_at.
        """
        validate_tenant_id(tenant_id)
        r = sync_run
        mine = r.c.tenant_id == tenant_id
        latest = (
            sa.select(r.c.object_name, sa.func.max(r.c.id).label("run_id"))
            .where(mine)
            .group_by(r.c.object_name)
            .subquery()
        )
        last_ok = (
            sa.select(r.c.object_name, sa.func.max(r.c.id).label("run_id"))
            .where(mine, r.c.status == "succeeded")
            .group_by(r.c.object_name)
            .subquery()
        )
        failures = (
            sa.select(r.c.object_name, sa.func.count().label("failures"))
            .select_from(r.outerjoin(last_ok, last_ok.c.object_name == r.c.object_name))
            .where(
                mine,
                r.c.status == "failed",
                sa.or_(last_ok.c.run_id.is_(None), r.c.id > last_ok.c.run_id),
            )
            .group_by(r.c.object_name)
        )
        with self.engine.connect() as conn:
            last_rows = (
                conn.execute(sa.select(r).join(latest, r.c.id == latest.c.run_id)).mappings().all()
            )
            successes = dict(
                conn.execute(
                    sa.select(r.c.object_name, r.c.finished_at).join(
                        last_ok, r.c.id == last_ok.c.run_id
                    )
                )
                .tuples()
                .all()
            )
            streaks: dict[str, int] = dict(conn.execute(failures).tuples().all())
        return {
            row["object_name"]: {
                "last_status": row["status"],
                "last_error": row["error"],
                "error_kind": row["error_kind"],
                "last_started_at": row["started_at"],
                "last_finished_at": row["finished_at"],
                "records_read": int(row["records_read"] or 0),
                "consecutive_failures": int(streaks.get(row["object_name"], 0)),
                "last_success_at": successes.get(row["object_name"]),
            }
            for row in sorted(last_rows, key=lambda row: row["object_name"])
        }

    def objects_changed_by(self, runs: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
        """For (tenant id, Dagster run id) pairs: the objects each run wrote rows of.

        Any finished status counts: a failed or stopped sync keeps the pages it
        committed, so what is computed from them must follow. Scoped by tenant as
        well as run id, so a run id never reaches another tenant's rows.
        """
        pairs = sorted(set(runs))
        for tenant_id, _ in pairs:
            validate_tenant_id(tenant_id)
        changed: dict[str, set[str]] = {}
        for start in range(0, len(pairs), 500):  # bound the size of one IN list
            query = sa.select(sync_run.c.run_id, sync_run.c.object_name).where(
                sa.tuple_(sync_run.c.tenant_id, sync_run.c.run_id).in_(pairs[start:start + 500]),
                sync_run.c.status != "running",
                (sync_run.c.records_upserted + sync_run.c.records_deleted) > 0,
            ).distinct()
            with self.engine.connect() as conn:
                for run_id, object_name in conn.execute(query):
                    changed.setdefault(run_id, set()).add(object_name)
        return changed

    def recent_runs(
        self, tenant_id: str, limit: int = 20, *, object_name: str | None = None
    ) -> list[dict[str, Any]]:
        """The tenant's latest sync runs, newest first."""
        validate_tenant_id(tenant_id)
        query = sa.select(sync_run).where(sync_run.c.tenant_id == tenant_id)
        if object_name is not None:
            object_table(object_name)
            query = query.where(sync_run.c.object_name == object_name)
        query = query.order_by(sync_run.c.started_at.desc(), sync_run.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]


def _as_utc(value: datetime | str | None) -> datetime | None:
    """Aggregates over a UNION may come back untyped on SQLite; normalise to aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
