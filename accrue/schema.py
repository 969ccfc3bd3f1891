"""The warehouse schema (SQLAlchemy Core), for SQLite and PostgreSQL alike.

The `crm_*` tables are generated from `connectors.common_model`, so the model
stays the single list of CRM columns. Changing this module changes what the
code expects, not the database: every change needs an Alembic migration, and a
test compares the migrated database with this metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from connectors.common_model import COMMON_OBJECTS, ID_LENGTH, Column, table_name

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

TENANT_ID_LENGTH = 63
OBJECT_NAME_LENGTH = 64
CRM_TYPE_LENGTH = 32
KEY_ID_LENGTH = 32

TENANT_STATUSES: tuple[str, ...] = ("pending", "active", "paused", "deleted")
SYNC_FREQUENCIES_MINUTES: tuple[int, ...] = (5, 15, 30, 60, 360, 1440)
# "stopped": ended cleanly before the end (e.g. at the CRM's API quota): partial, resumable.
RUN_STATUSES: tuple[str, ...] = ("running", "succeeded", "failed", "stopped")
# Who has to act on a failed or stopped run (connectors.base.ConnectorError.kind).
ERROR_KINDS: tuple[str, ...] = ("credentials", "quota", "outage", "error")
# Who reads results: the admin sees the tenant, a manager their CRM team, a seller their deals.
APP_ROLES: tuple[str, ...] = ("admin", "manager", "seller")

# Columns every crm_* table carries besides the common model's own.
SYSTEM_COLUMNS: tuple[str, ...] = (
    "tenant_id",
    "source_id",
    "source_modified_at",
    "is_deleted",
    "deleted_at",
    "synced_at",
    "raw",
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """`timestamp with time zone` that always stores and returns aware UTC.

    SQLite has no time zone type: SQLAlchemy stores the wall-clock text and
    drops the offset. Normalising to UTC on the way in keeps stored values
    comparable as text (the upsert's "newer wins" test relies on it) and
    re-attaching UTC on the way out makes both backends return the same thing.
    Naive datetimes are refused because their zone is a guess.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime refused: pass a timezone-aware (UTC) value")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type() -> sa.types.TypeEngine[Any]:
    """JSON everywhere, JSONB on PostgreSQL (indexable, compact, de-duplicated keys).

    `none_as_null` so a missing document is SQL NULL, not the JSON literal `null`.
    """
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def _tenant_id(**kw: Any) -> sa.Column[str]:
    return sa.Column("tenant_id", sa.String(TENANT_ID_LENGTH), nullable=False, **kw)


def _created_updated() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", UtcDateTime(), nullable=False, default=utcnow),
        sa.Column("updated_at", UtcDateTime(), nullable=False, default=utcnow, onupdate=utcnow),
    ]


def _big_id() -> sa.Column[int]:
    """BIGINT key on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER."""
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def _in(column: str, values: tuple[Any, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


tenant = sa.Table(
    "tenant",
    metadata,
    sa.Column("id", sa.String(TENANT_ID_LENGTH), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("crm_type", sa.String(CRM_TYPE_LENGTH), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("sync_frequency_minutes", sa.Integer(), nullable=False),
    *_created_updated(),
    # The optional common objects the admin chose to import (connectors.common_model.
    # OPTIONAL_OBJECTS), as a JSON list: the sync reads no other optional object.
    sa.Column("optional_objects", json_type(), nullable=False, server_default="[]"),
    sa.CheckConstraint(_in("status", TENANT_STATUSES), name="status"),
    sa.CheckConstraint(_in("sync_frequency_minutes", SYNC_FREQUENCIES_MINUTES), name="frequency"),
)

crm_connection = sa.Table(
    "crm_connection",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    _tenant_id(),
    sa.Column("crm_type", sa.String(CRM_TYPE_LENGTH), nullable=False),
    sa.Column("config", json_type(), nullable=False),
    sa.Column("secret_ciphertext", sa.Text(), nullable=False),
    sa.Column("key_id", sa.String(KEY_ID_LENGTH), nullable=False),
    *_created_updated(),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sa.UniqueConstraint("tenant_id", "crm_type"),
)

sync_state = sa.Table(
    "sync_state",
    metadata,
    _tenant_id(primary_key=True),
    sa.Column("object_name", sa.String(OBJECT_NAME_LENGTH), primary_key=True),
    sa.Column("state", json_type(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

sync_run = sa.Table(
    "sync_run",
    metadata,
    _big_id(),  # one row per object per sync adds up
    _tenant_id(),
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
    sa.CheckConstraint(_in("status", RUN_STATUSES), name="status"),
    sa.CheckConstraint(_in("error_kind", ERROR_KINDS), name="error_kind"),  # NULL passes
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
    _big_id(),
    _tenant_id(),
    sa.Column("object_name", sa.String(OBJECT_NAME_LENGTH), nullable=False),
    sa.Column("source_id", sa.String(ID_LENGTH), nullable=False),
    sa.Column("source_modified_at", UtcDateTime(), nullable=False),
    sa.Column("is_deleted", sa.Boolean(), nullable=False),
    # The coerced common-model values; NULL while `raw_in_row` (then they are the row's).
    sa.Column("fields", json_type(), nullable=True),
    # NULL for id-only deletes, and while `raw_in_row`: the version's document and values
    # are the ones its record's crm_* row holds (the current version's), so they are
    # stored once; `apply` copies them here before a newer version replaces the row
    # (issue 15, accrue/warehouse/shared_history.py).
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
    _big_id(),
    _tenant_id(),
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
    _tenant_id(primary_key=True),
    sa.Column("object_name", sa.String(OBJECT_NAME_LENGTH), primary_key=True),
    sa.Column("live_rows", sa.BigInteger(), nullable=False),
    sa.Column("deleted_rows", sa.BigInteger(), nullable=False),
    sa.Column("last_modified_at", UtcDateTime(), nullable=True),
    sa.Column("last_synced_at", UtcDateTime(), nullable=True),
    sa.Column("computed_at", UtcDateTime(), nullable=False),
)



# -- analytics outputs (accrue.analytics.store is their one write path) ---------------------

OPPORTUNITY_KINDS: tuple[str, ...] = ("cross_sell", "upsell", "win_back", "stalled")
MONTH_LENGTH = 7  # 'YYYY-MM'


def _f(name: str, *, nullable: bool = True) -> sa.Column[float]:
    return sa.Column(name, sa.Float(53), nullable=nullable)


# One row per open opportunity: what to quote, why, and how sure we are (replaced per tenant).
price_recommendation = sa.Table(
    "price_recommendation",
    metadata,
    _tenant_id(primary_key=True),
    sa.Column("opportunity_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("computed_at", UtcDateTime(), nullable=False),
    sa.Column("method", sa.String(32), nullable=False),  # model | tenant_curve | segment band
    sa.Column("objective", sa.String(32), nullable=True),
    _f("list_total"),
    _f("current_price"),
    _f("current_discount"),
    _f("recommended_price"),  # the whole deal, to the cent
    _f("recommended_discount"),
    sa.Column("n_lines", sa.Integer(), nullable=True),
    _f("recommended_unit_price"),  # one-line deals only; see price_recommendation_line
    _f("win_probability_current"),
    _f("win_probability_recommended"),
    _f("expected_uplift"),
    _f("curve_a"),  # the win curve used: P(win | x) = 1/(1 + exp(a + b·x)), x = price ÷ list
    _f("curve_b"),
    sa.Column("band_segment", sa.String(255), nullable=True),
    _f("band_floor"),
    _f("band_target"),
    _f("band_start"),
    sa.Column("clamp", sa.String(64), nullable=True),
    sa.Column("clamp_reason", sa.Text(), nullable=True),  # the guardrail in words
    sa.Column("fallback_reason", sa.Text(), nullable=True),
    sa.Column("drivers", sa.Text(), nullable=True),
    sa.Column("comparables", sa.Text(), nullable=True),
    sa.Column("model_version", sa.String(64), nullable=False),
)

# The deal's recommendation split over its line items (replaced with the deals' rows):
# the line totals add up to the deal's recommended_price to the cent.
price_recommendation_line = sa.Table(
    "price_recommendation_line",
    metadata,
    _tenant_id(primary_key=True),
    sa.Column("opportunity_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("line_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("product_id", sa.String(ID_LENGTH), nullable=True),
    _f("quantity", nullable=False),
    _f("list_price"),  # per unit
    _f("list_total", nullable=False),  # quantity × list price
    _f("recommended_line_total", nullable=False),
    _f("recommended_unit_price"),
    _f("recommended_discount"),
    sa.Column("computed_at", UtcDateTime(), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "opportunity_id"],
                            ["price_recommendation.tenant_id",
                             "price_recommendation.opportunity_id"], ondelete="CASCADE"),
)

PRICE_MODEL_DECISIONS: tuple[str, ...] = ("curve", "bands")

# A tenant's fitted price model, stored so that every reader of the same training data
# reuses one fit (`accrue.analytics.model_io`); replaced when the data hash changes.
price_model = sa.Table(
    "price_model",
    metadata,
    _tenant_id(primary_key=True),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("fit_version", sa.String(32), nullable=False),
    sa.Column("data_hash", sa.String(64), nullable=False),
    sa.Column("fitted_at", UtcDateTime(), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),  # curve | bands, for the tenant
    sa.Column("decision_reason", sa.Text(), nullable=True),
    sa.Column("n_closed", sa.Integer(), nullable=False),
    sa.Column("n_won", sa.Integer(), nullable=False),
    sa.Column("n_lost", sa.Integer(), nullable=False),
    sa.Column("parameters", json_type(), nullable=False),
    sa.CheckConstraint(_in("decision", PRICE_MODEL_DECISIONS), name="decision"),
)

# Deal-specific revenue opportunities (replaced per tenant).
revenue_opportunity = sa.Table(
    "revenue_opportunity",
    metadata,
    _big_id(),
    _tenant_id(),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("account_id", sa.String(ID_LENGTH), nullable=True),
    sa.Column("opportunity_id", sa.String(ID_LENGTH), nullable=True),
    sa.Column("product_id", sa.String(ID_LENGTH), nullable=True),
    _f("expected_value", nullable=False),
    _f("score"),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("computed_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint(_in("kind", OPPORTUNITY_KINDS), name="kind"),
    sa.Index("ix_revenue_opportunity_tenant_id_kind", "tenant_id", "kind"),
)

# Per seller and month, next to the team (replaced per tenant and month).
seller_month_metric = sa.Table(
    "seller_month_metric",
    metadata,
    _tenant_id(primary_key=True),
    sa.Column("month", sa.String(MONTH_LENGTH), primary_key=True),
    sa.Column("seller_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("seller_name", sa.String(255), nullable=True),
    sa.Column("manager_id", sa.String(ID_LENGTH), nullable=True),
    sa.Column("deals_closed", sa.Integer(), nullable=False),
    sa.Column("won", sa.Integer(), nullable=False),
    _f("win_rate"),
    _f("win_rate_ci_low"),
    _f("win_rate_ci_high"),
    _f("win_rate_shrunk"),
    _f("team_win_rate"),
    _f("win_rate_percentile"),
    _f("revenue_won", nullable=False),
    _f("revenue_percentile"),
    _f("avg_deal_size"),
    _f("avg_discount"),
    _f("avg_discount_shrunk"),
    _f("team_avg_discount"),
    _f("cycle_days"),
    _f("open_pipeline", nullable=False),
    _f("quota"),
    _f("quota_attainment"),
    sa.Column("flag", sa.Text(), nullable=True),
    sa.Column("computed_at", UtcDateTime(), nullable=False),
)


# How far into crm_change_log an incremental analytics asset has read, per tenant. Written in
# the same transaction as the rows computed from those changes, so the rows and the mark
# never disagree (a crash recomputes, never skips).
analytics_watermark = sa.Table(
    "analytics_watermark",
    metadata,
    _tenant_id(primary_key=True),
    sa.Column("asset_name", sa.String(64), primary_key=True),
    sa.Column("change_log_id", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

# -- the concierge (onboarding_app): admins, their sessions, the wizard, the audit log ------

ONBOARDING_STEPS: tuple[str, ...] = ("welcome", "crm", "details", "review", "terms", "complete")
AUDIT_OUTCOMES: tuple[str, ...] = ("ok", "failed", "refused")

# An admin of one tenant. Passwords are argon2 hashes; e-mail addresses are stored lowercased.
app_user = sa.Table(
    "app_user",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    _tenant_id(),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("full_name", sa.String(200), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("last_login_at", UtcDateTime(), nullable=True),
    *_created_updated(),
    # What the person may see (onboarding_app.results.scope); sign-up makes admins.
    sa.Column("role", sa.String(16), nullable=False, server_default="admin"),
    # The CRM user this person is: a seller's own deals, a manager's team (NULL: admin).
    sa.Column("crm_user_id", sa.String(ID_LENGTH), nullable=True),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sa.UniqueConstraint("email"),
    sa.UniqueConstraint("tenant_id", "crm_user_id"),
    sa.CheckConstraint(_in("role", APP_ROLES), name="role"),
    sa.Index("ix_app_user_tenant_id", "tenant_id"),
)

# Server-side login sessions: the cookie holds a random token, this table its SHA-256,
# so logging out (deleting the row) really ends the session even if the cookie is replayed.
app_session = sa.Table(
    "app_session",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer(), nullable=False),
    _tenant_id(),
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
    _tenant_id(),
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

# Push API (issue 13, F8): a tenant's push client id and its signing secrets
# (accrue.push.credentials is the one write path). One row per secret, all of a tenant's rows
# sharing its client id; a secret is sealed like CRM credentials (AES-GCM bound to tenant and
# row). During a rotation the old and new rows are both live; `retired_at` ends the old one.
push_credential = sa.Table(
    "push_credential",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    _tenant_id(),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("secret_ciphertext", sa.Text(), nullable=False),
    sa.Column("key_id", sa.String(KEY_ID_LENGTH), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("retired_at", UtcDateTime(), nullable=True),  # NULL: verifies pushes
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sa.Index("ix_push_credential_client_id", "client_id"),
    sa.Index("ix_push_credential_tenant_id", "tenant_id"),
)

# Pushed batches, durable before the push is acknowledged (accrue.push.inbox is the one
# write path): the raw body as received, the non-secret headers, the time it arrived. A
# `webhook-id` is stored once per tenant (the unique key answers a replay); `processed_at`
# is set once every synced object's cursor has passed the batch (accrue.push.feed).
push_inbox = sa.Table(
    "push_inbox",
    metadata,
    _big_id(),
    _tenant_id(),
    sa.Column("webhook_id", sa.String(255), nullable=False),
    sa.Column("received_at", UtcDateTime(), nullable=False),
    sa.Column("headers", json_type(), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("record_count", sa.Integer(), nullable=False),
    sa.Column("processed_at", UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sa.UniqueConstraint("tenant_id", "webhook_id"),
    sa.Index("ix_push_inbox_tenant_id_processed_at", "tenant_id", "processed_at"),
)

# The schema of each pushed object (issue 13, F8; accrue.push.schema is the one write path):
# fixed by the object's first push (field names, JSON types, a sample value), its mapping of
# fields to common-model columns, and the drift later pushes showed (added, dropped or
# retyped fields), which changes the mapping only once the admin accepts it.
push_schema = sa.Table(
    "push_schema",
    metadata,
    _tenant_id(primary_key=True),
    sa.Column("object_name", sa.String(OBJECT_NAME_LENGTH), primary_key=True),
    sa.Column("fields", json_type(), nullable=False),  # {field: {type, sample, first_seen}}
    sa.Column("mapping", json_type(), nullable=False),  # {field: column or null}
    sa.Column("drift", json_type(), nullable=False),  # [{field, kind, first_seen, example}]
    sa.Column("accepted_at", UtcDateTime(), nullable=True),  # the admin's last acceptance
    *_created_updated(),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
)

# File import (issue 13, F9): the mapping an admin confirmed for an export of one header shape
# (accrue.file_import.proposal is the one write path), so the next file of that shape
# imports without questions. The import's own progress stays in sync_state.
file_import_mapping = sa.Table(
    "file_import_mapping",
    metadata,
    _tenant_id(primary_key=True),
    sa.Column("object_name", sa.String(OBJECT_NAME_LENGTH), primary_key=True),
    sa.Column("header_signature", sa.String(64), primary_key=True),
    sa.Column("headers", json_type(), nullable=False),
    sa.Column("mapping", json_type(), nullable=False),
    *_created_updated(),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
)

# File uploads (issue 13, F9): an export the admin uploaded in the concierge, queued for the
# pipelines' "file" feed (accrue.file_import.uploads is the one write path). The bytes are
# in the warehouse (file_upload_chunk), the one store the concierge and every pipeline
# worker share: a local disk is not shared between their containers.
UPLOAD_STATUSES: tuple[str, ...] = ("draft", "queued", "importing", "done", "failed")
UPLOAD_MODES: tuple[str, ...] = ("snapshot", "changes")
file_upload = sa.Table(
    "file_upload",
    metadata,
    _big_id(),
    _tenant_id(),
    sa.Column("object_name", sa.String(OBJECT_NAME_LENGTH), nullable=False),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("member", sa.String(255), nullable=True),  # the zip member imported
    sa.Column("size_bytes", sa.BigInteger(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False, server_default="changes"),
    sa.Column("header_signature", sa.String(64), nullable=False),  # file_import_mapping's key
    sa.Column("mapping", json_type(), nullable=True),  # as confirmed for this upload
    sa.Column("proposal", json_type(), nullable=False),  # what the admin was shown
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("counts", json_type(), nullable=True),
    sa.Column("errors", json_type(), nullable=True),  # the first rows quarantined: [line, why]
    sa.Column("error", sa.Text(), nullable=True),  # why the import failed
    sa.Column("uploaded_by", sa.Integer(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("queued_at", UtcDateTime(), nullable=True),
    sa.Column("started_at", UtcDateTime(), nullable=True),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["uploaded_by"], ["app_user.id"], ondelete="SET NULL"),
    sa.CheckConstraint(_in("status", UPLOAD_STATUSES), name="status"),
    sa.CheckConstraint(_in("mode", UPLOAD_MODES), name="mode"),
    sa.Index("ix_file_upload_tenant_id_status", "tenant_id", "status"),
)
file_upload_chunk = sa.Table(
    "file_upload_chunk",
    metadata,
    sa.Column("upload_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
              primary_key=True),
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
    _tenant_id(),
    sa.Column("data", sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(["upload_id"], ["file_upload.id"], ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sa.Index("ix_file_upload_chunk_tenant_id", "tenant_id"),
)

# The concierge's saved progress per tenant (U4/U5): the step to resume at and the
# non-secret answers. Secrets go to crm_connection (encrypted), never here.
onboarding_state = sa.Table(
    "onboarding_state",
    metadata,
    _tenant_id(primary_key=True),
    sa.Column("step", sa.String(16), nullable=False),
    sa.Column("data", json_type(), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=True),
    sa.Column("deferred_at", UtcDateTime(), nullable=True),
    sa.Column("terms_version", sa.String(32), nullable=True),
    sa.Column("terms_agreed_at", UtcDateTime(), nullable=True),
    sa.Column("terms_agreed_by", sa.Integer(), nullable=True),
    sa.Column("completed_at", UtcDateTime(), nullable=True),
    sa.Column("first_data_notified_at", UtcDateTime(), nullable=True),
    *_created_updated(),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sa.CheckConstraint(_in("step", ONBOARDING_STEPS), name="step"),
)

# Pending OAuth authorizations: `state` (hashed) is single-use and bound to the login
# session and tenant that started it; the PKCE verifier is sealed by accrue.crypto.
oauth_flow = sa.Table(
    "oauth_flow",
    metadata,
    sa.Column("state_hash", sa.String(64), primary_key=True),
    _tenant_id(),
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
    _big_id(),
    sa.Column("tenant_id", sa.String(TENANT_ID_LENGTH), nullable=True),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("detail", json_type(), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint(_in("outcome", AUDIT_OUTCOMES), name="outcome"),
    sa.Index("ix_audit_event_tenant_id_created_at", "tenant_id", "created_at"),
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
        _tenant_id(primary_key=True),
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
