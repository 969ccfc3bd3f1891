"""The tenant registry and the CRM credential vault (requirement S1).

Used by both the onboarding web app and the pipelines, so the rules live
here once: what a tenant id may look like, which sync frequencies exist, and
how credentials are sealed. Secrets are encrypted with associated data naming
the tenant and connection row, so a ciphertext copied to another row is
useless; they are only decrypted by `load_connection`, for the pipeline that
is about to use them, and never returned to the web app.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine, RowMapping
from sqlalchemy.exc import IntegrityError

from accrue import config as accrue_config
from accrue import crypto
from accrue.db import dialect_insert
from accrue.schema import (
    CRM_TYPE_LENGTH,
    SYNC_FREQUENCIES_MINUTES,
    TENANT_STATUSES,
    crm_connection,
    tenant,
    utcnow,
)
from connectors.common_model import COMMON_OBJECTS, OPTIONAL_OBJECTS

logger = logging.getLogger(__name__)

TENANT_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}$")
CRM_TYPE_PATTERN = re.compile(rf"^[a-z][a-z0-9_]{{1,{CRM_TYPE_LENGTH - 1}}}$")
NAME_MAX_LENGTH = 200

# Config keys that smell like credentials: they belong in `secrets`, which is
# encrypted, never in `config`, which is stored and shown in clear.
_SECRET_LOOKING_KEY = re.compile(
    r"pass(word|wd)?|secret|token|api_?key|private_?key|credential|session", re.I
)


class TenantError(ValueError):
    """Invalid tenant input; the message says what is accepted."""


class TenantExists(TenantError):
    """A tenant with this id is already registered."""


class TenantNotFound(LookupError):
    """No tenant with this id."""


class ConnectionNotFound(LookupError):
    """The tenant has no saved CRM credentials."""


class SandboxRefused(TenantError):
    """Production met a connection to a local CRM sandbox (only demos and tests use them)."""


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


class SecretDict(dict[str, Any]):
    """A plain dict of decrypted secrets whose printed form shows only the keys.

    Connectors index it like any dict; an accidental log line, f-string or
    traceback locals dump shows `SecretDict(keys=[...])` instead of values.
    """

    def __repr__(self) -> str:
        return f"SecretDict(keys={sorted(self)!r})"

    __str__ = __repr__


@dataclass(frozen=True)
class ConnectionInfo:
    """What may be shown about saved credentials: never the secrets themselves."""

    id: int
    tenant_id: str
    crm_type: str
    config: dict[str, Any]
    key_id: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Connection:
    """Decrypted credentials for one tenant's CRM; keep instances short-lived."""

    id: int
    tenant_id: str
    crm_type: str
    config: dict[str, Any]
    secrets: SecretDict = field(repr=False)  # str() falls back to this repr too
    key_id: str


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


def connection_aad(tenant_id: str, connection_id: int) -> str:
    """The associated data binding a sealed secret to its row."""
    return f"crm_connection|tenant={tenant_id}|connection={connection_id}"


def _check_config(config: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        raise TenantError("config must be a mapping of non-secret settings")
    suspicious = sorted(k for k in config if _SECRET_LOOKING_KEY.search(str(k)))
    if suspicious:
        raise TenantError(
            f"config keys {suspicious} look like credentials: pass them in `secrets`, "
            "which is encrypted (config is stored and displayed in clear)"
        )
    return dict(config)


def save_credentials(
    engine: Engine,
    tenant_id: str,
    crm_type: str,
    secrets: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    keyring: crypto.Keyring | None = None,
) -> int:
    """Store (or replace) a tenant's CRM credentials, sealed; returns the connection id.

    One transaction: the row is upserted first because the ciphertext must be
    bound to the row's id, then the sealed secret is written. Readers never see
    the intermediate placeholder.
    """
    validate_tenant_id(tenant_id)
    validate_crm_type(crm_type)
    if not isinstance(secrets, Mapping) or not secrets:
        raise TenantError("secrets must be a non-empty mapping")
    clean_config = _check_config(config)
    ring = keyring if keyring is not None else crypto.Keyring.from_env()
    require_tenant(engine, tenant_id)
    now = utcnow()
    insert = dialect_insert(engine.dialect)
    with engine.begin() as conn:
        stmt = insert(crm_connection).values(
            tenant_id=tenant_id,
            crm_type=crm_type,
            config=clean_config,
            secret_ciphertext="",
            key_id=ring.primary_kid,
            created_at=now,
            updated_at=now,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "crm_type"],
            set_={"config": stmt.excluded.config, "updated_at": stmt.excluded.updated_at},
        )
        conn.execute(stmt)
        connection_id = conn.execute(
            sa.select(crm_connection.c.id).where(
                crm_connection.c.tenant_id == tenant_id, crm_connection.c.crm_type == crm_type
            )
        ).scalar_one()
        token = crypto.encrypt_json(
            secrets, aad=connection_aad(tenant_id, connection_id), keyring=ring
        )
        conn.execute(
            sa.update(crm_connection)
            .where(crm_connection.c.id == connection_id, crm_connection.c.tenant_id == tenant_id)
            .values(secret_ciphertext=token, key_id=ring.primary_kid)
        )
    logger.info(
        "saved %s credentials for tenant %s (connection %s, key %s)",
        crm_type,
        tenant_id,
        connection_id,
        ring.primary_kid,
    )
    return cast(int, connection_id)


def _connection_row(engine: Engine, tenant_id: str, crm_type: str) -> RowMapping:
    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.select(crm_connection).where(
                    crm_connection.c.tenant_id == tenant_id, crm_connection.c.crm_type == crm_type
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise ConnectionNotFound(f"tenant {tenant_id!r} has no saved {crm_type} credentials")
    return row


def connection_info(engine: Engine, tenant_id: str) -> ConnectionInfo | None:
    """The tenant's saved connection without its secrets (for display); None if none saved."""
    current = require_tenant(engine, tenant_id)
    try:
        row = _connection_row(engine, tenant_id, current.crm_type)
    except ConnectionNotFound:
        return None
    return ConnectionInfo(
        id=row["id"],
        tenant_id=row["tenant_id"],
        crm_type=row["crm_type"],
        config=dict(row["config"]),
        key_id=row["key_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def load_connection(
    engine: Engine, tenant_id: str, *, keyring: crypto.Keyring | None = None
) -> Connection:
    """Decrypt the credentials of the tenant's CRM (the one named by `tenant.crm_type`)."""
    current = require_tenant(engine, tenant_id)
    row = _connection_row(engine, tenant_id, current.crm_type)
    if accrue_config.is_production() and dict(row["config"]).get("sandbox_url"):
        raise SandboxRefused(
            f"tenant {tenant_id!r} is connected to a CRM sandbox (sandbox_url); "
            f"{accrue_config.ENVIRONMENT_ENV}=production reaches real CRMs only: connect it again "
            "in the concierge"
        )
    try:
        secrets = crypto.decrypt_json(
            row["secret_ciphertext"],
            aad=connection_aad(tenant_id, row["id"]),
            keyring=keyring,
        )
    except crypto.DecryptionError as exc:
        raise crypto.DecryptionError(
            f"cannot decrypt the {current.crm_type} credentials of tenant {tenant_id!r}: {exc}",
            reason=exc.reason,
            kid=exc.kid,
        ) from None
    return Connection(
        id=row["id"],
        tenant_id=tenant_id,
        crm_type=row["crm_type"],
        config=dict(row["config"]),
        secrets=SecretDict(secrets),
        key_id=crypto.key_id(row["secret_ciphertext"]),
    )


def delete_connection(engine: Engine, tenant_id: str, crm_type: str | None = None) -> int:
    """Forget a tenant's credentials (all CRMs, or one); returns how many were removed.

    Never decrypts, so it also works when the key is gone: removing credentials
    that can no longer be read is exactly when it is needed.
    """
    validate_tenant_id(tenant_id)
    query = sa.delete(crm_connection).where(crm_connection.c.tenant_id == tenant_id)
    if crm_type is not None:
        query = query.where(crm_connection.c.crm_type == validate_crm_type(crm_type))
    with engine.begin() as conn:
        removed = conn.execute(query).rowcount
    logger.info("deleted %d credential record(s) of tenant %s", removed, tenant_id)
    return removed


def rotate_keys(
    engine: Engine, *, keyring: crypto.Keyring | None = None, tenant_id: str | None = None
) -> dict[str, int]:
    """Re-encrypt every saved credential under the primary key.

    Run after putting a new key first in ACCRUE_SECRET_KEYS; once `failed` is 0
    and nothing is left under an old key, that key can be removed. Each row is
    updated on its own and only if unchanged since it was read, so a concurrent
    `save_credentials` is never overwritten.
    """
    ring = keyring if keyring is not None else crypto.Keyring.from_env()
    query = sa.select(
        crm_connection.c.id, crm_connection.c.tenant_id, crm_connection.c.secret_ciphertext
    ).order_by(crm_connection.c.id)
    if tenant_id is not None:
        query = query.where(crm_connection.c.tenant_id == validate_tenant_id(tenant_id))
    with engine.connect() as conn:
        rows = conn.execute(query).all()

    counts = {"rotated": 0, "already_current": 0, "failed": 0}
    for connection_id, owner, token in rows:
        try:
            if not crypto.needs_rotation(token, ring):
                counts["already_current"] += 1
                continue
            new_token = crypto.rotate(token, aad=connection_aad(owner, connection_id), keyring=ring)
        except crypto.DecryptionError as exc:
            counts["failed"] += 1
            logger.warning(
                "cannot rotate credentials of tenant %s (connection %s): %s",
                owner,
                connection_id,
                exc,
            )
            continue
        with engine.begin() as conn:
            updated = conn.execute(
                sa.update(crm_connection)
                .where(
                    crm_connection.c.id == connection_id,
                    crm_connection.c.tenant_id == owner,
                    crm_connection.c.secret_ciphertext == token,
                )
                .values(secret_ciphertext=new_token, key_id=ring.primary_kid, updated_at=utcnow())
            ).rowcount
        # Not updated: re-saved meanwhile, hence already under the primary key.
        counts["rotated" if updated else "already_current"] += 1
    logger.info("key rotation to %s: %s", ring.primary_kid, counts)
    return counts
