"""A tenant's cursors (the connector state) and all of its synced data at once."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from accrue.schema import (
    OBJECT_TABLES,
    crm_change_log,
    crm_quarantine,
    object_table,
    pipeline_summary,
    sync_run,
    sync_state,
)
from accrue.tenants import validate_tenant_id
from accrue.warehouse.base import WarehouseBase

logger = logging.getLogger(__name__)


class TenantData(WarehouseBase):
    """Cursors to read, reset or delete with the tenant's data."""

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

    # Every warehouse table that holds a tenant's rows (`delete_tenant_data`); the tables
    # of other owners go through accrue.erasure.
    TENANT_TABLES: tuple[sa.Table, ...] = (
        crm_change_log, crm_quarantine, *OBJECT_TABLES.values(), sync_state, sync_run,
        pipeline_summary,
    )

    def delete_tenant_data(self, tenant_id: str) -> dict[str, int]:
        """Delete everything synced for the tenant, and the cursors and run ledger with it
        (a cursor kept would make a later sync skip what was deleted); one transaction.

        The warehouse's part of the admin's "delete the synced data" (accrue.erasure).
        Rows deleted per table.
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
