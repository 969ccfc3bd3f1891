"""Initial warehouse schema: tenants, credentials, sync bookkeeping and the crm_* tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Written out in full rather than built from `accrue.schema`, so that this
revision keeps describing the same database after the live schema moves on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CRM_OBJECTS = (
    "account",
    "contact",
    "lead",
    "opportunity",
    "opportunity_line",
    "product",
    "price_book_entry",
    "user",
)


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _ts(name: str, *, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _str(name: str, length: int) -> sa.Column:
    return sa.Column(name, sa.String(length=length), nullable=True)


def _id(name: str) -> sa.Column:
    return sa.Column(name, sa.String(length=64), nullable=True)


def _float(name: str) -> sa.Column:
    return sa.Column(name, sa.Float(precision=53), nullable=True)


def _bool(name: str) -> sa.Column:
    return sa.Column(name, sa.Boolean(), nullable=True)


def _crm_table(object_name: str, *columns: sa.Column) -> None:
    """One crm_* table: tenant and source keys, the object's columns, sync bookkeeping."""
    table = f"crm_{object_name}"
    op.create_table(
        table,
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        *columns,
        _ts("source_created_at", nullable=True),
        _ts("source_modified_at", nullable=False),
        sa.Column("is_deleted", sa.Boolean(), server_default=sa.false(), nullable=False),
        _ts("deleted_at", nullable=True),
        _ts("synced_at", nullable=False),
        sa.Column("raw", _json(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "source_id", name=op.f(f"pk_{table}")),
    )
    op.create_index(
        f"ix_{table}_tenant_id_source_modified_at", table, ["tenant_id", "source_modified_at"]
    )


def upgrade() -> None:
    op.create_table(
        "tenant",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("crm_type", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sync_frequency_minutes", sa.Integer(), nullable=False),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'active', 'paused', 'deleted')", name=op.f("ck_tenant_status")
        ),
        sa.CheckConstraint(
            "sync_frequency_minutes IN (5, 15, 30, 60, 360, 1440)",
            name=op.f("ck_tenant_frequency"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant")),
    )
    op.create_table(
        "crm_connection",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("crm_type", sa.String(length=32), nullable=False),
        sa.Column("config", _json(), nullable=False),
        sa.Column("secret_ciphertext", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_crm_connection_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_connection")),
        sa.UniqueConstraint(
            "tenant_id", "crm_type", name=op.f("uq_crm_connection_tenant_id_crm_type")
        ),
    )
    op.create_table(
        "sync_state",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("object_name", sa.String(length=64), nullable=False),
        sa.Column("state", _json(), nullable=False),
        _ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "object_name", name=op.f("pk_sync_state")),
    )
    op.create_table(
        "sync_run",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("object_name", sa.String(length=64), nullable=False),
        _ts("started_at", nullable=False),
        _ts("finished_at", nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("records_read", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("records_upserted", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("records_deleted", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed')", name=op.f("ck_sync_run_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_run")),
    )
    op.create_index("ix_sync_run_tenant_id_started_at", "sync_run", ["tenant_id", "started_at"])
    op.create_index("ix_sync_run_run_id", "sync_run", ["run_id"])
    op.create_table(
        "pipeline_summary",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("object_name", sa.String(length=64), nullable=False),
        sa.Column("live_rows", sa.BigInteger(), nullable=False),
        sa.Column("deleted_rows", sa.BigInteger(), nullable=False),
        _ts("last_modified_at", nullable=True),
        _ts("last_synced_at", nullable=True),
        _ts("computed_at", nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "object_name", name=op.f("pk_pipeline_summary")),
    )

    _crm_table(
        "account",
        _str("name", 255),
        _str("industry", 80),
        sa.Column("employee_count", sa.BigInteger(), nullable=True),
        _float("annual_revenue"),
        _str("billing_country", 80),
        _str("billing_state", 80),
        _str("website", 255),
        _str("account_type", 80),
        _id("owner_id"),
        _id("parent_id"),
    )
    _crm_table(
        "contact",
        _id("account_id"),
        _str("first_name", 80),
        _str("last_name", 80),
        _str("email", 255),
        _str("title", 128),
        _id("owner_id"),
    )
    _crm_table(
        "lead",
        _str("first_name", 80),
        _str("last_name", 80),
        _str("company", 255),
        _str("email", 255),
        _str("status", 80),
        _str("lead_source", 80),
        _str("industry", 80),
        _id("owner_id"),
        _bool("is_converted"),
        _id("converted_opportunity_id"),
    )
    _crm_table(
        "opportunity",
        _str("name", 255),
        _id("account_id"),
        _float("amount"),
        _str("stage", 80),
        _bool("is_closed"),
        _bool("is_won"),
        sa.Column("close_date", sa.Date(), nullable=True),
        _float("probability"),
        _str("opportunity_type", 80),
        _str("lead_source", 80),
        _id("owner_id"),
        _id("price_book_id"),
    )
    _crm_table(
        "opportunity_line",
        _id("opportunity_id"),
        _id("product_id"),
        _id("price_book_entry_id"),
        _float("quantity"),
        _float("unit_price"),
        _float("list_price"),
        _float("discount"),
        _float("total_price"),
    )
    _crm_table(
        "product",
        _str("name", 255),
        _str("product_code", 255),
        _str("family", 80),
        _bool("is_active"),
        _float("unit_cost"),
    )
    _crm_table(
        "price_book_entry",
        _id("price_book_id"),
        _id("product_id"),
        _float("unit_price"),
        _bool("is_active"),
        _str("currency", 3),
    )
    _crm_table(
        "user",
        _str("name", 255),
        _str("email", 255),
        _str("title", 128),
        _str("department", 80),
        _id("manager_id"),
        _bool("is_active"),
    )


def downgrade() -> None:
    for object_name in reversed(CRM_OBJECTS):
        table = f"crm_{object_name}"
        op.drop_index(f"ix_{table}_tenant_id_source_modified_at", table_name=table)
        op.drop_table(table)
    op.drop_table("pipeline_summary")
    op.drop_index("ix_sync_run_run_id", table_name="sync_run")
    op.drop_index("ix_sync_run_tenant_id_started_at", table_name="sync_run")
    op.drop_table("sync_run")
    op.drop_table("sync_state")
    op.drop_table("crm_connection")
    op.drop_table("tenant")
