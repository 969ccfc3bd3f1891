"""The CRM credential vault (requirement S1): the one write path of `crm_connection`.

Secrets are encrypted with associated data naming the tenant and connection row, so a
ciphertext copied to another row is useless; they are only decrypted by
`load_connection`, for the pipeline that is about to use them, and never returned to the
web app. Config keys that look like credentials are refused: config is stored in clear.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine, RowMapping

from accrue import config as accrue_config
from accrue import crypto
from accrue.db import dialect_insert
from accrue.schema import (
    crm_connection,
    utcnow,
)
from accrue.tenants.registry import (
    TenantError,
    require_tenant,
    validate_crm_type,
    validate_tenant_id,
)

logger = logging.getLogger(__name__)

# Config keys that smell like credentials: they belong in `secrets`, which is
# encrypted, never in `config`, which is stored and shown in clear.
_SECRET_LOOKING_KEY = re.compile(
    r"pass(word|wd)?|secret|token|api_?key|private_?key|credential|session", re.I
)



class ConnectionNotFound(LookupError):
    """The tenant has no saved CRM credentials."""


class SandboxRefused(TenantError):
    """Production met a connection to a local CRM sandbox (only demos and tests use them)."""



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
