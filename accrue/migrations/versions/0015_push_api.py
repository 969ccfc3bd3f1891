"""Push API (issue 13, F8): push credentials and the durable inbox of pushed batches.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30

* `push_credential`: a tenant's push client id and its Standard Webhooks signing secrets,
  one row per secret, sealed like CRM credentials (accrue.crypto, bound to tenant and row).
  Both rows of a rotation verify pushes until the old one is retired (`retired_at`).
* `push_inbox`: every accepted batch, committed before the push is acknowledged: the raw
  body, the non-secret headers, the time it arrived. `(tenant_id, webhook_id)` is unique,
  so a replayed delivery is answered with the first receipt and never stored twice;
  `processed_at` marks a batch applied to the crm_* tables (accrue.push.process).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _ts(name: str, *, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenant.id"], name=op.f(f"fk_{table}_tenant_id_tenant"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "push_credential",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("secret_ciphertext", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        _ts("created_at", nullable=False),
        _ts("retired_at", nullable=True),
        _tenant_fk("push_credential"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_credential")),
    )
    op.create_index("ix_push_credential_client_id", "push_credential", ["client_id"])
    op.create_index("ix_push_credential_tenant_id", "push_credential", ["tenant_id"])
    op.create_table(
        "push_inbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("webhook_id", sa.String(length=255), nullable=False),
        _ts("received_at", nullable=False),
        sa.Column("headers", _json(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        _ts("processed_at", nullable=True),
        _tenant_fk("push_inbox"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_inbox")),
        sa.UniqueConstraint("tenant_id", "webhook_id",
                            name=op.f("uq_push_inbox_tenant_id_webhook_id")),
    )
    op.create_index("ix_push_inbox_tenant_id_processed_at", "push_inbox",
                    ["tenant_id", "processed_at"])


def downgrade() -> None:
    op.drop_index("ix_push_inbox_tenant_id_processed_at", table_name="push_inbox")
    op.drop_table("push_inbox")
    op.drop_index("ix_push_credential_tenant_id", table_name="push_credential")
    op.drop_index("ix_push_credential_client_id", table_name="push_credential")
    op.drop_table("push_credential")
