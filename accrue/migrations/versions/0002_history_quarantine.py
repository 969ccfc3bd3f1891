"""Record history, quarantine, and richer sync-run outcomes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

* `crm_change_log` keeps every version of every record (F3), and the
  `crm_record_history` view gives each version its validity interval.
* `crm_quarantine` keeps records that cannot be stored faithfully, with the
  reason, instead of failing the page or altering them.
* `sync_run` gains the `stopped` status (a clean partial stop, e.g. at the API
  quota), `error_kind` (who has to act) and `records_quarantined`.

Written out in full rather than built from `accrue.schema`, like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_RUN_STATUSES = "status IN ('running', 'succeeded', 'failed')"
NEW_RUN_STATUSES = "status IN ('running', 'succeeded', 'failed', 'stopped')"
ERROR_KINDS = "error_kind IN ('credentials', 'quota', 'outage', 'error')"
OPEN_QUARANTINE = "resolved_at IS NULL AND source_id IS NOT NULL"

# Window functions and the WINDOW clause work alike on SQLite (3.28+) and PostgreSQL.
# Versions are ordered by (source_modified_at, is_deleted): a delete stamped at the
# same instant as an update is the later of the two.
RECORD_HISTORY_VIEW = """
CREATE VIEW crm_record_history AS
SELECT
    id,
    tenant_id,
    object_name,
    source_id,
    ROW_NUMBER() OVER w AS version,
    source_modified_at,
    source_modified_at AS valid_from,
    LEAD(source_modified_at) OVER w AS valid_to,
    is_deleted,
    fields,
    raw,
    synced_at,
    sync_run_id
FROM crm_change_log
WINDOW w AS (
    PARTITION BY tenant_id, object_name, source_id
    ORDER BY source_modified_at, is_deleted
)
"""


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _ts(name: str, *, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _big_id() -> sa.Column:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        autoincrement=True,
        nullable=False,
    )


def _sync_run_0001() -> sa.Table:
    """sync_run as revision 0001 left it: SQLite rebuilds the table from this, not reflection.

    Reflection would lose the named CHECK constraint that has to be replaced.
    """
    return sa.Table(
        "sync_run",
        sa.MetaData(),
        _big_id(),
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
        sa.CheckConstraint(OLD_RUN_STATUSES, name="ck_sync_run_status"),
        sa.PrimaryKeyConstraint("id", name="pk_sync_run"),
        sa.Index("ix_sync_run_tenant_id_started_at", "tenant_id", "started_at"),
        sa.Index("ix_sync_run_run_id", "run_id"),
    )


def _sync_run_0002() -> sa.Table:
    """sync_run as this revision leaves it (the starting point of the downgrade)."""
    table = _sync_run_0001()
    table.append_column(sa.Column("error_kind", sa.String(length=16), nullable=True))
    table.append_column(
        sa.Column("records_quarantined", sa.BigInteger(), server_default="0", nullable=False)
    )
    for constraint in list(table.constraints):
        if isinstance(constraint, sa.CheckConstraint):
            table.constraints.remove(constraint)
    table.append_constraint(sa.CheckConstraint(NEW_RUN_STATUSES, name="ck_sync_run_status"))
    table.append_constraint(sa.CheckConstraint(ERROR_KINDS, name="ck_sync_run_error_kind"))
    return table


def upgrade() -> None:
    op.create_table(
        "crm_change_log",
        _big_id(),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("object_name", sa.String(length=64), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        _ts("source_modified_at", nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False),
        sa.Column("fields", _json(), nullable=False),
        sa.Column("raw", _json(), nullable=True),
        _ts("synced_at", nullable=False),
        sa.Column("sync_run_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_change_log")),
        sa.UniqueConstraint(
            "tenant_id",
            "object_name",
            "source_id",
            "source_modified_at",
            "is_deleted",
            name=op.f("uq_crm_change_log_version"),
        ),
    )
    op.create_index(
        "ix_crm_change_log_tenant_id_object_name_synced_at",
        "crm_change_log",
        ["tenant_id", "object_name", "synced_at"],
    )

    op.create_table(
        "crm_quarantine",
        _big_id(),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("object_name", sa.String(length=64), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=True),
        _ts("source_modified_at", nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw_text", sa.Text(), nullable=False),
        _ts("first_seen_at", nullable=False),
        _ts("last_seen_at", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        _ts("resolved_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_quarantine")),
    )
    op.create_index(
        "ux_crm_quarantine_open_record",
        "crm_quarantine",
        ["tenant_id", "object_name", "source_id"],
        unique=True,
        sqlite_where=sa.text(OPEN_QUARANTINE),
        postgresql_where=sa.text(OPEN_QUARANTINE),
    )
    op.create_index(
        "ix_crm_quarantine_tenant_id_object_name_resolved_at",
        "crm_quarantine",
        ["tenant_id", "object_name", "resolved_at"],
    )

    # SQLite cannot alter a CHECK constraint: batch mode rebuilds the table (data kept);
    # PostgreSQL gets plain ALTER TABLE statements.
    with op.batch_alter_table("sync_run", copy_from=_sync_run_0001()) as batch:
        batch.add_column(sa.Column("error_kind", sa.String(length=16), nullable=True))
        batch.add_column(
            sa.Column("records_quarantined", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch.drop_constraint(op.f("ck_sync_run_status"), type_="check")
        batch.create_check_constraint(op.f("ck_sync_run_status"), NEW_RUN_STATUSES)
        batch.create_check_constraint(op.f("ck_sync_run_error_kind"), ERROR_KINDS)

    op.execute(RECORD_HISTORY_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS crm_record_history")
    # 0001 knows no `stopped`: such a run ended before completing, which 0001 calls failed.
    op.execute("UPDATE sync_run SET status = 'failed' WHERE status = 'stopped'")
    with op.batch_alter_table("sync_run", copy_from=_sync_run_0002()) as batch:
        batch.drop_constraint(op.f("ck_sync_run_error_kind"), type_="check")
        batch.drop_constraint(op.f("ck_sync_run_status"), type_="check")
        batch.create_check_constraint(op.f("ck_sync_run_status"), OLD_RUN_STATUSES)
        batch.drop_column("records_quarantined")
        batch.drop_column("error_kind")
    op.drop_index(
        "ix_crm_quarantine_tenant_id_object_name_resolved_at", table_name="crm_quarantine"
    )
    op.drop_index("ux_crm_quarantine_open_record", table_name="crm_quarantine")
    op.drop_table("crm_quarantine")
    op.drop_index("ix_crm_change_log_tenant_id_object_name_synced_at", table_name="crm_change_log")
    op.drop_table("crm_change_log")
