"""The one write path into the warehouse: `apply` (requirements F2, F3, F4).

A page is sorted (`page.py`), then written in one transaction: quarantine, each current
document shared with its log version, the rows and the change log through the driver's
bulk path (`bulk_write.py`), reconciliation, resolved quarantine, the state and the run's
count. The promises are in the package's docstring.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from accrue.schema import (
    UtcDateTime,
    crm_change_log,
    crm_quarantine,
    object_table,
    sync_state,
    utcnow,
)
from accrue.tenants import validate_tenant_id
from accrue.warehouse.base import IDS_PER_STATEMENT, WarehouseBase, batches
from accrue.warehouse.keyed import stored_stamps
from accrue.warehouse.page import PageChange, SortedPage, _not_older, sort_page
from accrue.warehouse.rows import Rows
from accrue.warehouse.runs import count_progress
from accrue.warehouse.shared_history import row_fields
from accrue.warehouse.stats import WriteStats
from accrue.warehouse.values import _utc, to_json
from connectors.base import LiveIds

logger = logging.getLogger(__name__)

RECONCILE_STAMP_STEP = timedelta(microseconds=1)
UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE
ALL_NEW_MEMORY = 10_000  # (tenant, object) pairs whose last page held only new records
_KEY = ("tenant_id", "source_id")


def _split(rows: Rows, new: set[str]) -> tuple[Rows, Rows]:
    """(rows of records in `new`, the others), each in its given (lock) order."""
    if not new or not len(rows):
        return Rows(rows.names, [[] for _ in rows.names]), rows
    return rows.partition(list(map(new.__contains__, rows["source_id"])))


class WritePath(WarehouseBase):
    """`apply` and the statements it runs."""

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
        On PostgreSQL a page after one of only new records is first written assuming
        the same (`_remember_all_new`); refused, it is written again the careful way.
        """
        validate_tenant_id(tenant_id)
        changes = list(changes)  # sorted again after a refused optimistic write
        if self._bulk.postgres and self._all_new.get((tenant_id, object_name)):
            try:
                return self._apply(tenant_id, object_name, changes, state, sync_run_id,
                                   records_read, assume_new=True)
            except sa.exc.IntegrityError as exc:
                if getattr(exc.orig, "pgcode", None) != UNIQUE_VIOLATION:
                    raise
                logger.debug("tenant %s %s: a page held stored records; written again the "
                             "careful way", tenant_id, object_name)
        return self._apply(tenant_id, object_name, changes, state, sync_run_id, records_read,
                           assume_new=False)

    def _apply(self, tenant_id: str, object_name: str, changes: list[PageChange],
               state: Mapping[str, Any] | None, sync_run_id: int | None,
               records_read: int | None, *, assume_new: bool) -> WriteStats:
        """`apply` once; `assume_new`: no record of the page is stored (not looked up; a
        COPY into the table refuses the page, rolled back whole, should one be)."""
        table = object_table(object_name)
        page = sort_page(tenant_id, object_name, utcnow(), sync_run_id, changes)
        live, soft_deleted, tombstones = page.rows()
        state_doc = to_json(state, "state") if state is not None else None
        if state is not None and not isinstance(state_doc, dict):
            raise TypeError("state must be a mapping")

        with self.engine.connect() as conn, self._prepared(conn, table).begin():
            self._write_quarantine(conn, tenant_id, object_name, page.quarantine)
            new = self._share_raw(conn, table, page, assume_new)
            upsert = self._upsert_clause(table)
            fresh, live = _split(live, new)
            fresh_deleted, soft_deleted = _split(soft_deleted, new)
            upserted = self._bulk.insert_new(conn, table, upsert, "upsert", fresh, self._insert)
            upserted += self._bulk_write(conn, table, upsert, "upsert", live)
            deleted = self._bulk.insert_new(conn, table, upsert, "upsert", fresh_deleted,
                                            self._insert)
            deleted += self._bulk_write(conn, table, upsert, "upsert", soft_deleted)
            deleted += self._bulk_write(
                conn, table, self._delete_clause(table), "delete", tombstones
            )
            # A record the table did not hold has no logged version either (a version is
            # logged only with its row, and rows are never removed but by erasure, which
            # removes both), so its versions cannot conflict.
            fresh_log, log = _split(page.log_rows(), new)
            logged = self._bulk.insert_new(conn, crm_change_log, self._log_clause, "log",
                                           fresh_log, self._insert)
            logged += self._bulk_write(conn, crm_change_log, self._log_clause, "log", log)
            reconciled: list[str] = []
            if page.live_ids is not None:
                reconciled = self._reconcile(conn, table, page, page.live_ids)
                logged += len(reconciled)
                as_of = _utc(page.live_ids.as_of, "LiveIds.as_of")
                for source_id in reconciled:
                    page.resolving.setdefault(source_id, as_of)
            self._resolve_superseded(conn, table, page)
            if state_doc is not None:
                self._write_state(conn, tenant_id, object_name, state_doc, page.now)
            quarantined = len(page.quarantine)
            # A quarantined soft-deleted record also counts its deletion (written or stale).
            stale = max(0, page.records + page.bare_deletes - upserted - deleted - quarantined)
            stats = WriteStats(upserted, deleted + len(reconciled), stale, quarantined)
            if sync_run_id is not None and (page.records + page.bare_deletes or reconciled):
                count_progress(conn, sync_run_id, records_read, stats, logged)
        self._remember_all_new(tenant_id, object_name, page, new)
        if self._on_committed is not None:
            self._on_committed(tenant_id, object_name, changes)

        if quarantined:
            logger.warning(
                "tenant %s %s: %d record(s) could not be stored faithfully and were "
                "quarantined (see crm_quarantine)",
                tenant_id,
                object_name,
                quarantined,
            )
        logger.debug("tenant %s %s: %s", tenant_id, object_name, stats)
        return stats

    def _remember_all_new(self, tenant_id: str, object_name: str, page: SortedPage,
                          new: set[str]) -> None:
        """Whether the page just written held only records the table did not: the next
        page of the object is then written assuming the same (an initial load's pages
        all are), which spares PostgreSQL the lookup (3 s of a 35 s initial load)."""
        if not page.carried:
            return
        if len(self._all_new) >= ALL_NEW_MEMORY:
            self._all_new.clear()
        self._all_new[(tenant_id, object_name)] = len(new) == len(page.carried)

    def _share_raw(self, conn: Connection, table: sa.Table, page: SortedPage,
                   assume_new: bool = False) -> set[str]:
        """Store each document the rows take once: in the row, its log version pointing there.

        A version the row takes (not older than the stored one, the upsert's own rule)
        is logged with `raw_in_row` and no copy; the stored row's document, about to be
        replaced, is first copied into the versions that pointed at it. A stale version
        keeps its own copy. Rows are locked (FOR UPDATE) between the read and the upsert.
        Returns the records the table does not hold yet (of those carrying values).
        """
        if not page.carried:
            return set()
        stored = {} if assume_new else stored_stamps(conn, table, page.tenant_id,
                                                     page.carried, lock=True)
        replaced = page.share(stored)
        new = set(page.carried).difference(stored)
        if not replaced:
            return new
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
        return new

    def _prepared(self, conn: Connection, table: sa.Table) -> Connection:
        """The connection, ready for the bulk path to write `table` and the change log."""
        self._bulk.prepare(conn, (table, crm_change_log))
        return conn

    def _bulk_write(self, conn: Connection, table: sa.Table, clause: Callable[[Any], Any],
                    key: str, rows: Rows) -> int:
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
        self, conn: Connection, table: sa.Table, page: SortedPage, live: LiveIds
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
        for batch in batches(missing, IDS_PER_STATEMENT):
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
        self._bulk_write(conn, crm_change_log, self._log_clause, "log", Rows.of(log))
        return [source_id for source_id, _ in gone]

    def _resolve_superseded(self, conn: Connection, table: sa.Table, page: SortedPage) -> int:
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
        size = self._ids_per_statement
        waiting: list[tuple[int, str, datetime | None]] = []
        for batch in batches(sorted(candidates), size):
            waiting.extend(
                conn.execute(
                    sa.select(q.c.id, q.c.source_id, q.c.source_modified_at).where(
                        *open_rows, q.c.source_id.in_(batch)
                    )
                ).tuples()
            )
        if not waiting:
            return 0
        stored = stored_stamps(conn, table, page.tenant_id,
                               {source_id for _, source_id, _ in waiting})
        resolved = []
        for row_id, source_id, stamp in waiting:
            valid = page.resolving.get(source_id)
            newer = stored.get(source_id)
            if valid is not None and (stamp is None or valid >= stamp):
                resolved.append(row_id)  # an undated bad version yields to any valid one
            elif stamp is not None and newer is not None and newer > stamp:
                resolved.append(row_id)
        for batch in batches(sorted(resolved), size):
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
