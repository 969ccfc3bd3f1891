"""sync_run.versions_logged: how many versions a sync logged that were not logged before.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01

Whether a sync changed a tenant's data decides whether what is computed from it is
recomputed (the downstream refresh sensor, the price model's staleness). Until now that
was "it wrote rows" (records_upserted + records_deleted), and every incremental sync
rewrites the versions its lookback re-reads: a change made at 10:00 counted as a change
for every sync until 10:10, and the analytics ran again after each. A version already in
the change log is not logged twice (ON CONFLICT DO NOTHING), so the versions a sync did
log are exactly what it brought that was new. NULL for runs recorded before: those are
judged as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sync_run", sa.Column("versions_logged", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("sync_run", "versions_logged")  # SQLite 3.35+ drops a column in place
