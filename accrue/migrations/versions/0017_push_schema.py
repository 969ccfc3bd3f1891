"""Push API (issue 13, F8): the schema of each pushed object and its drift.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30

* `push_schema`: per tenant and object, the fields the first push fixed (JSON type, a
  sample value, first seen), their mapping to common-model columns, the drift later pushes
  showed (added, dropped, retyped fields) and when the admin last accepted the mapping.
  Written only by accrue.push.schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "push_schema",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("object_name", sa.String(length=64), nullable=False),
        sa.Column("fields", _json(), nullable=False),
        sa.Column("mapping", _json(), nullable=False),
        sa.Column("drift", _json(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_push_schema_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "object_name", name=op.f("pk_push_schema")),
    )


def downgrade() -> None:
    op.drop_table("push_schema")
