"""File import (issue 13, F9): the column mappings remembered per tenant, object and file shape.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30

* `file_import_mapping`: the mapping an admin confirmed (or corrected) for a file of one
  header shape (`header_signature`, accrue.file_import.mapping.header_signature), so the
  next export of the same shape imports without questions. The import's progress stays in
  the object's sync_state, committed with each page.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "file_import_mapping",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("object_name", sa.String(length=64), nullable=False),
        sa.Column("header_signature", sa.String(length=64), nullable=False),
        sa.Column("headers", _json(), nullable=False),
        sa.Column("mapping", _json(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_file_import_mapping_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "object_name", "header_signature",
                                name=op.f("pk_file_import_mapping")),
    )


def downgrade() -> None:
    op.drop_table("file_import_mapping")
