"""Links sent by e-mail: sign-up is confirmed by a link before any account exists.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

* `email_link`: the SHA-256 of each single-use link token, its purpose, the address it
  went to, what it completes (`payload`) and when it expires. Sign-up answers the same
  whether or not the address has an account, so the page reveals nothing; the address's
  owner gets either the confirmation link or an "already registered" notice.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "email_link",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                  nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_email_link")),
    )
    op.create_index("ix_email_link_email_created_at", "email_link", ["email", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_email_link_email_created_at", table_name="email_link")
    op.drop_table("email_link")
