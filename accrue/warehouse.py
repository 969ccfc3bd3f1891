"""The one write path into the warehouse (requirements F2, F3, F4).

Every sync writes through `Warehouse.apply`, which makes three promises:

* Idempotence (F2): rows are keyed on (tenant_id, source_id) and written with
  INSERT ... ON CONFLICT DO UPDATE, so replaying a page never duplicates a row.
* Newest wins (F3): an update only lands when its `source_modified_at` is not
  older than the stored one, so a late or replayed old version never
  overwrites a newer one; deletes are soft (`is_deleted`) so history survives,
  and a newer version revives a deleted record.
* Atomic checkpoints (F4): a page of records and the connector state that
  covers it are committed in one transaction, so a sync that dies midway
  resumes from the last committed state with nothing lost or doubled.

Every query is scoped by tenant_id: a tenant never reads or writes another's rows.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from accrue.crypto import redact
from accrue.db import dialect_insert
from accrue.schema import (
    OBJECT_TABLES,
    RUN_STATUSES,
    object_table,
    pipeline_summary,
    sync_run,
    sync_state,
    utcnow,
)
from accrue.tenants import validate_tenant_id
from connectors.base import Delete, Upsert
from connectors.common_model import COMMON_OBJECTS, ID_LENGTH, Column

logger = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 500
ERROR_MAX_CHARS = 8_000
_KEY = ("tenant_id", "source_id")


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
    deleted: int = 0
    skipped_stale: int = 0  # older than what is stored, or superseded within the same page

    @property
    def total(self) -> int:
        return self.upserted + self.deleted + self.skipped_stale

    def __add__(self, other: WriteStats) -> WriteStats:
        return WriteStats(
            self.upserted + other.upserted,
            self.deleted + other.deleted,
            self.skipped_stale + other.skipped_stale,
        )


def _utc(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{what}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what}: naive datetime; connectors must emit timezone-aware UTC")
    return value.astimezone(UTC)


def to_json(value: Any, path: str = "raw") -> Any:
    """Make a source document JSON-safe, keeping every value that has a JSON form.

    Datetimes and dates become ISO 8601 strings, decimals become numbers and
    non-finite floats become null (PostgreSQL's JSONB rejects NaN); NUL
    characters are dropped because PostgreSQL text cannot hold them.
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return to_json(float(value), path)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_json(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{path}: {type(value).__name__} is not JSON-serializable")


class _RowBuilder:
    """Turns `Upsert.fields` into a row of one crm_* table, with the same rules on both backends.

    The database is not left to coerce: SQLite would store anything and
    PostgreSQL would reject the whole page, so the same record would behave
    differently per backend. Over-long text is truncated (and logged) rather
    than failing the sync forever; the full value stays in `raw`.
    """

    def __init__(self, object_name: str):
        self.object_name = object_name
        self.columns: tuple[Column, ...] = COMMON_OBJECTS[object_name]
        self.truncated: Counter[str] = Counter()

    def fields(self, source_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
        return {c.name: self._coerce(c, values.get(c.name), source_id) for c in self.columns}

    def _coerce(self, column: Column, value: Any, source_id: str) -> Any:
        if value is None:
            return None
        where = f"{self.object_name}.{column.name} of record {source_id!r}"
        kind = column.type
        if kind == "str":
            if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
                raise TypeError(f"{where}: expected text, got {type(value).__name__}")
            text = str(value).replace("\x00", "")
            if column.length is not None and len(text) > column.length:
                self.truncated[column.name] += 1
                text = text[: column.length]
            return text
        if kind == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, float | Decimal) and value == int(value):
                return int(value)
            if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
                return int(value)
            raise TypeError(f"{where}: expected an integer, got {type(value).__name__}")
        if kind == "float":
            if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise TypeError(f"{where}: expected a number, got {type(value).__name__}")
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise TypeError(f"{where}: expected a boolean, got {type(value).__name__}")
        if kind == "datetime":
            if isinstance(value, str):
                value = datetime.fromisoformat(value)
            return _utc(value, where)
        if kind == "date":
            if isinstance(value, str):
                return date.fromisoformat(value)
            if isinstance(value, date) and not isinstance(value, datetime):
                return value
            raise TypeError(f"{where}: expected a date, got {type(value).__name__}")
        raise TypeError(f"{where}: unsupported column type {kind!r}")


def _batches(rows: Sequence[dict[str, Any]], size: int) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _stamp(change: Upsert | Delete) -> datetime:
    if isinstance(change, Upsert):
        return _utc(change.modified_at, f"modified_at of record {change.source_id!r}")
    return _utc(change.deleted_at, f"deleted_at of record {change.source_id!r}")


def _check_source_id(source_id: object) -> str:
    if not isinstance(source_id, str) or not source_id or len(source_id) > ID_LENGTH:
        raise ValueError(
            f"invalid source_id {source_id!r}: expected a non-empty string of at most "
            f"{ID_LENGTH} characters"
        )
    return source_id


class Warehouse:
    """Tenant-scoped reads and writes of the warehouse tables."""

    def __init__(self, engine: Engine, *, batch_rows: int = DEFAULT_BATCH_ROWS):
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        self.engine = engine
        self.batch_rows = batch_rows
        self._insert = dialect_insert(engine.dialect)
        self._param_limit = _bind_parameter_limit(engine.dialect.name)

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        return f"Warehouse({url})"

    # ------------------------------------------------------------------ writes

    def apply(
        self,
        tenant_id: str,
        object_name: str,
        changes: Sequence[Upsert | Delete],
        state: Mapping[str, Any] | None = None,
    ) -> WriteStats:
        """Write one page of changes and, atomically with it, the state that covers it.

        Everything is validated and converted before the transaction opens, so a
        bad record fails the page without holding locks; any error inside the
        transaction rolls back both the rows and the state (F4).
        """
        validate_tenant_id(tenant_id)
        table = object_table(object_name)
        changes = list(changes)  # counted below; a generator would be exhausted
        builder = _RowBuilder(object_name)
        now = utcnow()

        # Keep one change per record: the newest, and on a tie the later one
        # (a re-read of the same version is at least as fresh). Needed because
        # one INSERT ... ON CONFLICT may not touch a row twice.
        winners: dict[str, tuple[datetime, Upsert | Delete]] = {}
        for change in changes:
            if not isinstance(change, Upsert | Delete):
                raise TypeError(
                    f"apply() takes Upsert and Delete, got {type(change).__name__} "
                    "(checkpoints are passed as `state`)"
                )
            source_id = _check_source_id(change.source_id)
            stamp = _stamp(change)
            previous = winners.get(source_id)
            if previous is None or stamp >= previous[0]:
                winners[source_id] = (stamp, change)

        live: list[dict[str, Any]] = []
        soft_deleted: list[dict[str, Any]] = []
        tombstones: list[dict[str, Any]] = []
        for source_id in sorted(winners):  # a stable order keeps row-lock order stable
            stamp, change = winners[source_id]
            row: dict[str, Any] = {"tenant_id": tenant_id, "source_id": source_id}
            if isinstance(change, Upsert):
                row.update(builder.fields(source_id, change.fields))
                row.update(
                    source_modified_at=stamp,
                    is_deleted=bool(change.is_deleted),
                    deleted_at=stamp if change.is_deleted else None,
                    synced_at=now,
                    raw=to_json(change.raw),
                )
                (soft_deleted if change.is_deleted else live).append(row)
            else:
                row.update(
                    source_modified_at=stamp,
                    is_deleted=True,
                    deleted_at=stamp,
                    synced_at=now,
                )
                tombstones.append(row)
        state_doc = to_json(state, "state") if state is not None else None
        if state is not None and not isinstance(state_doc, dict):
            raise TypeError("state must be a mapping")

        with self.engine.begin() as conn:
            upserted = self._write(conn, table, live, self._upsert_statement)
            deleted = self._write(conn, table, soft_deleted, self._upsert_statement)
            deleted += self._write(conn, table, tombstones, self._delete_statement)
            if state_doc is not None:
                self._write_state(conn, tenant_id, object_name, state_doc, now)

        if builder.truncated:
            logger.warning(
                "tenant %s %s: truncated over-long values to the column length (full values "
                "kept in raw): %s",
                tenant_id,
                object_name,
                dict(builder.truncated),
            )
        stats = WriteStats(upserted, deleted, len(changes) - upserted - deleted)
        logger.debug("tenant %s %s: %s", tenant_id, object_name, stats)
        return stats

    def _write(
        self,
        conn: Connection,
        table: sa.Table,
        rows: list[dict[str, Any]],
        statement: Any,
    ) -> int:
        """Execute multi-row upserts in batches that respect the bind-parameter limit."""
        if not rows:
            return 0
        per_row = len(rows[0])
        size = max(1, min(self.batch_rows, self._param_limit // per_row))
        written = 0
        for batch in _batches(rows, size):
            written += conn.execute(statement(table, batch)).rowcount
        return written

    def _upsert_statement(self, table: sa.Table, rows: Sequence[dict[str, Any]]) -> Any:
        stmt = self._insert(table).values(list(rows))
        new = stmt.excluded
        updates: dict[str, Any] = {
            name: new[name] for name in rows[0] if name not in _KEY and name != "deleted_at"
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

    def _delete_statement(self, table: sa.Table, rows: Sequence[dict[str, Any]]) -> Any:
        """Soft-delete known rows (keeping their last values); insert a tombstone otherwise."""
        stmt = self._insert(table).values(list(rows))
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

    def summary(self, tenant_id: str) -> list[dict[str, Any]]:
        """Per common object: live and deleted row counts and freshness, in one round trip."""
        validate_tenant_id(tenant_id)
        parts = []
        for object_name, table in OBJECT_TABLES.items():
            parts.append(
                sa.select(
                    sa.literal(object_name, sa.String()).label("object_name"),
                    sa.func.count().filter(sa.not_(table.c.is_deleted)).label("live_rows"),
                    sa.func.count().filter(table.c.is_deleted).label("deleted_rows"),
                    sa.func.max(table.c.source_modified_at).label("last_modified_at"),
                    sa.func.max(table.c.synced_at).label("last_synced_at"),
                ).where(table.c.tenant_id == tenant_id)
            )
        with self.engine.connect() as conn:
            rows = conn.execute(sa.union_all(*parts)).mappings().all()
        by_name = {row["object_name"]: row for row in rows}
        return [
            {
                "object_name": name,
                "live_rows": int(by_name[name]["live_rows"] or 0),
                "deleted_rows": int(by_name[name]["deleted_rows"] or 0),
                "last_modified_at": _as_utc(by_name[name]["last_modified_at"]),
                "last_synced_at": _as_utc(by_name[name]["last_synced_at"]),
            }
            for name in OBJECT_TABLES
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

    # ------------------------------------------------------------------ run log

    def start_run(self, tenant_id: str, object_name: str, *, run_id: str | None = None) -> int:
        """Record that a sync of one object started; returns the sync_run id."""
        validate_tenant_id(tenant_id)
        object_table(object_name)
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.insert(sync_run).values(
                    tenant_id=tenant_id,
                    object_name=object_name,
                    started_at=utcnow(),
                    status="running",
                    records_read=0,
                    records_upserted=0,
                    records_deleted=0,
                    run_id=run_id,
                )
            )
            return int(result.inserted_primary_key[0])

    def finish_run(
        self,
        run_id: int,
        status: str,
        stats: WriteStats | Mapping[str, Any] | None = None,
        error: str | None = None,
        *,
        records_read: int | None = None,
    ) -> None:
        """Close a sync_run row. `error` is scrubbed of credential-looking text (S1).

        `stats` is a WriteStats (summed over the sync's pages) or a mapping with
        `upserted`, `deleted`, `skipped_stale` and optionally `records_read`, such as
        a sync's metadata dict. `records_read` defaults to the changes handed to `apply`.
        """
        if status not in RUN_STATUSES or status == "running":
            raise ValueError(f"invalid final status {status!r}: use 'succeeded' or 'failed'")
        if isinstance(stats, Mapping):
            if records_read is None and stats.get("records_read") is not None:
                records_read = int(stats["records_read"])
            stats = WriteStats(
                int(stats.get("upserted") or 0),
                int(stats.get("deleted") or 0),
                int(stats.get("skipped_stale") or 0),
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
                    error=message,
                )
            ).rowcount
        if not updated:
            raise LookupError(f"no sync_run with id {run_id}")

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
