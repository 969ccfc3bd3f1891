"""`crm_opportunity.list_amount`: a deal's value at list price, kept on the deal itself.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30

Pricing compares what a deal is quoted at with its value at list price. CRMs with
products carry the list price on every line item (`crm_opportunity_line`); CRMs without
them (Close) keep it, where a team records it at all, in a field of the deal. Empty for
every existing row: nothing is inferred.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("crm_opportunity") as batch:
        batch.add_column(sa.Column("list_amount", sa.Float(precision=53), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("crm_opportunity") as batch:
        batch.drop_column("list_amount")
