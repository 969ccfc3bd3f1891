"""The warehouse's tables: tenants and their credentials, the sync's state, runs and
schedule, the CRM data (one `crm_<object>` table per common object, generated from
`connectors.common_model`, so the model stays the single list of CRM columns), its
change log and quarantine, and the pipeline summary.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from accrue.schema.base import (
    CRM_TYPE_LENGTH,
    ERROR_KINDS,
    KEY_ID_LENGTH,
    OBJECT_NAME_LENGTH,
    RUN_STATUSES,
    SYNC_FREQUENCIES_MINUTES,
    SYSTEM_COLUMNS,
    TENANT_ID_LENGTH,
    TENANT_STATUSES,
    UtcDateTime,
    big_id,
    json_type,
    metadata,
    one_of,
    tenant_id_column,
    timestamps,
)
from connectors.common_model import COMMON_OBJECTS, ID_LENGTH, Column, table_name

tenant = sa.Table(
    "tenant",
    metadata,
    sa.Column("id", sa.String(TENANT_ID_LENGTH), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("crm_type", sa.String(CRM_TYPE_LENGTH), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("sync_frequency_minutes", sa.Integer(), nullable=False),
    *timestamps(),
    # The optional common objects the admin chose to import (connectors.common_model.
    # OPTIONAL_OBJECTS), as a JSON list: the sync reads no other optional object.
    sa.Column("optional_objects", json_type(), nullable=False, server_default="[]"),
    sa.CheckConstraint(one_of("status", TENANT_STATUSES), name="status"),
    sa.CheckConstraint(one_of("sync_frequency_minutes", SYNC_FREQUENCIES_MINUTES),
                       name="frequency"),
)

crm_connection = sa.Table(
    "crm_connection",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    tenant_id_column(),
    sa.Column("crm_type", sa.String(CRM_TYPE_LENGTH), nullable=False),
    sa.Column("config", json_type(), nullable=False),
    sa.Column("secret_ciphertext", sa.Text(), nullable=False),
    sa.Column("key_id", sa.String(KEY_ID_LENGTH), nullable=False),
    *timestamps(),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sa.UniqueConstraint("tenant_id", "crm_type"),
)

sync_state = sa.Table(
    "sync_state",
    metadata,
    tenant_id_column(primary_key=True),
    sa.Column("object_name", sa.String(OBJECT_NAME_LENGTH), primary_key=True),
    sa.Column("state", json_type(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

sync_run = sa.Table(
    "sync_run",
    metadata,
    big_id(),  # one row per object per sync adds up
    tenant_id_column(),
    sa.Column("object_name", sa.String(OBJECT_NAME_LENGTH), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("records_read", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("records_upserted", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("records_deleted", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("error_kind", sa.String(16), nullable=True),
    sa.Column("records_quarantined", sa.BigInteger(), nullable=False, server_default="0"),
    # Versions logged that were not logged before: what the sync brought that was new (a
    # lookback's re-read of a stored version logs nothing). NULL: recorded before 0021.
    sa.Column("versions_logged", sa.BigInteger(), nullable=True),
    sa.CheckConstraint(one_of("status", RUN_STATUSES), name="status"),
    sa.CheckConstraint(one_of("error_kind", ERROR_KINDS), name="error_kind"),  # NULL passes
    sa.Index("ix_sync_run_tenant_id_started_at", "tenant_id", "started_at"),
    sa.Index("ix_sync_run_run_id", "run_id"),
)


# The scheduler's memory per tenant (accrue.sync_schedule is its one write path): when the
# last full sync succeeded and when the last one ended, how many failed in a row, when a
# sync was last requested and when the last full id reconciliation ran. Due times are
# computed from it, so a failed tenant is retried with backoff, not after a full interval.
tenant_sync_schedule = sa.Table(
    "tenant_sync_schedule",
    metadata,
    sa.Column("tenant_id", sa.String(TENANT_ID_LENGTH), primary_key=True),
    sa.Column("last_requested_at", UtcDateTime(), nullable=True),
    sa.Column("last_success_at", UtcDateTime(), nullable=True),
    sa.Column("last_outcome_at", UtcDateTime(), nullable=True),
    sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_reconciled_at", UtcDateTime(), nullable=True),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    # The admin's "Sync now": pending while no sync was requested after it.
    sa.Column("admin_requested_at", UtcDateTime(), nullable=True),
)

# Every version of every record ever written (F3): the crm_* tables hold the
# current version only. A version is (source_id, source_modified_at, is_deleted),
# so a replayed or overlapping page never logs one twice (F2).
crm_change_log = sa.Table(
    "crm_change_log",
    metadata,
    big_id(),
    tenant_id_column(),
    sa.Column("object_name", sa.String(OBJECT_NAME_LENGTH), nullable=False),
    sa.Column("source_id", sa.String(ID_LENGTH), nullable=False),
    sa.Column("source_modified_at", UtcDateTime(), nullable=False),
    sa.Column("is_deleted", sa.Boolean(), nullable=False),
    # The coerced common-model values; NULL while `raw_in_row` (then they are the row's).
    sa.Column("fields", json_type(), nullable=True),
    # NULL for id-only deletes, and while `raw_in_row`: the version's document and values
    # are the ones its record's crm_* row holds (the current version's), so they are
    # stored once; `apply` copies them here before a newer version replaces the row
    # (issue 15, accrue/shared_history.py).
    sa.Column("raw", json_type(), nullable=True),
    sa.Column("synced_at", UtcDateTime(), nullable=False),
    sa.Column("sync_run_id", sa.BigInteger(), nullable=True),
    sa.Column("raw_in_row", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.UniqueConstraint(
        "tenant_id",
        "object_name",
        "source_id",
        "source_modified_at",
        "is_deleted",
        name="uq_crm_change_log_version",
    ),
    sa.Index(
        "ix_crm_change_log_tenant_id_object_name_synced_at", "tenant_id", "object_name", "synced_at"
    ),
)

# The rows of crm_quarantine still waiting: the predicate of its partial unique index.
OPEN_QUARANTINE = "resolved_at IS NULL AND source_id IS NOT NULL"

# Records that could not be stored faithfully, kept with the reason instead of
# failing the page or being altered. `raw_text` is ASCII JSON text, not JSON:
# PostgreSQL's JSONB refuses lone surrogates and NUL, which are often the reason.
crm_quarantine = sa.Table(
    "crm_quarantine",
    metadata,
    big_id(),
    tenant_id_column(),
    sa.Column("object_name", sa.String(OBJECT_NAME_LENGTH), nullable=False),
    sa.Column("source_id", sa.String(ID_LENGTH), nullable=True),
    sa.Column("source_modified_at", UtcDateTime(), nullable=True),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("raw_text", sa.Text(), nullable=False),
    sa.Column("first_seen_at", UtcDateTime(), nullable=False),
    sa.Column("last_seen_at", UtcDateTime(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("resolved_at", UtcDateTime(), nullable=True),
    # At most one open row per record: a newer bad version updates it.
    sa.Index(
        "ux_crm_quarantine_open_record",
        "tenant_id",
        "object_name",
        "source_id",
        unique=True,
        sqlite_where=sa.text(OPEN_QUARANTINE),
        postgresql_where=sa.text(OPEN_QUARANTINE),
    ),
    sa.Index(
        "ix_crm_quarantine_tenant_id_object_name_resolved_at",
        "tenant_id",
        "object_name",
        "resolved_at",
    ),
)

pipeline_summary = sa.Table(
    "pipeline_summary",
    metadata,
    tenant_id_column(primary_key=True),
    sa.Column("object_name", sa.String(OBJECT_NAME_LENGTH), primary_key=True),
    sa.Column("live_rows", sa.BigInteger(), nullable=False),
    sa.Column("deleted_rows", sa.BigInteger(), nullable=False),
    sa.Column("last_modified_at", UtcDateTime(), nullable=True),
    sa.Column("last_synced_at", UtcDateTime(), nullable=True),
    sa.Column("computed_at", UtcDateTime(), nullable=False),
)



# A view (created by migration 0002, not part of `metadata`): each change-log
# version with its validity interval, for point-in-time reads (F3).
RECORD_HISTORY_VIEW = "crm_record_history"
VIEW_NAMES: tuple[str, ...] = (RECORD_HISTORY_VIEW,)

record_history = sa.table(
    RECORD_HISTORY_VIEW,
    sa.column("id", sa.BigInteger()),
    sa.column("tenant_id", sa.String()),
    sa.column("object_name", sa.String()),
    sa.column("source_id", sa.String()),
    sa.column("version", sa.BigInteger()),
    sa.column("source_modified_at", UtcDateTime()),
    sa.column("valid_from", UtcDateTime()),
    sa.column("valid_to", UtcDateTime()),
    sa.column("is_deleted", sa.Boolean()),
    sa.column("fields", json_type()),
    sa.column("raw", json_type()),
    sa.column("synced_at", UtcDateTime()),
    sa.column("sync_run_id", sa.BigInteger()),
)


def change_log_raw(log: Any) -> sa.ColumnElement[Any]:
    """A change-log version's document, wherever it is kept (`raw_in_row`: in its row).

    The view `crm_record_history` (migration 0019) computes the same in SQL.
    """
    in_row = sa.case(
        *(
            (
                log.c.object_name == name,
                sa.select(table.c.raw)
                .where(table.c.tenant_id == log.c.tenant_id, table.c.source_id == log.c.source_id)
                .scalar_subquery(),
            )
            for name, table in OBJECT_TABLES.items()
        ),
    )
    return sa.case((log.c.raw_in_row, in_row), else_=log.c.raw).label("raw")


def column_type(column: Column) -> sa.types.TypeEngine[Any]:
    """The SQL type of a common-model column."""
    match column.type:
        case "str":
            return sa.String(column.length or 255)
        case "int":
            return sa.BigInteger()
        case "float":
            return sa.Float(53)
        case "bool":
            return sa.Boolean()
        case "datetime":
            return UtcDateTime()
        case "date":
            return sa.Date()
    raise ValueError(f"common-model column {column.name!r} has unsupported type {column.type!r}")


# Indexes beyond the key and the sync's, for what the results pages filter on: a seller's
# or a manager's deals by owner (without it, every page scanned all the tenant's deals;
# benchmarks/results_pages.py, migration 0010).
EXTRA_INDEXES: dict[str, tuple[tuple[str, ...], ...]] = {
    "opportunity": (("tenant_id", "owner_id"),),
    # A deal's last activity (revenue opportunities' stalled rule, migration 0012).
    "activity": (("tenant_id", "opportunity_id"),),
}


def _object_table(object_name: str, columns: tuple[Column, ...]) -> sa.Table:
    name = table_name(object_name)
    clashes = sorted({c.name for c in columns} & set(SYSTEM_COLUMNS))
    if clashes:
        raise ValueError(f"common object {object_name!r} redefines system columns {clashes}")
    return sa.Table(
        name,
        metadata,
        tenant_id_column(primary_key=True),
        sa.Column("source_id", sa.String(ID_LENGTH), primary_key=True),
        *(sa.Column(c.name, column_type(c), nullable=True) for c in columns),
        sa.Column("source_modified_at", UtcDateTime(), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("deleted_at", UtcDateTime(), nullable=True),
        sa.Column("synced_at", UtcDateTime(), nullable=False),
        sa.Column("raw", json_type(), nullable=True),
        sa.Index(f"ix_{name}_tenant_id_source_modified_at", "tenant_id", "source_modified_at"),
        *(sa.Index(f"ix_{name}_{'_'.join(index)}", *index)
          for index in EXTRA_INDEXES.get(object_name, ())),
    )


OBJECT_TABLES: dict[str, sa.Table] = {
    name: _object_table(name, columns) for name, columns in COMMON_OBJECTS.items()
}


def object_table(object_name: str) -> sa.Table:
    """The `crm_<object>` table; KeyError lists the valid names for a typo."""
    try:
        return OBJECT_TABLES[object_name]
    except (KeyError, TypeError):
        raise KeyError(
            f"unknown object {object_name!r}; valid objects: {', '.join(OBJECT_TABLES)}"
        ) from None


def model_columns(object_name: str) -> tuple[Column, ...]:
    """The common-model columns of an object (the non-system columns of its table)."""
    object_table(object_name)
    return COMMON_OBJECTS[object_name]


_OWNED_PREFIXES = ("crm_", "sync_", "pipeline_", "price_", "revenue_", "seller_")


def is_accrue_table(name: str) -> bool:
    """Whether a table belongs to this schema (so migrations leave other apps' tables alone).

    The warehouse may share a PostgreSQL database with Dagster's own storage;
    autogenerate must not propose dropping those. Views are created by hand in
    migrations (metadata cannot describe them), so they are not tables to compare.
    """
    if name in VIEW_NAMES:
        return False
    return name in metadata.tables or name == "tenant" or name.startswith(_OWNED_PREFIXES)


# Who writes each table declared here (docs/architecture.md, "Where each table is written";
# accrue_pipelines_tests/core/test_architecture.py holds the code to it). The warehouse's tables
# are written by its write path, the package accrue/warehouse.
WAREHOUSE = "accrue/warehouse"
WRITERS: dict[str, str] = {
    "tenant": "accrue/tenants/registry.py",
    "crm_connection": "accrue/tenants/vault.py",
    "tenant_sync_schedule": "accrue/sync_schedule.py",
    **{t.name: WAREHOUSE for t in (sync_state, sync_run, crm_change_log, crm_quarantine,
                                   pipeline_summary, *OBJECT_TABLES.values())},
}
