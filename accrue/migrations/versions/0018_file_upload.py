"""File import (issue 13, F9): uploads from the concierge, queued for the pipelines.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30

* `file_upload`: one exported file an admin uploaded (object, name, size, SHA-256, mode
  snapshot|changes, the mapping confirmed for it, status draft|queued|importing|done|failed,
  counts and the first quarantined lines, who uploaded it and when).
* `file_upload_chunk`: its bytes, in 1 MiB pieces, in the warehouse: the one store the
  concierge and every pipeline worker share (their containers share no disk), written in
  the same transaction as the upload's row, so an upload is stored whole or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _ts(name: str, *, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _big_id(name: str, **kw: object) -> sa.Column:
    return sa.Column(name, sa.BigInteger().with_variant(sa.Integer(), "sqlite"), **kw)  # type: ignore[arg-type]


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenant.id"], name=op.f(f"fk_{table}_tenant_id_tenant"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "file_upload",
        _big_id("id", autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("object_name", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("member", sa.String(length=255), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=16), server_default="changes", nullable=False),
        sa.Column("header_signature", sa.String(length=64), nullable=False),
        sa.Column("mapping", _json(), nullable=True),
        sa.Column("proposal", _json(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("counts", _json(), nullable=True),
        sa.Column("errors", _json(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("uploaded_by", sa.Integer(), nullable=True),
        _ts("created_at", nullable=False),
        _ts("queued_at", nullable=True),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        _tenant_fk("file_upload"),
        sa.ForeignKeyConstraint(["uploaded_by"], ["app_user.id"],
                                name=op.f("fk_file_upload_uploaded_by_app_user"),
                                ondelete="SET NULL"),
        sa.CheckConstraint("status IN ('draft', 'queued', 'importing', 'done', 'failed')",
                           name=op.f("ck_file_upload_status")),
        sa.CheckConstraint("mode IN ('snapshot', 'changes')", name=op.f("ck_file_upload_mode")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file_upload")),
    )
    op.create_index("ix_file_upload_tenant_id_status", "file_upload", ["tenant_id", "status"])
    op.create_table(
        "file_upload_chunk",
        _big_id("upload_id", nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["upload_id"], ["file_upload.id"],
                                name=op.f("fk_file_upload_chunk_upload_id_file_upload"),
                                ondelete="CASCADE"),
        _tenant_fk("file_upload_chunk"),
        sa.PrimaryKeyConstraint("upload_id", "seq", name=op.f("pk_file_upload_chunk")),
    )
    op.create_index("ix_file_upload_chunk_tenant_id", "file_upload_chunk", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("file_upload_chunk")
    op.drop_table("file_upload")
