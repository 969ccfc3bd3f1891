"""The warehouse schema (SQLAlchemy Core), for SQLite and PostgreSQL alike: one MetaData.

The tables are declared by owner in this package's modules: `warehouse` (tenants, the sync,
the CRM data), `analytics`, `concierge`, `push` and `file_import`, on the metadata of `base`.
This package is their one public face: import tables and constants from `accrue.schema`,
and the migrations (alembic env) take `accrue.schema.metadata`.

Changing a table changes what the code expects, not the database: every change needs an
Alembic migration, and a test compares the migrated database with this metadata. Each
module's `WRITERS` names the one module (or package) that writes each of its tables;
`writers()` collects them for the test that holds the code to it.
"""

from __future__ import annotations

from accrue.schema import analytics, concierge, file_import, push, warehouse
from accrue.schema.analytics import (
    MONTH_LENGTH,
    OPPORTUNITY_KINDS,
    PRICE_MODEL_DECISIONS,
    analytics_watermark,
    price_model,
    price_recommendation,
    price_recommendation_line,
    revenue_opportunity,
    seller_month_metric,
)
from accrue.schema.base import (
    APP_ROLES,
    CRM_TYPE_LENGTH,
    ERROR_KINDS,
    KEY_ID_LENGTH,
    NAMING_CONVENTION,
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
    utcnow,
)
from accrue.schema.concierge import (
    AUDIT_OUTCOMES,
    ONBOARDING_STEPS,
    api_token,
    app_session,
    app_user,
    audit_event,
    email_link,
    oauth_flow,
    onboarding_state,
)
from accrue.schema.file_import import (
    UPLOAD_MODES,
    UPLOAD_STATUSES,
    file_import_mapping,
    file_upload,
    file_upload_chunk,
)
from accrue.schema.push import (
    push_credential,
    push_inbox,
    push_schema,
)
from accrue.schema.warehouse import (
    EXTRA_INDEXES,
    OBJECT_TABLES,
    OPEN_QUARANTINE,
    RECORD_HISTORY_VIEW,
    VIEW_NAMES,
    WAREHOUSE,
    change_log_raw,
    column_type,
    crm_change_log,
    crm_connection,
    crm_quarantine,
    is_accrue_table,
    model_columns,
    object_table,
    pipeline_summary,
    record_history,
    sync_run,
    sync_state,
    tenant,
    tenant_sync_schedule,
)


def writers() -> dict[str, str]:
    """Every table of the metadata → the one path that may write it: a module, or a package
    written without `.py`."""
    owners = {**warehouse.WRITERS, **analytics.WRITERS, **concierge.WRITERS, **push.WRITERS,
              **file_import.WRITERS}
    missing = sorted(set(metadata.tables) - set(owners))
    if missing:
        raise LookupError(f"tables without a declared writer: {', '.join(missing)}")
    return dict(owners)


__all__ = [
    "APP_ROLES",
    "AUDIT_OUTCOMES",
    "CRM_TYPE_LENGTH",
    "ERROR_KINDS",
    "EXTRA_INDEXES",
    "KEY_ID_LENGTH",
    "MONTH_LENGTH",
    "NAMING_CONVENTION",
    "OBJECT_NAME_LENGTH",
    "OBJECT_TABLES",
    "ONBOARDING_STEPS",
    "OPEN_QUARANTINE",
    "OPPORTUNITY_KINDS",
    "PRICE_MODEL_DECISIONS",
    "RECORD_HISTORY_VIEW",
    "RUN_STATUSES",
    "SYNC_FREQUENCIES_MINUTES",
    "SYSTEM_COLUMNS",
    "TENANT_ID_LENGTH",
    "TENANT_STATUSES",
    "UPLOAD_MODES",
    "UPLOAD_STATUSES",
    "UtcDateTime",
    "VIEW_NAMES",
    "WAREHOUSE",
    "analytics_watermark",
    "api_token",
    "app_session",
    "app_user",
    "audit_event",
    "big_id",
    "change_log_raw",
    "column_type",
    "crm_change_log",
    "crm_connection",
    "crm_quarantine",
    "email_link",
    "file_import_mapping",
    "file_upload",
    "file_upload_chunk",
    "is_accrue_table",
    "json_type",
    "metadata",
    "model_columns",
    "oauth_flow",
    "object_table",
    "onboarding_state",
    "one_of",
    "pipeline_summary",
    "price_model",
    "price_recommendation",
    "price_recommendation_line",
    "push_credential",
    "push_inbox",
    "push_schema",
    "record_history",
    "revenue_opportunity",
    "seller_month_metric",
    "sync_run",
    "sync_state",
    "tenant",
    "tenant_id_column",
    "tenant_sync_schedule",
    "timestamps",
    "utcnow",
    "writers",
]
