"""Personal tokens for the read-only results API, and the index its pages need (issue 11).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

* `api_token`: one row per token a person created for their BI tools. Only the token's
  SHA-256 is stored (as for login sessions); `hint` is its last 4 characters, so the
  person can tell their tokens apart. A revoked token keeps its row (`revoked_at`) so the
  API can say why it is refused; deleting the person deletes their tokens.
* `ix_crm_opportunity_tenant_id_owner_id`: a seller's or a manager's deals are found by
  owner; without it each results page of theirs read every deal of the tenant
  (benchmarks/results_pages.py: a seller's deals page on PostgreSQL went from a scan of
  20,000 rows to an index search).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("hint", sa.String(length=8), nullable=False),
        _ts("created_at", nullable=False),
        _ts("expires_at", nullable=True),
        _ts("last_used_at", nullable=True),
        _ts("revoked_at", nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"], ondelete="CASCADE",
                                name=op.f("fk_api_token_user_id_app_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
    )
    op.create_index("ix_api_token_user_id", "api_token", ["user_id"])
    op.create_index("ix_crm_opportunity_tenant_id_owner_id", "crm_opportunity",
                    ["tenant_id", "owner_id"])


def downgrade() -> None:
    op.drop_index("ix_crm_opportunity_tenant_id_owner_id", table_name="crm_opportunity")
    op.drop_index("ix_api_token_user_id", table_name="api_token")
    op.drop_table("api_token")
