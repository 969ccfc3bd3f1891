"""What every schema module shares: the one MetaData, column types and column helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

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


def tenant_id_column(**kw: Any) -> sa.Column[str]:
    """The tenant_id column every tenant's table carries."""
    return sa.Column("tenant_id", sa.String(TENANT_ID_LENGTH), nullable=False, **kw)


def timestamps() -> list[sa.Column[Any]]:
    """created_at and updated_at, set by SQLAlchemy."""
    return [
        sa.Column("created_at", UtcDateTime(), nullable=False, default=utcnow),
        sa.Column("updated_at", UtcDateTime(), nullable=False, default=utcnow, onupdate=utcnow),
    ]


def big_id() -> sa.Column[int]:
    """BIGINT key on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER."""
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def one_of(column: str, values: tuple[Any, ...]) -> str:
    """A CHECK constraint's text: `column` holds one of `values`."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


