"""Orchestration state: the scheduler's memory per tenant, incremental analytics watermarks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

* `tenant_sync_schedule`: per tenant, the last successful sync, the last outcome, the
  failures in a row, the last request and the last reconciliation; the sync sensor
  computes due times from it (a failed tenant retries with backoff, not a full interval).
* `analytics_watermark`: per tenant and asset, the last `crm_change_log.id` whose
  effects are in the asset's rows (seller metrics recompute only the months touched
  by later changes).
* Seller metrics were per (tenant, month) Dagster partitions and are now one partition
  per tenant: their rows stay valid, and the first run after this revision rebuilds
  every month once because no watermark exists yet.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "tenant_sync_schedule",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        _ts("last_requested_at"),
        _ts("last_success_at"),
        _ts("last_outcome_at"),
        sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False),
        _ts("last_reconciled_at"),
        _ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_tenant_sync_schedule")),
    )
    op.create_table(
        "analytics_watermark",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("asset_name", sa.String(length=64), nullable=False),
        sa.Column("change_log_id", sa.BigInteger(), nullable=False),
        _ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "asset_name", name=op.f("pk_analytics_watermark")),
    )


def downgrade() -> None:
    op.drop_table("analytics_watermark")
    op.drop_table("tenant_sync_schedule")
