"""`price_recommendation.clamp_reason`: a guardrail that moved the price, in words.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

`clamp` names the rule (`floor (won prices)`, `ceiling (observed range)` …); the sentence
an admin reads ("raised to the low end of the prices won in …") was only appended to
`drivers`. Existing rows keep NULL until the next analytics run rewrites them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("price_recommendation") as batch:
        batch.add_column(sa.Column("clamp_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("price_recommendation") as batch:
        batch.drop_column("clamp_reason")
