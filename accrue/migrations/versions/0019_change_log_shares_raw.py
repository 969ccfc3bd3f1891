"""History without doubling the data (issue 15): a version's document is stored once.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30

Until now every version's full raw document was stored in `crm_change_log` and the
current one again in its crm_* row: 97 MB for 39,607 records. `crm_change_log.raw_in_row`
says a version's document is the one its record's row holds (then `raw` is NULL; for
versions written from now on `fields` too, so it becomes nullable: the values are the
row's columns); `apply` copies both into the log before a newer version replaces the row.
Readers fill a NULL `fields` from the row (accrue/warehouse/shared_history.py). The view
`crm_record_history` reads the document from the row for those versions, so `history`,
`as_of` and `changes_since` answer as before.

Existing data is converted: every logged version whose document equals its row's current
document is marked `raw_in_row` and its copy dropped (several may, when a record was
re-read unchanged; all of them are filled again from the row before it changes).
Downgrade fills every such version back from its row.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The common objects' tables at this revision (frozen: a later object needs its own migration).
OBJECT_TABLES = {
    "account": "crm_account",
    "contact": "crm_contact",
    "lead": "crm_lead",
    "opportunity": "crm_opportunity",
    "opportunity_line": "crm_opportunity_line",
    "product": "crm_product",
    "price_book_entry": "crm_price_book_entry",
    "user": "crm_user",
    "activity": "crm_activity",
}

_ROW_RAW = " ".join(
    f"WHEN '{name}' THEN (SELECT r.raw FROM {table} r "
    f"WHERE r.tenant_id = l.tenant_id AND r.source_id = l.source_id)"
    for name, table in OBJECT_TABLES.items()
)

# As in 0002, with `raw` read from the row for versions whose document is kept there.
RECORD_HISTORY_VIEW = f"""
CREATE VIEW crm_record_history AS
SELECT
    l.id,
    l.tenant_id,
    l.object_name,
    l.source_id,
    ROW_NUMBER() OVER w AS version,
    l.source_modified_at,
    l.source_modified_at AS valid_from,
    LEAD(l.source_modified_at) OVER w AS valid_to,
    l.is_deleted,
    l.fields,
    CASE WHEN l.raw_in_row THEN CASE l.object_name {_ROW_RAW} END ELSE l.raw END AS raw,
    l.synced_at,
    l.sync_run_id
FROM crm_change_log l
WINDOW w AS (
    PARTITION BY l.tenant_id, l.object_name, l.source_id
    ORDER BY l.source_modified_at, l.is_deleted
)
"""

def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS crm_record_history")
    with op.batch_alter_table("crm_change_log") as batch:
        batch.add_column(sa.Column("raw_in_row", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.alter_column("fields", existing_type=_json(), nullable=True)
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table in OBJECT_TABLES.items():
        # Same document: jsonb equality on PostgreSQL; on SQLite both copies are the text
        # one serializer wrote, so equal text.
        op.execute(
            f"UPDATE crm_change_log SET raw = NULL, raw_in_row = {'TRUE' if postgres else '1'} "
            f"WHERE object_name = '{name}' AND raw IS NOT NULL AND EXISTS ("
            f"SELECT 1 FROM {table} r WHERE r.tenant_id = crm_change_log.tenant_id "
            f"AND r.source_id = crm_change_log.source_id AND r.raw = crm_change_log.raw)"
        )
    op.execute(RECORD_HISTORY_VIEW)


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _fill_fields_from_rows() -> None:
    """Versions written since 0019 keep their values in the row: copy them back first."""
    from accrue.warehouse.shared_history import row_fields

    conn = op.get_bind()
    log = sa.table("crm_change_log", sa.column("id", sa.BigInteger()),
                   sa.column("tenant_id", sa.String()), sa.column("object_name", sa.String()),
                   sa.column("source_id", sa.String()), sa.column("fields", _json()))
    waiting = conn.execute(sa.select(log.c.id, log.c.tenant_id, log.c.object_name,
                                     log.c.source_id).where(log.c.fields.is_(None))).all()
    groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for row_id, tenant_id, object_name, source_id in waiting:
        groups.setdefault((tenant_id, object_name), []).append((row_id, source_id))
    for (tenant_id, object_name), rows in groups.items():
        found = row_fields(conn, tenant_id, object_name, {sid for _, sid in rows})
        for row_id, source_id in rows:
            conn.execute(sa.update(log).where(log.c.id == row_id)
                         .values(fields=found.get(source_id, {})))


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS crm_record_history")
    _fill_fields_from_rows()
    for name, table in OBJECT_TABLES.items():
        op.execute(
            f"UPDATE crm_change_log SET raw = (SELECT r.raw FROM {table} r "
            f"WHERE r.tenant_id = crm_change_log.tenant_id "
            f"AND r.source_id = crm_change_log.source_id) "
            f"WHERE object_name = '{name}' AND raw_in_row"
        )
    with op.batch_alter_table("crm_change_log") as batch:
        batch.drop_column("raw_in_row")
        batch.alter_column("fields", existing_type=_json(), nullable=False)
    # The view as 0002 created it (migration modules start with a digit: imported by name).
    op.execute(import_module("accrue.migrations.versions.0002_history_quarantine").RECORD_HISTORY_VIEW)
