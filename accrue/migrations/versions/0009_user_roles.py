"""Roles for the people who read results: admin, manager, seller (issue 11).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

* `app_user.role`: what the person may see. Every existing account set up an
  integration, so it becomes `admin`.
* `app_user.crm_user_id`: the CRM user this account is (the `crm_user` row's
  `source_id`): a seller sees the deals this CRM user owns, a manager those of the
  CRM users reporting to them. NULL for admins who are not sellers themselves.
* `email_link.tenant_id`: the tenant that issued a link (invitations), so a tenant's
  page lists only its own pending invitations.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("app_user") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=False,
                                   server_default="admin"))
        batch.add_column(sa.Column("crm_user_id", sa.String(64), nullable=True))
        batch.create_check_constraint(op.f("ck_app_user_role"),
                                      "role IN ('admin', 'manager', 'seller')")
        batch.create_unique_constraint(op.f("uq_app_user_tenant_id_crm_user_id"),
                                       ["tenant_id", "crm_user_id"])
    with op.batch_alter_table("email_link") as batch:
        batch.add_column(sa.Column("tenant_id", sa.String(63), nullable=True))
        batch.create_index(op.f("ix_email_link_tenant_id_purpose"), ["tenant_id", "purpose"])


def downgrade() -> None:
    with op.batch_alter_table("email_link") as batch:
        batch.drop_index(op.f("ix_email_link_tenant_id_purpose"))
        batch.drop_column("tenant_id")
    with op.batch_alter_table("app_user") as batch:
        batch.drop_constraint(op.f("uq_app_user_tenant_id_crm_user_id"), type_="unique")
        batch.drop_constraint(op.f("ck_app_user_role"), type_="check")
        batch.drop_column("crm_user_id")
        batch.drop_column("role")
