"""The concierge: admins, login sessions, onboarding progress, OAuth flows, audit log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

* `app_user`: a tenant's admins (argon2 password hashes, unique e-mail).
* `app_session`: server-side login sessions, so logout really ends one.
* `onboarding_state`: the wizard's saved step and non-secret answers (U4/U5),
  the terms version and time of agreement (U3), completion.
* `oauth_flow`: pending Salesforce authorizations (hashed single-use state,
  sealed PKCE verifier), bound to a session and tenant.
* `audit_event`: saves, tests, completion, key rotation; never secret values.

Written out in full rather than built from `accrue.schema`, like 0001 and 0002.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
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
        "app_user",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        _ts("last_login_at", nullable=True),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        _tenant_fk("app_user"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("email", name=op.f("uq_app_user_email")),
    )
    op.create_index("ix_app_user_tenant_id", "app_user", ["tenant_id"])
    op.create_table(
        "app_session",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        _ts("created_at", nullable=False),
        _ts("last_seen_at", nullable=False),
        _ts("expires_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_app_session_user_id_app_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_app_session")),
    )
    op.create_index("ix_app_session_user_id", "app_session", ["user_id"])
    op.create_table(
        "onboarding_state",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("data", _json(), nullable=False),
        _ts("started_at", nullable=True),
        _ts("deferred_at", nullable=True),
        sa.Column("terms_version", sa.String(length=32), nullable=True),
        _ts("terms_agreed_at", nullable=True),
        sa.Column("terms_agreed_by", sa.Integer(), nullable=True),
        _ts("completed_at", nullable=True),
        _ts("first_data_notified_at", nullable=True),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        _tenant_fk("onboarding_state"),
        sa.CheckConstraint(
            "step IN ('welcome', 'crm', 'details', 'review', 'terms', 'complete')",
            name=op.f("ck_onboarding_state_step"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_onboarding_state")),
    )
    op.create_table(
        "oauth_flow",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("verifier_ciphertext", sa.Text(), nullable=False),
        sa.Column("redirect_uri", sa.String(length=500), nullable=False),
        _ts("created_at", nullable=False),
        _ts("expires_at", nullable=False),
        _ts("used_at", nullable=True),
        _tenant_fk("oauth_flow"),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_oauth_flow")),
    )
    op.create_index("ix_oauth_flow_tenant_id", "oauth_flow", ["tenant_id"])
    op.create_table(
        "audit_event",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=63), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", _json(), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        _ts("created_at", nullable=False),
        sa.CheckConstraint(
            "outcome IN ('ok', 'failed', 'refused')", name=op.f("ck_audit_event_outcome")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    op.create_index(
        "ix_audit_event_tenant_id_created_at", "audit_event", ["tenant_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_audit_event_tenant_id_created_at", table_name="audit_event")
    op.drop_table("audit_event")
    op.drop_index("ix_oauth_flow_tenant_id", table_name="oauth_flow")
    op.drop_table("oauth_flow")
    op.drop_table("onboarding_state")
    op.drop_index("ix_app_session_user_id", table_name="app_session")
    op.drop_table("app_session")
    op.drop_index("ix_app_user_tenant_id", table_name="app_user")
    op.drop_table("app_user")
