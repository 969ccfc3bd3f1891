"""The tenant registry: what a tenant id may look like, which CRMs, statuses and sync
frequencies exist, and the one write path of the `tenant` table. Used by both the
onboarding web app and the pipelines, so the rules live here once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from accrue.schema import (
    CRM_TYPE_LENGTH,
    SYNC_FREQUENCIES_MINUTES,
    TENANT_STATUSES,
    tenant,
    utcnow,
)
from connectors.common_model import COMMON_OBJECTS, OPTIONAL_OBJECTS

logger = logging.getLogger(__name__)

TENANT_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")
CRM_TYPE_PATTERN = re.compile(rf"^[a-z][a-z0-9_]{{1,{CRM_TYPE_LENGTH - 1}}}$")
NAME_MAX_LENGTH = 200


class TenantError(ValueError):
    """Invalid tenant input; the message says what is accepted."""


class TenantExists(TenantError):
    """A tenant with this id is already registered."""


class TenantNotFound(LookupError):
    """No tenant with this id."""


def validate_tenant_id(tenant_id: object) -> str:
    """Check a tenant slug; it appears in URLs, run tags and encryption bindings."""
    if not isinstance(tenant_id, str) or not TENANT_ID_PATTERN.match(tenant_id):
        raise TenantError(
            f"invalid tenant id {tenant_id!r}: use 2-63 characters, lowercase letters, digits, "
            "'-' or '_', starting with a letter or digit (e.g. 'acme-corp')"
        )
    return tenant_id


def validate_sync_frequency(minutes: object) -> int:
    """Only a few frequencies exist: each maps to a schedule the orchestrator knows."""
    if isinstance(minutes, bool) or minutes not in SYNC_FREQUENCIES_MINUTES:
        allowed = ", ".join(str(m) for m in SYNC_FREQUENCIES_MINUTES)
        raise TenantError(f"invalid sync frequency {minutes!r}: choose one of {allowed} (minutes)")
    return SYNC_FREQUENCIES_MINUTES[SYNC_FREQUENCIES_MINUTES.index(minutes)]


def validate_status(status: object) -> str:
    """Statuses drive scheduling (only `active` tenants sync), so typos must not pass."""
    if status not in TENANT_STATUSES:
        raise TenantError(f"invalid status {status!r}: choose one of {', '.join(TENANT_STATUSES)}")
    return str(status)


def offered_objects(crm_type: str) -> tuple[str, ...]:
    """The common objects a CRM offers (its spec says); every object for a CRM type no
    package registers (a tenant kept after its connector was retired)."""
    from connectors import registry  # spec modules only: cheap

    known = {spec.key: spec.objects for spec in registry.specs()}
    return known.get(crm_type, tuple(COMMON_OBJECTS))


def validate_crm_type(crm_type: object) -> str:
    """A CRM type names a connector; free text here would never match one."""
    if not isinstance(crm_type, str) or not CRM_TYPE_PATTERN.match(crm_type):
        raise TenantError(
            f"invalid CRM type {crm_type!r}: use a lowercase identifier such as 'salesforce'"
        )
    return crm_type


def validate_optional_objects(objects: object) -> tuple[str, ...]:
    """The optional objects a tenant may choose, in the common model's order, each once."""
    if isinstance(objects, str) or not isinstance(objects, list | tuple | set | frozenset):
        raise TenantError(f"optional objects must be a list of names, got {objects!r}")
    unknown = sorted(str(o) for o in objects if o not in OPTIONAL_OBJECTS)
    if unknown:
        raise TenantError(f"unknown optional objects {unknown}: choose from "
                          f"{', '.join(OPTIONAL_OBJECTS)}")
    return tuple(name for name in OPTIONAL_OBJECTS if name in objects)


def _validate_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TenantError("tenant name must be a non-empty string")
    cleaned = name.strip()
    if len(cleaned) > NAME_MAX_LENGTH:
        raise TenantError(f"tenant name is longer than {NAME_MAX_LENGTH} characters")
    return cleaned


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    crm_type: str
    status: str
    sync_frequency_minutes: int
    created_at: datetime
    updated_at: datetime
    optional_objects: tuple[str, ...] = ()  # the optional objects its admin switched on

    def syncs(self, object_name: str) -> bool:
        """Whether the tenant's syncs read this common object: one its CRM offers, and an
        optional one only if chosen."""
        if object_name not in offered_objects(self.crm_type):
            return False
        return object_name not in OPTIONAL_OBJECTS or object_name in self.optional_objects

    def synced_objects(self) -> list[str]:
        """The common objects its syncs read, in the common model's order."""
        return [name for name in COMMON_OBJECTS if self.syncs(name)]


def _tenant(row: RowMapping) -> Tenant:
    return Tenant(
        id=row["id"],
        name=row["name"],
        crm_type=row["crm_type"],
        status=row["status"],
        sync_frequency_minutes=row["sync_frequency_minutes"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        optional_objects=tuple(o for o in OPTIONAL_OBJECTS if o in (row["optional_objects"] or [])),
    )


def add_tenant(
    engine: Engine,
    tenant_id: str,
    name: str,
    crm_type: str,
    *,
    sync_frequency_minutes: int = 60,
    status: str = "active",
    optional_objects: tuple[str, ...] | list[str] = (),
) -> Tenant:
    """Register a tenant; every argument is validated before anything is written."""
    values = {
        "id": validate_tenant_id(tenant_id),
        "name": _validate_name(name),
        "crm_type": validate_crm_type(crm_type),
        "status": validate_status(status),
        "sync_frequency_minutes": validate_sync_frequency(sync_frequency_minutes),
        "optional_objects": list(validate_optional_objects(optional_objects)),
    }
    now = utcnow()
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(tenant).values(**values, created_at=now, updated_at=now))
    except IntegrityError:
        if _find_tenant(engine, tenant_id) is not None:
            raise TenantExists(f"tenant {tenant_id!r} already exists") from None
        raise
    logger.info("registered tenant %s (%s)", tenant_id, crm_type)
    return require_tenant(engine, tenant_id)


def _find_tenant(engine: Engine, tenant_id: str) -> Tenant | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(tenant).where(tenant.c.id == tenant_id)).mappings().first()
    return _tenant(row) if row is not None else None


def get_tenant(engine: Engine, tenant_id: str) -> Tenant | None:
    """The tenant, or None: "is it registered?" is a normal question (onboarding, demo seed)."""
    return _find_tenant(engine, validate_tenant_id(tenant_id))


def require_tenant(engine: Engine, tenant_id: str) -> Tenant:
    """The tenant, or TenantNotFound, for callers that cannot proceed without it."""
    found = get_tenant(engine, tenant_id)
    if found is None:
        raise TenantNotFound(f"no tenant {tenant_id!r}")
    return found


def list_tenants(engine: Engine, status: str | None = None) -> list[Tenant]:
    """All tenants ordered by id, or only those with `status` (e.g. "active" for scheduling)."""
    query = sa.select(tenant).order_by(tenant.c.id)
    if status is not None:
        query = query.where(tenant.c.status == validate_status(status))
    with engine.connect() as conn:
        return [_tenant(row) for row in conn.execute(query).mappings()]


def _update_tenant(engine: Engine, tenant_id: str, **values: Any) -> Tenant:
    validate_tenant_id(tenant_id)
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(tenant).where(tenant.c.id == tenant_id).values(**values, updated_at=utcnow())
        )
    if result.rowcount == 0:
        raise TenantNotFound(f"no tenant {tenant_id!r}")
    return require_tenant(engine, tenant_id)


def set_status(engine: Engine, tenant_id: str, status: str) -> Tenant:
    """Pause, resume or soft-delete a tenant (rows are kept: `deleted` only stops syncing)."""
    return _update_tenant(engine, tenant_id, status=validate_status(status))


def set_statuses(engine: Engine, tenant_ids: Sequence[str], status: str) -> int:
    """`set_status` for many tenants in one transaction (a benchmark activating thousands);
    how many rows changed."""
    status = validate_status(status)
    ids = [validate_tenant_id(tenant_id) for tenant_id in tenant_ids]
    changed = 0
    with engine.begin() as conn:
        for start in range(0, len(ids), 500):
            changed += conn.execute(
                sa.update(tenant).where(tenant.c.id.in_(ids[start:start + 500]))
                .values(status=status, updated_at=utcnow())).rowcount or 0
    return changed


def set_crm_type(engine: Engine, tenant_id: str, crm_type: str) -> Tenant:
    """Which CRM the tenant syncs from (chosen in the concierge before anything is stored)."""
    return _update_tenant(engine, tenant_id, crm_type=validate_crm_type(crm_type))


def set_sync_frequency(engine: Engine, tenant_id: str, minutes: int) -> Tenant:
    """Change how often the scheduler syncs the tenant (one of SYNC_FREQUENCIES_MINUTES)."""
    minutes = validate_sync_frequency(minutes)
    return _update_tenant(engine, tenant_id, sync_frequency_minutes=minutes)


def set_optional_objects(engine: Engine, tenant_id: str, objects: Any) -> Tenant:
    """Switch optional imports on or off; the next sync reads exactly these (data already
    synced stays, like a paused tenant's)."""
    chosen = validate_optional_objects(objects)
    return _update_tenant(engine, tenant_id, optional_objects=list(chosen))


