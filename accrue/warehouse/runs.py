"""The run ledger (sync_run): every sync attempt, its counts, outcome and error.

The status page, `sync_health` and the failure sensors read it; `apply` moves a running
sync's counts with each page (`count_progress`, in the page's transaction).
Others read it only through here (issue 16): the methods below, and
`succeeded_sync_exists` for a query that needs the ledger as a clause.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from accrue.crypto import redact
from accrue.schema import ERROR_KINDS, RUN_STATUSES, object_table, sync_run, utcnow
from accrue.tenants import validate_tenant_id
from accrue.warehouse.base import WarehouseBase
from accrue.warehouse.stats import WriteStats

logger = logging.getLogger(__name__)

ERROR_MAX_CHARS = 8_000
ABANDONED_ERROR = "abandoned: the process died before finishing"


def succeeded_sync_exists(tenant_id: sa.ColumnElement[Any]) -> sa.Exists:
    """EXISTS a succeeded sync of the tenant in `tenant_id` (a column of the caller's query).

    A clause, not a method: the first-data e-mail asks it of hundreds of tenants in one
    query, one indexed probe each, where a call per tenant would be a round trip each.
    """
    return sa.exists().where(sync_run.c.tenant_id == tenant_id, sync_run.c.status == "succeeded")


def changed_data(run: sa.Table = sync_run) -> sa.ColumnElement[bool]:
    """Whether a sync_run changed its tenant's data: it logged a version not logged before.
    Writing rows is not enough: every incremental sync rewrites the versions its lookback
    re-reads. Runs recorded before the count existed are judged by their row writes
    (`changes_of` states the same for a run row already read)."""
    return sa.func.coalesce(
        run.c.versions_logged, run.c.records_upserted + run.c.records_deleted) > 0


def changes_of(run: Mapping[str, Any]) -> int:
    """The versions a sync_run row logged anew (`changed_data`'s count, for a row read)."""
    if run.get("versions_logged") is not None:
        return int(run["versions_logged"])
    return int(run["records_upserted"] or 0) + int(run["records_deleted"] or 0)


def count_progress(conn: Connection, run_id: int, records_read: int | None,
                   stats: WriteStats, logged: int) -> None:
    """Add one page's writes and the versions it logged anew to a running sync's ledger
    row, inside the page's transaction; `finish_run` writes the final totals."""
    values: dict[str, Any] = {
        "records_upserted": sync_run.c.records_upserted + stats.upserted,
        "records_deleted": sync_run.c.records_deleted + stats.deleted,
        "records_quarantined": sync_run.c.records_quarantined + stats.quarantined,
        "versions_logged": sa.func.coalesce(sync_run.c.versions_logged, 0) + logged,
    }
    if records_read is not None:
        values["records_read"] = records_read
    conn.execute(sa.update(sync_run).where(sync_run.c.id == run_id,
                                           sync_run.c.status == "running").values(values))


@dataclass(frozen=True)
class ObjectsActivity:
    """What the ledger says of a few objects taken together (see `objects_activity`)."""

    changed_at: datetime | None  # the last finished sync that changed one (`changed_data`)
    syncing: bool  # a sync of one of them is running now
    completed: frozenset[str]  # those with a finished sync that did not fail


class RunLedger(WarehouseBase):
    """sync_run rows: start, progress, finish, and what they say per tenant."""

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
                    versions_logged=0,
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
        """For (tenant id, Dagster run id) pairs: the objects each run changed (`changed_data`).

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
                changed_data(),
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

    def run(self, tenant_id: str, run_id: int) -> dict[str, Any] | None:
        """One sync_run row, or None when it is not the tenant's (another tenant's id is
        as unknown as a missing one)."""
        validate_tenant_id(tenant_id)
        query = sa.select(sync_run).where(sync_run.c.id == run_id,
                                          sync_run.c.tenant_id == tenant_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row is not None else None

    def last_finished_run(self, tenant_id: str) -> dict[str, Any] | None:
        """The tenant's most recently finished run: its object_name, status and finished_at
        (the results pages say when the last sync did not finish)."""
        validate_tenant_id(tenant_id)
        r = sync_run
        query = (sa.select(r.c.object_name, r.c.status, r.c.finished_at)
                 .where(r.c.tenant_id == tenant_id, r.c.finished_at.is_not(None))
                 .order_by(r.c.finished_at.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row is not None else None

    def last_success_at(self, tenant_id: str) -> datetime | None:
        """When the tenant's last succeeded sync (of any object) finished: its data's age."""
        validate_tenant_id(tenant_id)
        query = sa.select(sa.func.max(sync_run.c.finished_at)).where(
            sync_run.c.tenant_id == tenant_id, sync_run.c.status == "succeeded")
        with self.engine.connect() as conn:
            found: datetime | None = conn.execute(query).scalar()
        return found

    def objects_activity(self, tenant_id: str, object_names: Collection[str]) -> ObjectsActivity:
        """In one query, for the objects something is computed from (the price model's
        inputs): when a finished sync last changed their rows, whether one is syncing, and
        which have had a sync end without failing (succeeded or stopped)."""
        validate_tenant_id(tenant_id)
        r = sync_run
        finished = r.c.status != "running"
        query = sa.select(
            r.c.object_name,
            sa.func.max(r.c.finished_at).filter(
                finished, changed_data(r)),
            sa.func.count().filter(r.c.status == "running"),
            sa.func.count().filter(finished, r.c.status != "failed"),
        ).where(r.c.tenant_id == tenant_id, r.c.object_name.in_(sorted(object_names))
                ).group_by(r.c.object_name)
        with self.engine.connect() as conn:
            rows = conn.execute(query).tuples().all()
        changed = [at for _, at, _, _ in rows if at is not None]
        return ObjectsActivity(
            changed_at=max(changed, default=None),
            syncing=any(running for _, _, running, _ in rows),
            completed=frozenset(name for name, _, _, ended in rows if ended),
        )
