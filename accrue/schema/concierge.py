"""The concierge's tables (onboarding_app): people, their sessions and API tokens, the
wizard's saved progress, OAuth flows, e-mailed links and the audit log."""

from __future__ import annotations

import sqlalchemy as sa

from accrue.schema.base import (
    APP_ROLES,
    TENANT_ID_LENGTH,
    UtcDateTime,
    big_id,
    json_type,
    metadata,
    one_of,
    tenant_id_column,
    timestamps,
)
from connectors.common_model import ID_LENGTH

ONBOARDING_STEPS: tuple[str, ...] = ("welcome", "crm", "details", "review", "terms", "complete")
AUDIT_OUTCOMES: tuple[str, ...] = ("ok", "failed", "refused")

# An admin of one tenant. Passwords are argon2 hashes; e-mail addresses are stored lowercased.
app_user = sa.Table(
    "app_user",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    tenant_id_column(),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("full_name", sa.String(200), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("last_login_at", UtcDateTime(), nullable=True),
    *timestamps(),
    # What the person may see (onboarding_app.results.scope); sign-up makes admins.
    sa.Column("role", sa.String(16), nullable=False, server_default="admin"),
    # The CRM user this person is: a seller's own deals, a manager's team (NULL: admin).
    sa.Column("crm_user_id", sa.String(ID_LENGTH), nullable=True),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sa.UniqueConstraint("email"),
    sa.UniqueConstraint("tenant_id", "crm_user_id"),
    sa.CheckConstraint(one_of("role", APP_ROLES), name="role"),
    sa.Index("ix_app_user_tenant_id", "tenant_id"),
)

# Server-side login sessions: the cookie holds a random token, this table its SHA-256,
# so logging out (deleting the row) really ends the session even if the cookie is replayed.
app_session = sa.Table(
    "app_session",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer(), nullable=False),
    tenant_id_column(),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("last_seen_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.ForeignKeyConstraint(["user_id"], ["app_user.id"], ondelete="CASCADE"),
    sa.Index("ix_app_session_user_id", "user_id"),
)

# Personal tokens for the read-only results API (onboarding_app.api.tokens is the one write
# path): like a session, only the token's SHA-256 is stored; `hint` is its last 4 characters,
# so a person tells their tokens apart. A revoked row is kept (the API says "revoked");
# deleting the person deletes their tokens.
api_token = sa.Table(
    "api_token",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("user_id", sa.Integer(), nullable=False),
    tenant_id_column(),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("hint", sa.String(8), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=True),  # NULL: until revoked
    sa.Column("last_used_at", UtcDateTime(), nullable=True),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(["user_id"], ["app_user.id"], ondelete="CASCADE"),
    sa.UniqueConstraint("token_hash"),
    sa.Index("ix_api_token_user_id", "user_id"),
)

# The concierge's saved progress per tenant (U4/U5): the step to resume at and the
# non-secret answers. Secrets go to crm_connection (encrypted), never here.
onboarding_state = sa.Table(
    "onboarding_state",
    metadata,
    tenant_id_column(primary_key=True),
    sa.Column("step", sa.String(16), nullable=False),
    sa.Column("data", json_type(), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=True),
    sa.Column("deferred_at", UtcDateTime(), nullable=True),
    sa.Column("terms_version", sa.String(32), nullable=True),
    sa.Column("terms_agreed_at", UtcDateTime(), nullable=True),
    sa.Column("terms_agreed_by", sa.Integer(), nullable=True),
    sa.Column("completed_at", UtcDateTime(), nullable=True),
    sa.Column("first_data_notified_at", UtcDateTime(), nullable=True),
    *timestamps(),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sa.CheckConstraint(one_of("step", ONBOARDING_STEPS), name="step"),
)

# Pending OAuth authorizations: `state` (hashed) is single-use and bound to the login
# session and tenant that started it; the PKCE verifier is sealed by accrue.crypto.
oauth_flow = sa.Table(
    "oauth_flow",
    metadata,
    sa.Column("state_hash", sa.String(64), primary_key=True),
    tenant_id_column(),
    sa.Column("user_id", sa.Integer(), nullable=False),
    sa.Column("session_hash", sa.String(64), nullable=False),
    sa.Column("verifier_ciphertext", sa.Text(), nullable=False),
    sa.Column("redirect_uri", sa.String(500), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Column("used_at", UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sa.Index("ix_oauth_flow_tenant_id", "tenant_id"),
)

# Links sent by e-mail (sign-up confirmation; later invitations): the link carries a random
# token, this table its SHA-256 and what the link does. Single-use: redeeming deletes the
# row. Rows of links never sent (an "already registered" notice) count toward the
# per-address mail cap. `payload` holds what the link completes (the sign-up's company,
# name and password hash), never a secret in clear.
email_link = sa.Table(
    "email_link",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("payload", json_type(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    # The tenant that issued the link (invitations); NULL for sign-up links.
    sa.Column("tenant_id", sa.String(TENANT_ID_LENGTH), nullable=True),
    sa.Index("ix_email_link_email_created_at", "email", "created_at"),
    sa.Index("ix_email_link_tenant_id_purpose", "tenant_id", "purpose"),
)

# Who did what, when, with what outcome; `detail` names fields, never their values.
# No foreign key: the trail outlives the tenant and user it mentions.
audit_event = sa.Table(
    "audit_event",
    metadata,
    big_id(),
    sa.Column("tenant_id", sa.String(TENANT_ID_LENGTH), nullable=True),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("detail", json_type(), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint(one_of("outcome", AUDIT_OUTCOMES), name="outcome"),
    sa.Index("ix_audit_event_tenant_id_created_at", "tenant_id", "created_at"),
)


# Who writes each table declared here (see accrue.schema.writers). The two tables the
# pipelines write too (the first-data e-mail marks the wizard's row and audits) are written
# by modules of the core that both call.
WRITERS: dict[str, str] = {
    "app_user": "onboarding_app/store.py",
    "app_session": "onboarding_app/security.py",
    "api_token": "onboarding_app/api/tokens.py",
    "onboarding_state": "accrue/onboarding_state.py",
    "oauth_flow": "onboarding_app/connection/oauth.py",
    "email_link": "onboarding_app/auth/email_links.py",
    "audit_event": "accrue/audit.py",
}
