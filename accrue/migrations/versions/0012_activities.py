"""Activities (calls, e-mails, meetings, to-dos) and the tenant's choice to import them.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30

* `crm_activity`: the common `activity` object (connectors.common_model), like every
  crm_* table: tenant and CRM id as the key, the model's columns, sync bookkeeping, the
  raw record. `ix_crm_activity_tenant_id_opportunity_id` finds a deal's last activity
  (revenue opportunities' stalled rule).
* `tenant.optional_objects`: the optional objects the admin switched on (a JSON list).
  An existing tenant whose admin switched activities on in the wizard (saved in
  `onboarding_state.data`, read by nothing until now) gets `["activity"]`: the choice
  made is the one kept; every other tenant `[]`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _ts(name: str, *, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _str(name: str, length: int) -> sa.Column:
    return sa.Column(name, sa.String(length=length), nullable=True)


def upgrade() -> None:
    op.create_table(
        "crm_activity",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        _str("subject", 255),
        _str("activity_type", 40),
        _str("status", 80),
        _ts("activity_at"),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("is_closed", sa.Boolean(), nullable=True),
        sa.Column("duration_minutes", sa.Float(precision=53), nullable=True),
        _str("owner_id", 64),
        _str("account_id", 64),
        _str("opportunity_id", 64),
        _str("contact_id", 64),
        _str("lead_id", 64),
        _ts("source_created_at"),
        _ts("source_modified_at", nullable=False),
        sa.Column("is_deleted", sa.Boolean(), server_default=sa.false(), nullable=False),
        _ts("deleted_at"),
        _ts("synced_at", nullable=False),
        sa.Column("raw", _json(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "source_id", name=op.f("pk_crm_activity")),
    )
    op.create_index("ix_crm_activity_tenant_id_source_modified_at", "crm_activity",
                    ["tenant_id", "source_modified_at"])
    op.create_index("ix_crm_activity_tenant_id_opportunity_id", "crm_activity",
                    ["tenant_id", "opportunity_id"])
    with op.batch_alter_table("tenant") as batch:
        batch.add_column(sa.Column("optional_objects", _json(), nullable=False,
                                   server_default="[]"))
    _keep_the_wizards_choice()


def _keep_the_wizards_choice() -> None:
    state = sa.table("onboarding_state", sa.column("tenant_id", sa.String()),
                     sa.column("data", _json()))
    tenant = sa.table("tenant", sa.column("id", sa.String()),
                      sa.column("optional_objects", _json()))
    conn = op.get_bind()
    for tenant_id, data in conn.execute(sa.select(state.c.tenant_id, state.c.data)).all():
        review = (data or {}).get("review") if isinstance(data, dict) else None
        imports = review.get("imports") if isinstance(review, dict) else None
        if isinstance(imports, dict) and imports.get("activities") is True:
            conn.execute(sa.update(tenant).where(tenant.c.id == tenant_id)
                         .values(optional_objects=["activity"]))


def downgrade() -> None:
    with op.batch_alter_table("tenant") as batch:
        batch.drop_column("optional_objects")
    op.drop_index("ix_crm_activity_tenant_id_opportunity_id", table_name="crm_activity")
    op.drop_index("ix_crm_activity_tenant_id_source_modified_at", table_name="crm_activity")
    op.drop_table("crm_activity")
