"""The one write path of the concierge's saved progress per tenant (`onboarding_state`).

The concierge starts and saves the wizard here (`onboarding_app.store`); the first-data
e-mail (`accrue.onboarding_notify`, run by the status page and the Dagster sensor alike)
claims and releases its "notified" mark here. Reads stay with the readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from accrue.schema import onboarding_state, utcnow


def start(conn: Connection, tenant_id: str, *, step: str = "welcome", **values: Any) -> None:
    """The tenant's row, at `step` with no answers yet (in the caller's transaction)."""
    now = utcnow()
    conn.execute(sa.insert(onboarding_state).values(
        tenant_id=tenant_id, step=step, data={}, created_at=now, updated_at=now, **values))


def save(conn: Connection, tenant_ids: str | Sequence[str], **values: Any) -> None:
    """Update the saved state (step, data, timestamps) of one tenant or several."""
    ids = [tenant_ids] if isinstance(tenant_ids, str) else list(tenant_ids)
    conn.execute(sa.update(onboarding_state).where(onboarding_state.c.tenant_id.in_(ids))
                 .values(**values, updated_at=utcnow()))


def swap_first_data_notified(conn: Connection, tenant_id: str, *, was: datetime | None,
                             now: datetime | None) -> bool:
    """Set the first-data mark to `now` if it still is `was` (a conditional UPDATE, atomic on
    SQLite and PostgreSQL): whether this caller made the change."""
    column = onboarding_state.c.first_data_notified_at
    result = conn.execute(
        sa.update(onboarding_state)
        .where(onboarding_state.c.tenant_id == tenant_id,
               column.is_(None) if was is None else column == was)
        .values(first_data_notified_at=now)
    )
    return result.rowcount == 1
