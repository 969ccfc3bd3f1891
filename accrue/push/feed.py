"""The push inbox read back as a connector: pushed records reach the warehouse like a CRM's.

A push tenant's sync runs the same sync asset and engine (accrue.sync.sync_object) as any
CRM tenant; only its connector differs. `PushConnector.read(object, state)` yields the
object's records from the tenant's inbox batches after the object's cursor, in arrival
order, a page of batches at a time, each page closed by
`Checkpoint({"source": "push", "cursor": <last inbox id of the page>, "fields": [...]})`.
The engine commits a page's records and its checkpoint in one transaction, so:

* Ordering: each record is stamped with its `occurred_at`, else the time its batch was
  received; the warehouse keeps the newest version per record (a tie goes to the later
  arrival), so a late older update never overwrites a newer one.
* Crash safety: after a crash anywhere the object is read again from its committed cursor:
  nothing is lost, and nothing is applied twice (the page before the cursor is never read
  again; a page re-read after a crash was not committed, and `apply` is idempotent besides).
  This relies on a tenant's inbox ids becoming visible in order (`inbox.store`).
* A read stops at the newest batch when it began: batches arriving meanwhile wait for the
  next run (the sensor sees them pending), so a busy sender cannot keep a run going.

The processed flag: the cursors alone say what is applied, per object. `processed_at` is
kept as the one per-batch answer ("is this batch in the warehouse?") that the sensor's
`pending` check, retention and the admin's recent-pushes list read cheaply, without
knowing about objects. After each object's read, batches up to the lowest cursor among
the objects the tenant syncs are marked processed, then processed batches older than the
retention are deleted (accrue.config.push_inbox_retention_days). A crash between the two
steps leaves batches unmarked though applied: the next run reads nothing new and marks them.

Mapping: the object's schema (accrue.push.schema) is observed page by page before the page
is applied, and its mapping turns pushed fields into common-model columns; `raw` holds
the pushed data whole.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from accrue import config, tenants
from accrue.push import PUSH_CRM_TYPE, inbox, schema
from accrue.schema import utcnow
from accrue.warehouse import Warehouse
from connectors.base import (
    Change,
    Checkpoint,
    CheckResult,
    Connector,
    Delete,
    ObjectInfo,
    Quarantine,
    Upsert,
)
from connectors.common_model import COMMON_OBJECTS

logger = logging.getLogger(__name__)

STATE_SOURCE = "push"
# Batches per page (each up to 1,000 records): a page is one warehouse transaction per
# object; 20 keeps a page's records (up to 20,000) well within a worker's memory.
PAGE_BATCHES = 20


def cursor_of(state: Mapping[str, Any] | None) -> int:
    """The last inbox id an object's state covers (0: none; a CRM's old state is not ours)."""
    if not state or state.get("source") != STATE_SOURCE:
        return 0
    cursor = state.get("cursor")
    return cursor if isinstance(cursor, int) and not isinstance(cursor, bool) else 0


def to_change(
    record: Mapping[str, Any], received_at: datetime | None, mapping: schema.ObjectSchema | None
) -> Upsert | Delete | Quarantine:
    """One pushed record as a warehouse change (`received_at` None: not known, a retry)."""
    source_id = str(record.get("id"))
    problems = inbox.record_problems(dict(record))
    if problems:  # validated at the door; kept, never dropped, if the rules changed since
        return Quarantine(source_id, None, dict(record), "; ".join(problems))
    if record.get("occurred_at") is not None:
        stamp = inbox.parse_occurred_at(record["occurred_at"])
    elif received_at is not None:
        stamp = received_at
    else:
        return Quarantine(source_id, None, dict(record),
                          "a pushed record without occurred_at is dated by its arrival: "
                          "push it again")
    if record["action"] == "delete":
        return Delete(source_id, stamp)
    data: dict[str, Any] = record["data"]
    return Upsert(source_id, stamp, mapping.columns(data) if mapping else {}, data)


class PushConnector(Connector):
    """A push tenant's inbox as a connector (see the module docstring)."""

    crm_type = PUSH_CRM_TYPE
    reads_warehouse = True  # settles its input by what the warehouse committed

    def __init__(self, engine: Engine, tenant_id: str, *, page_batches: int = PAGE_BATCHES):
        if page_batches < 1:
            raise ValueError("page_batches must be at least 1")
        self.engine = engine
        self.tenant_id = tenants.validate_tenant_id(tenant_id)
        self.page_batches = page_batches
        self._objects: dict[int, frozenset[str]] = {}  # inbox id -> the objects it holds

    def check(self) -> CheckResult:
        return CheckResult(True, "records arrive through the push API; nothing to log in to")

    def objects(self) -> list[ObjectInfo]:
        return [ObjectInfo(name, f"pushed {name}") for name in COMMON_OBJECTS]

    def count(self, object_name: str) -> int:
        """The source is what was pushed: every live record pushed is in the warehouse (what
        could not be stored waits in quarantine), so its own count is the source's."""
        return Warehouse(self.engine).count(self.tenant_id, object_name)

    def read(
        self, object_name: str, state: Mapping[str, Any] | None, *, reconcile: bool = False
    ) -> Iterator[Change]:
        # `reconcile`: a pusher sends changes, never the list of its live ids; nothing to do.
        cursor = cursor_of(state)
        fields = list((state or {}).get("fields") or [])
        newest = inbox.last_id(self.engine, self.tenant_id)
        while cursor < newest:
            rows = inbox.batches_after(self.engine, self.tenant_id, cursor, newest,
                                       self.page_batches)
            if not rows:
                break
            pages = [(row.received_at, self._records_of(row, object_name)) for row in rows]
            found = schema.observe(self.engine, self.tenant_id, object_name, pages)
            for received_at, records in pages:
                for record in records:
                    yield to_change(record, received_at, found)
            if found is not None:
                fields = sorted({*found.fields,
                                 *(d.field for d in found.drift if d.kind == "added")})
            cursor = rows[-1].id
            yield Checkpoint({"source": STATE_SOURCE, "cursor": cursor, "fields": fields})
        self._settle()

    def _records_of(self, row: inbox.InboxRow, object_name: str) -> list[dict[str, Any]]:
        """The batch's records of one object. Each object reads every batch, but a batch is
        parsed again only for an object it holds (the objects of each batch are remembered
        for the connector's life: a few bytes per batch)."""
        known = self._objects.get(row.id)
        if known is not None and object_name not in known:
            return []
        records = [r for r in row.records if isinstance(r, dict)]
        self._objects[row.id] = frozenset(str(r.get("object")) for r in records)
        return [r for r in records if r.get("object") == object_name]

    def _settle(self) -> None:
        """Mark what every synced object has applied, then apply the retention."""
        tenant = tenants.require_tenant(self.engine, self.tenant_id)
        warehouse = Warehouse(self.engine)
        through = min((cursor_of(warehouse.get_state(self.tenant_id, name))
                       for name in tenant.synced_objects()), default=0)
        marked = inbox.mark_processed_through(self.engine, self.tenant_id, through)
        expired = utcnow() - timedelta(days=config.push_inbox_retention_days())
        deleted = inbox.delete_expired(self.engine, self.tenant_id, expired)
        if marked or deleted:
            logger.info("tenant %s: %d pushed batch(es) applied (through inbox id %d), %d "
                        "past the retention deleted", self.tenant_id, marked, through, deleted)

    def map_record(self, object_name: str, record: Mapping[str, Any]) -> Upsert | Quarantine:
        """Retry a quarantined record: one quarantined as pushed (the whole record) maps
        again under the object's current schema; one the warehouse refused holds only its
        data (no id, no date) and lands when it is pushed again."""
        if not {"object", "id", "action"} <= set(record):
            return Quarantine(None, None, dict(record),
                              "a value the column refuses: fix it at the source and push the "
                              "record again")
        data = record.get("data")
        current = schema.get(self.engine, self.tenant_id, object_name) or schema.ObjectSchema(
            object_name, {}, schema.suggest_mapping(object_name, data if isinstance(data, dict)
                                                    else {}))
        change = to_change(record, None, current)
        if isinstance(change, Delete):
            return Quarantine(change.source_id, change.deleted_at, dict(record),
                              "a delete is applied when it is pushed again")
        return change


class PushFeed:
    """The push API as a feed (accrue.sources)."""

    def open(self, engine: Engine, tenant_id: str) -> Connector:
        return PushConnector(engine, tenant_id)

    def pending(self, engine: Engine, tenant_id: str) -> bool:
        return inbox.pending_count(engine, tenant_id) > 0


PUSH_FEED = PushFeed()
