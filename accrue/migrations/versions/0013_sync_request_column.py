"""`tenant_sync_schedule.admin_requested_at`: the admin's "Sync now" in the scheduler's table.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30

Until now the request was kept in the concierge's saved state (`onboarding_state.data`,
section `sync_request`), so the pipelines read the web app's wizard data. Pending
requests are moved over; the section is removed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SECTION = "sync_request"


def upgrade() -> None:
    with op.batch_alter_table("tenant_sync_schedule") as batch:
        batch.add_column(sa.Column("admin_requested_at", sa.DateTime(timezone=True),
                                   nullable=True))
    conn = op.get_bind()
    state = sa.table("onboarding_state", sa.column("tenant_id", sa.String),
                     sa.column("data", sa.JSON))
    schedule = sa.table("tenant_sync_schedule", sa.column("tenant_id", sa.String),
                        sa.column("admin_requested_at", sa.DateTime(timezone=True)),
                        sa.column("consecutive_failures", sa.Integer),
                        sa.column("updated_at", sa.DateTime(timezone=True)))
    for tenant_id, data in conn.execute(sa.select(state.c.tenant_id, state.c.data)).all():
        data = json.loads(data) if isinstance(data, str) else dict(data or {})
        request = data.pop(SECTION, None)
        if not request:
            continue
        at = datetime.fromisoformat(request["at"]).astimezone(UTC)
        now = datetime.now(UTC)
        moved = conn.execute(sa.update(schedule).where(schedule.c.tenant_id == tenant_id)
                             .values(admin_requested_at=at, updated_at=now)).rowcount
        if not moved:
            conn.execute(sa.insert(schedule).values(tenant_id=tenant_id, admin_requested_at=at,
                                                    consecutive_failures=0, updated_at=now))
        conn.execute(sa.update(state).where(state.c.tenant_id == tenant_id).values(data=data))


def downgrade() -> None:
    with op.batch_alter_table("tenant_sync_schedule") as batch:
        batch.drop_column("admin_requested_at")
