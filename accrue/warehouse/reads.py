"""Reads of the warehouse: counts, summaries, references, and history (F3).

`history`, `as_of` and `changes_since` read the change log and `crm_record_history`;
a version kept in its row (`shared_history.py`) gets its values from there. Others read
the log and the view only through here (issue 16): `all_versions`, `log_after` and
`versions_of` are the analytics' reads of them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from accrue.schema import (
    OBJECT_TABLES,
    change_log_raw,
    crm_change_log,
    object_table,
    pipeline_summary,
    record_history,
    utcnow,
)
from accrue.tenants import validate_tenant_id
from accrue.warehouse.base import WarehouseBase
from accrue.warehouse.shared_history import fill_fields
from accrue.warehouse.values import _utc
from connectors.common_model import OPTIONAL_REFERENCES, REFERENCES

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



class Reads(WarehouseBase):
    """Tenant-scoped reads of the crm_* tables, the summary and the history."""

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


    def all_versions(self, tenant_id: str, object_name: str) -> list[dict[str, Any]]:
        """Every version of every record of an object, with its validity interval: source_id,
        valid_from, valid_to, is_deleted and fields (analytics prices a closed deal with
        the lines it closed with)."""
        validate_tenant_id(tenant_id)
        object_table(object_name)
        h = record_history
        query = sa.select(h.c.source_id, h.c.valid_from, h.c.valid_to, h.c.is_deleted,
                          h.c.fields).where(h.c.tenant_id == tenant_id,
                                            h.c.object_name == object_name)
        with self.engine.connect() as conn:
            versions = [dict(row) for row in conn.execute(query).mappings()]
            fill_fields(conn, tenant_id, versions, object_name)
        return versions

    def log_after(
        self, tenant_id: str, after_id: int, object_names: Collection[str]
    ) -> list[dict[str, Any]]:
        """Change-log versions of the objects with id > `after_id`, in id order: id,
        object_name, source_id, source_modified_at, fields. The log's id is a watermark
        an incremental computation can keep (seller metrics)."""
        validate_tenant_id(tenant_id)
        log = crm_change_log
        query = (
            sa.select(log.c.id, log.c.object_name, log.c.source_id, log.c.source_modified_at,
                      log.c.fields)
            .where(log.c.tenant_id == tenant_id, log.c.id > after_id,
                   log.c.object_name.in_(sorted(object_names)))
            .order_by(log.c.id)
        )
        with self.engine.connect() as conn:
            changes = [dict(row) for row in conn.execute(query).mappings()]
            fill_fields(conn, tenant_id, changes)
        return changes

    def versions_of(
        self, tenant_id: str, object_name: str, source_ids: Collection[str]
    ) -> list[dict[str, Any]]:
        """Every logged version of the named records, unordered: source_id,
        source_modified_at, fields (what a record was before a change)."""
        validate_tenant_id(tenant_id)
        object_table(object_name)
        log = crm_change_log
        query = sa.select(log.c.source_id, log.c.source_modified_at, log.c.fields).where(
            log.c.tenant_id == tenant_id, log.c.object_name == object_name,
            log.c.source_id.in_(sorted(source_ids)),
        )
        with self.engine.connect() as conn:
            versions = [dict(row) for row in conn.execute(query).mappings()]
            fill_fields(conn, tenant_id, versions, object_name)
        return versions


def _as_utc(value: datetime | str | None) -> datetime | None:
    """Aggregates over a UNION may come back untyped on SQLite; normalise to aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

