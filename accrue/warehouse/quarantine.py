"""The quarantine ledger: records held back, retried and resolved.

`apply` writes and resolves quarantine rows in its page's transaction (`write.py`);
these are the reads and the sync engine's retries.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa

from accrue.schema import crm_quarantine, object_table, utcnow
from accrue.tenants import validate_tenant_id
from accrue.warehouse.base import WarehouseBase, batches


class QuarantineLedger(WarehouseBase):
    """Open quarantine rows of a tenant: read, count, resolve, count a retry."""

    def _open_quarantine_filter(
        self, tenant_id: str, object_name: str | None
    ) -> list[sa.ColumnElement[bool]]:
        """The tenant's open quarantine rows, of one object or all (names validated)."""
        validate_tenant_id(tenant_id)
        q = crm_quarantine
        conditions = [q.c.tenant_id == tenant_id, q.c.resolved_at.is_(None)]
        if object_name is not None:
            object_table(object_name)
            conditions.append(q.c.object_name == object_name)
        return conditions

    def open_quarantine(
        self, tenant_id: str, object_name: str | None = None
    ) -> list[dict[str, Any]]:
        """Records waiting in quarantine, oldest first, with `raw` decoded back to a dict."""
        q = crm_quarantine
        query = (
            sa.select(q)
            .where(*self._open_quarantine_filter(tenant_id, object_name))
            .order_by(q.c.first_seen_at, q.c.id)
        )
        with self.engine.connect() as conn:
            rows = [dict(row) for row in conn.execute(query).mappings()]
        for row in rows:
            row["raw"] = json.loads(row.pop("raw_text"))
        return rows

    def quarantine_count(self, tenant_id: str, object_name: str | None = None) -> int:
        """How many records wait in quarantine (0 means nothing was held back)."""
        q = crm_quarantine
        query = (
            sa.select(sa.func.count())
            .select_from(q)
            .where(*self._open_quarantine_filter(tenant_id, object_name))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def resolve_quarantine(self, tenant_id: str, ids: Collection[int]) -> int:
        """Close quarantine rows of this tenant (e.g. after a re-mapped record landed).

        Idempotent: returns how many of `ids` are resolved afterwards, including rows
        `apply` already resolved when the record's valid version landed, so a caller
        counting its successful retries gets the same answer either way.
        """
        return self._touch_quarantine(tenant_id, ids, resolve=True)

    def record_quarantine_attempt(self, tenant_id: str, ids: Collection[int]) -> int:
        """Count another failed retry of open quarantine rows (attempts, last_seen_at)."""
        return self._touch_quarantine(tenant_id, ids, resolve=False)

    def _touch_quarantine(self, tenant_id: str, ids: Collection[int], *, resolve: bool) -> int:
        validate_tenant_id(tenant_id)
        q = crm_quarantine
        wanted = sorted({int(i) for i in ids})
        now = utcnow()
        values: dict[str, Any] = (
            {"resolved_at": now} if resolve else {"attempts": q.c.attempts + 1, "last_seen_at": now}
        )
        changed = 0
        size = self._ids_per_statement
        with self.engine.begin() as conn:
            for batch in batches(wanted, size):
                mine = (q.c.tenant_id == tenant_id, q.c.id.in_(batch))
                if resolve:  # rows resolved before count too (see resolve_quarantine)
                    changed += conn.execute(
                        sa.select(sa.func.count())
                        .select_from(q)
                        .where(*mine, q.c.resolved_at.is_not(None))
                    ).scalar_one()
                changed += conn.execute(
                    sa.update(q).where(*mine, q.c.resolved_at.is_(None)).values(values)
                ).rowcount
        return changed
