"""Pushed batches into the crm_* tables, through the one write path (`Warehouse.apply`).

Each pushed record becomes an `Upsert` (create/update: `fields` = the data's common-model
columns, `raw` = the pushed data whole, so a field that is no common-model column is still
stored, in `raw`), or a `Delete`. Its stamp is `occurred_at`, else the time the batch was
received: the warehouse keeps the newest version per record, so a late older update never
overwrites a newer one, and on a tie the later arrival wins. Values of the wrong type are
not checked here: the warehouse's own strict value rules quarantine such a record with
the reason, and the rest of the page lands.

Crash safety: batches are read in arrival order; per object, the records of a chunk are
applied in one `apply` whose state `{"cursor": <last inbox id of the chunk>}` commits in
the same transaction. Only then are the batches marked processed. After a crash anywhere,
the batches are read again and each object skips the batches its cursor already covers:
nothing is lost and nothing applied twice (and `apply` is idempotent besides). This
relies on a tenant's inbox ids becoming visible in order, which `inbox.store` ensures
(one insert per tenant at a time). One processor per tenant at a time is assumed (the
scheduler's job, to come); two at once would not corrupt anything, since `apply` keeps
the newest version and logs each version once, but could quarantine a bad record twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from accrue.push import inbox
from accrue.tenants import validate_tenant_id
from accrue.warehouse import Warehouse
from connectors.base import Delete, Quarantine, Upsert
from connectors.common_model import COMMON_OBJECTS

logger = logging.getLogger(__name__)

STATE_SOURCE = "push"
DEFAULT_LIMIT = 100  # batches per chunk (each up to 1,000 records)

_COLUMNS: dict[str, frozenset[str]] = {
    name: frozenset(c.name for c in columns) for name, columns in COMMON_OBJECTS.items()
}


@dataclass
class ProcessResult:
    tenant_id: str
    batches: int = 0
    records: int = 0
    upserted: int = 0
    deleted: int = 0
    skipped_stale: int = 0
    quarantined: int = 0
    already_applied: int = 0  # records a cursor covered (a re-run after a crash)


def to_change(record: Mapping[str, Any], received_at: datetime) -> Upsert | Delete | Quarantine:
    """One pushed record as a warehouse change."""
    source_id = str(record.get("id"))
    problems = inbox.record_problems(dict(record))
    if problems:  # validated at the door; kept, never dropped, if the rules changed since
        return Quarantine(source_id, None, dict(record), "; ".join(problems))
    stamp = (inbox.parse_occurred_at(record["occurred_at"])
             if record.get("occurred_at") is not None else received_at)
    if record["action"] == "delete":
        return Delete(source_id, stamp)
    data: dict[str, Any] = record["data"]
    columns = _COLUMNS[record["object"]]
    fields = {name: value for name, value in data.items() if name in columns}
    return Upsert(source_id, stamp, fields, data)


def _cursor(state: Mapping[str, Any] | None) -> int:
    """The last inbox id an object's state covers (0: none; a CRM's old state is not ours)."""
    if not state or state.get("source") != STATE_SOURCE:
        return 0
    cursor = state.get("cursor")
    return cursor if isinstance(cursor, int) else 0


def process_inbox(engine: Engine, tenant_id: str, *, limit: int = DEFAULT_LIMIT) -> ProcessResult:
    """Apply the tenant's unprocessed batches, `limit` at a time, until none is left."""
    validate_tenant_id(tenant_id)
    if limit < 1:
        raise ValueError("limit must be at least 1")
    warehouse = Warehouse(engine)
    result = ProcessResult(tenant_id)
    while True:
        rows = inbox.unprocessed(engine, tenant_id, limit)
        if not rows:
            return result
        _process_chunk(warehouse, tenant_id, rows, result)
        if len(rows) < limit:
            return result


def _process_chunk(
    warehouse: Warehouse, tenant_id: str, rows: list[inbox.InboxRow], result: ProcessResult
) -> None:
    cursors = {name: _cursor(warehouse.get_state(tenant_id, name)) for name in COMMON_OBJECTS}
    changes: dict[str, list[Upsert | Delete | Quarantine]] = {}
    for row in rows:
        for record in row.records:
            object_name = record.get("object") if isinstance(record, dict) else None
            if object_name not in COMMON_OBJECTS:
                # Refused at the door; nowhere to apply it. Logged, the batch goes on.
                logger.error("tenant %s inbox %s: a record names no common object; skipped",
                             tenant_id, row.id)
                continue
            result.records += 1
            if row.id <= cursors[object_name]:
                result.already_applied += 1
                continue
            changes.setdefault(object_name, []).append(to_change(record, row.received_at))
    last = rows[-1].id
    state = {"cursor": last, "source": STATE_SOURCE}
    for object_name in COMMON_OBJECTS:  # parents before children, as the model lists them
        page = changes.get(object_name)
        if not page:
            continue
        stats = warehouse.apply(tenant_id, object_name, page, state)
        result.upserted += stats.upserted
        result.deleted += stats.deleted
        result.skipped_stale += stats.skipped_stale
        result.quarantined += stats.quarantined
    inbox.mark_processed(warehouse.engine, tenant_id, [row.id for row in rows])
    result.batches += len(rows)
    logger.info("tenant %s: applied %d pushed batch(es) up to inbox id %d",
                tenant_id, len(rows), last)
