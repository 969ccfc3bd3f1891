"""The warehouse: the one write path into it, and its reads (requirements F2, F3, F4).

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

from accrue.warehouse.page import PageChange
from accrue.warehouse.quarantine import QuarantineLedger
from accrue.warehouse.reads import Reads
from accrue.warehouse.runs import ABANDONED_ERROR, RunLedger
from accrue.warehouse.stats import WriteStats
from accrue.warehouse.tenant_data import TenantData
from accrue.warehouse.values import UnstorableValue, json_text, to_json
from accrue.warehouse.write import WritePath

__all__ = [
    "ABANDONED_ERROR",
    "PageChange",
    "UnstorableValue",
    "Warehouse",
    "WriteStats",
    "json_text",
    "to_json",
]


class Warehouse(WritePath, Reads, QuarantineLedger, TenantData, RunLedger):
    """Tenant-scoped reads and writes of the warehouse tables.

    One object, composed of one part per concern: the write path (`write.py`), the
    reads and history (`reads.py`), the quarantine ledger (`quarantine.py`), cursors and
    a tenant's data as a whole (`tenant_data.py`) and the run ledger (`runs.py`).
    """
