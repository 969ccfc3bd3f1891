"""After a chaos trial: one clean sync, then the warehouse compared with the org, exactly.

Why a second warehouse as the truth: the harness API gives every CRM's live counts but
not every record's current values, so the CRM-neutral truth is a clean full read of the
org — no faults, no state, `reconcile=True` — through the same adapter into a fresh
warehouse. What chaos can break is *incremental* syncing under faults and kills (resume
from checkpoints, lookback, tie stamps, deletes, reconciliation); a fresh full read is
the path least exposed to all of that, so equality with it, field by field, plus the
org's own live counts, is the check. A CRM whose benchmarks module offers a richer
truth (Salesforce's `queryAll` of every record, live and in the recycle bin) adds it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from accrue.schema import crm_change_log, model_columns, object_table
from accrue.sync import sync_object
from accrue.warehouse import Warehouse
from benchmarks.chaos_worker import Connection, JournalKey, make_connector, stamp_key
from connectors.base import ConnectorError
from connectors.sandbox_kit.harness import RunningCrmSandbox

CLEAN_SYNC_ATTEMPTS = 3
SHOWN_FIELDS = 4


@dataclass
class Mismatch:
    kind: str
    object_name: str
    source_id: str | None
    detail: str

    def __str__(self) -> str:
        where = f"{self.object_name}/{self.source_id}" if self.source_id else self.object_name
        return f"{self.kind} {where}: {self.detail}"


@dataclass
class Comparison:
    rows: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    quarantined: int = 0

    def add(self, kind: str, object_name: str, source_id: str | None, detail: str) -> None:
        self.mismatches.append(Mismatch(kind, object_name, source_id, detail))


def sync_every_object(
    warehouse: Warehouse, connection: Connection, tenant: str, objects: Sequence[str],
    comparison: Comparison, *, reconcile: bool = False, kind: str = "clean_sync_failed",
) -> None:
    """One fault-free sync of every object, in process (a few attempts each)."""
    for object_name in objects:
        error = ""
        for _ in range(CLEAN_SYNC_ATTEMPTS):
            try:
                with make_connector(connection) as connector:
                    result = sync_object(warehouse, connector, tenant, object_name,
                                         reconcile=reconcile)
            except (ConnectorError, sa.exc.SQLAlchemyError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                continue
            if result.complete:
                error = ""
                break
            error = f"stopped: {result.stop_reason}"
        if error:
            comparison.add(kind, object_name, None, error)


def read_truth(truth: Warehouse, connection: Connection, tenant: str, objects: Sequence[str],
               comparison: Comparison) -> None:
    """The org read whole, from nothing, into `truth` (its earlier rows wiped first)."""
    truth.delete_tenant_data(tenant)
    sync_every_object(truth, connection, tenant, objects, comparison, reconcile=True,
                      kind="truth_read_failed")


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values: 3 and 3.0 are the same number; a bool is not a number."""
    numbers = (int, float)
    if (isinstance(a, numbers) and isinstance(b, numbers)
            and not isinstance(a, bool) and not isinstance(b, bool)):
        return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=0.0)
    return bool(a == b)


def short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def differences(ours: Mapping[str, Any], theirs: Mapping[str, Any], names: Collection[str],
                ) -> str:
    """The differing keys, an absent key counting as null; "" when equal."""
    differing = [n for n in names if not same(ours.get(n), theirs.get(n))]
    if not differing:
        return ""
    shown = ", ".join(f"{n}: warehouse {short(ours.get(n))} vs truth {short(theirs.get(n))}"
                      for n in differing[:SHOWN_FIELDS])
    more = len(differing) - SHOWN_FIELDS
    return shown + (f" (+{more} more)" if more > 0 else "")


def change_log_versions(warehouse: Warehouse, tenant: str) -> set[JournalKey]:
    log = crm_change_log
    with warehouse.engine.connect() as conn:
        return {
            (row.object_name, row.source_id, stamp_key(row.source_modified_at),
             bool(row.is_deleted))
            for row in conn.execute(
                sa.select(log.c.object_name, log.c.source_id, log.c.source_modified_at,
                          log.c.is_deleted).where(log.c.tenant_id == tenant))
        }


def check_duplicates(warehouse: Warehouse, tenant: str, object_name: str,
                     comparison: Comparison) -> None:
    """A source id stored twice for one tenant and object is a mismatch of its own."""
    duplicates = warehouse.duplicate_keys(tenant, object_name)
    if duplicates:
        comparison.add("duplicate_key", object_name, None, f"{duplicates} duplicated source ids")


def rows_of(warehouse: Warehouse, tenant: str, object_name: str) -> dict[str, dict[str, Any]]:
    table = object_table(object_name)
    with warehouse.engine.connect() as conn:
        return {row["source_id"]: dict(row) for row in conn.execute(
            sa.select(table).where(table.c.tenant_id == tenant)).mappings()}


def check_journal(warehouse: Warehouse, tenant: str, journal: set[JournalKey],
                  comparison: Comparison) -> set[JournalKey]:
    """Every version a worker journaled after a commit is in the change log (F4, F3)."""
    logged = change_log_versions(warehouse, tenant)
    for entry in sorted(journal - logged):
        comparison.add("journal_not_in_change_log", entry[0], entry[1],
                       f"version {entry[2]} deleted={entry[3]} was committed, not in the log")
    return logged


def compare_with_truth(
    warehouse: Warehouse, tenant: str, truth: Warehouse, truth_tenant: str,
    org: RunningCrmSandbox, objects: Sequence[str], logged: set[JournalKey],
    comparison: Comparison,
) -> None:
    """The chaos warehouse against the fresh full read and the org's live counts."""
    for object_name in objects:
        ours = rows_of(warehouse, tenant, object_name)
        theirs = rows_of(truth, truth_tenant, object_name)
        check_duplicates(warehouse, tenant, object_name, comparison)
        live = {i for i, r in ours.items() if not r["is_deleted"]}
        truly_live = {i for i, r in theirs.items() if not r["is_deleted"]}
        org_count = org.live_count(object_name)
        if len(truly_live) != org_count:
            comparison.add("truth_count", object_name, None,
                           f"a full read lands {len(truly_live)} live records, the org "
                           f"holds {org_count}: the adapter's full read is off")
        if live != truly_live:
            comparison.add("live_ids", object_name, None,
                           f"{len(live - truly_live)} live only in the warehouse, "
                           f"{len(truly_live - live)} live only in the org")
        columns = [c.name for c in model_columns(object_name)]
        for source_id, truth_row in theirs.items():
            comparison.rows += 1
            _compare_row(object_name, source_id, ours.get(source_id), truth_row, columns,
                         logged, comparison)
        for source_id, row in ours.items():
            if source_id in theirs:
                continue
            comparison.rows += 1  # gone from the org's reads: must be flagged deleted
            if not row["is_deleted"]:
                comparison.add("ghost_live", object_name, source_id,
                               "the org no longer has it, the warehouse holds it live")
    comparison.quarantined = warehouse.quarantine_count(tenant)


def _compare_row(object_name: str, source_id: str, row: Mapping[str, Any] | None,
                 truth: Mapping[str, Any], columns: Sequence[str], logged: set[JournalKey],
                 comparison: Comparison) -> None:
    deleted = bool(truth["is_deleted"])
    state = "deleted" if deleted else "live"
    if row is None:
        comparison.add(f"missing_{state}", object_name, source_id,
                       "in the org, not in the warehouse")
        return
    if bool(row["is_deleted"]) != deleted:
        comparison.add("deleted_flag", object_name, source_id,
                       f"warehouse is_deleted={row['is_deleted']}, org deleted={deleted}")
        return
    version = (object_name, source_id, stamp_key(row["source_modified_at"]), deleted)
    if version not in logged:
        comparison.add("row_not_in_change_log", object_name, source_id,
                       f"current version {version[2]} deleted={deleted} not logged")
    if deleted and truth["raw"] is None:
        return  # the full read saw an id-only delete: nothing more to compare
    if row["source_modified_at"] != truth["source_modified_at"]:
        comparison.add(f"stamp_{state}", object_name, source_id,
                       f"warehouse {row['source_modified_at'].isoformat()} vs truth "
                       f"{truth['source_modified_at'].isoformat()}")
    differing = differences(row, truth, columns)
    if differing:
        comparison.add(f"fields_{state}", object_name, source_id, differing)
    raw, truth_raw = row["raw"] or {}, truth["raw"] or {}
    differing = differences(raw, truth_raw, sorted(set(raw) | set(truth_raw)))
    if differing:
        comparison.add(f"raw_{state}", object_name, source_id, differing)
