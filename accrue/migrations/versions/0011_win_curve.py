"""`price_recommendation.curve_a` / `curve_b`: the win curve a recommendation came from.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30

P(win | x) = 1/(1 + exp(a + b·x)) with x the price as a fraction of list: with the two
parameters the deal page draws the curve and marks the current and recommended prices
(issue 11). NULL for band and excluded rows, and for existing rows until the next
analytics run.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("price_recommendation") as batch:
        batch.add_column(sa.Column("curve_a", sa.Float(53), nullable=True))
        batch.add_column(sa.Column("curve_b", sa.Float(53), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("price_recommendation") as batch:
        batch.drop_column("curve_b")
        batch.drop_column("curve_a")
