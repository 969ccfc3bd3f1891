"""Erasing a tenant's data: what Accrue synced, received or computed for it.

Each table is deleted by the module that writes it (docs/architecture.md), so erasure is
a list of owners, not of tables. The tenant, its accounts, its concierge answers and the
audit trail are not data the CRM gave us and stay: the admin can still log in, reconnect
and see what was done.

Owners run one after the other, each in its own transaction, results first: a failure
part-way never leaves results computed from data that is gone, and calling again
finishes the job.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine

from accrue import sync_schedule
from accrue.file_import import uploads
from accrue.push import inbox
from accrue.push import schema as push_schema
from accrue.schema import tenant_sync_schedule
from accrue.warehouse import Warehouse

Eraser = Callable[[Engine, str], dict[str, int]]


def _analytics(engine: Engine, tenant_id: str) -> dict[str, int]:
    from accrue.analytics import store  # pandas: loaded only to erase

    return store.delete_tenant(engine, tenant_id)


def _warehouse(engine: Engine, tenant_id: str) -> dict[str, int]:
    return Warehouse(engine).delete_tenant_data(tenant_id)


def _schedule(engine: Engine, tenant_id: str) -> dict[str, int]:
    return {tenant_sync_schedule.name: sync_schedule.forget(engine, tenant_id)}


ERASERS: tuple[Eraser, ...] = (
    _analytics, _warehouse, inbox.delete_tenant, push_schema.delete_tenant,
    uploads.delete_tenant, _schedule,
)


def erased_tables() -> frozenset[str]:
    """The tables erasure empties for a tenant, from each owner's own list (the test holds
    it to the schema and to the rows left after an erasure)."""
    from accrue.analytics import store

    return frozenset(t.name for t in (
        *store.TENANT_TABLES, *Warehouse.TENANT_TABLES, *inbox.TENANT_TABLES,
        *push_schema.TENANT_TABLES, *uploads.TENANT_TABLES, tenant_sync_schedule))


def erase_synced_data(engine: Engine, tenant_id: str) -> dict[str, int]:
    """Delete the tenant's data, owner by owner; rows deleted per table."""
    rows: dict[str, int] = {}
    for erase in ERASERS:
        rows.update(erase(engine, tenant_id))
    return rows
