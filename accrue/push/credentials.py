"""Push credentials: a tenant's client id and its Standard Webhooks signing secrets.

The one module that reads or writes `push_credential`. Secrets (`whsec_` + base64 of 32
random bytes, the Standard Webhooks format) are generated here, returned once to be shown
to the admin, and stored sealed with accrue.crypto exactly like CRM credentials: AES-GCM
under the key ring's primary key, bound to the tenant and the row (`credential_aad`), so a
ciphertext copied to another row or tenant does not open. Rotation adds a secret and keeps
the old one valid until it is retired, so a sender can switch without a failed push.
"""

from __future__ import annotations

import base64
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue import crypto
from accrue.push import PUSH_CRM_TYPE
from accrue.schema import push_credential, tenant, utcnow
from accrue.tenants import require_tenant, validate_tenant_id

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
CLIENT_ID_PREFIX = "pc_"


class PushCredentialError(ValueError):
    """A credential operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class IssuedSecret:
    """What the admin is shown once: the client id and the new secret."""

    tenant_id: str
    client_id: str
    secret: str
    credential_id: int

    def __repr__(self) -> str:  # never print the secret by accident
        return f"IssuedSecret(tenant_id={self.tenant_id!r}, client_id={self.client_id!r})"


@dataclass(frozen=True)
class CredentialInfo:
    """A push secret without its value (for display)."""

    id: int
    client_id: str
    key_id: str
    created_at: datetime
    retired_at: datetime | None


def credential_aad(tenant_id: str, credential_id: int) -> str:
    """The associated data binding a sealed push secret to its row."""
    return f"push_credential:{tenant_id}:{credential_id}"


def _new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _client_id(engine: Engine, tenant_id: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(push_credential.c.client_id)
            .where(push_credential.c.tenant_id == tenant_id)
            .order_by(push_credential.c.id)
            .limit(1)
        ).scalar_one_or_none()


def list_credentials(engine: Engine, tenant_id: str) -> list[CredentialInfo]:
    """The tenant's push secrets, oldest first, without their values."""
    validate_tenant_id(tenant_id)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(push_credential.c.id, push_credential.c.client_id,
                      push_credential.c.key_id, push_credential.c.created_at,
                      push_credential.c.retired_at)
            .where(push_credential.c.tenant_id == tenant_id)
            .order_by(push_credential.c.id)
        ).all()
    return [CredentialInfo(*row) for row in rows]


def issue_secret(
    engine: Engine, tenant_id: str, *, keyring: crypto.Keyring | None = None
) -> IssuedSecret:
    """Create the tenant's first push secret, or a new one beside the live ones (rotation).

    The client id is made with the first secret and kept for every later one. The
    returned secret is the only copy in clear: show it once.
    """
    validate_tenant_id(tenant_id)
    require_tenant(engine, tenant_id)
    ring = keyring if keyring is not None else crypto.Keyring.from_env()
    client_id = _client_id(engine, tenant_id) or CLIENT_ID_PREFIX + secrets.token_hex(12)
    secret = _new_secret()
    with engine.begin() as conn:
        credential_id = conn.execute(
            sa.insert(push_credential)
            .values(tenant_id=tenant_id, client_id=client_id, secret_ciphertext="",
                    key_id=ring.primary_kid, created_at=utcnow())
            .returning(push_credential.c.id)
        ).scalar_one()
        token = crypto.encrypt_json({"secret": secret},
                                    aad=credential_aad(tenant_id, credential_id), keyring=ring)
        conn.execute(
            sa.update(push_credential)
            .where(push_credential.c.id == credential_id,
                   push_credential.c.tenant_id == tenant_id)
            .values(secret_ciphertext=token)
        )
    logger.info("issued push secret %s for tenant %s (client %s, key %s)",
                credential_id, tenant_id, client_id, ring.primary_kid)
    return IssuedSecret(tenant_id, client_id, secret, credential_id)


def retire_old_secrets(engine: Engine, tenant_id: str) -> int:
    """End a rotation: every live secret but the newest stops verifying pushes."""
    validate_tenant_id(tenant_id)
    live = [c for c in list_credentials(engine, tenant_id) if c.retired_at is None]
    if not live:
        raise PushCredentialError(f"tenant {tenant_id!r} has no live push secret")
    old = [c.id for c in live[:-1]]
    if not old:
        return 0
    with engine.begin() as conn:
        retired = conn.execute(
            sa.update(push_credential)
            .where(push_credential.c.tenant_id == tenant_id, push_credential.c.id.in_(old),
                   push_credential.c.retired_at.is_(None))
            .values(retired_at=utcnow())
        ).rowcount
    logger.info("retired %d old push secret(s) of tenant %s", retired, tenant_id)
    return retired


def live_secrets(
    engine: Engine, tenant_id: str, client_id: str, *, keyring: crypto.Keyring | None = None
) -> list[str]:
    """The secrets that verify a push from `client_id` to `tenant_id`, newest first.

    Empty when the tenant does not exist, is deleted, is not fed by the push API (now,
    e.g. its admin chose a CRM in the concierge: its secrets work again if it switches
    back), or the client id is not its own: the caller answers all of these alike. A
    secret that no longer opens (its key left the ring) is skipped and logged, never
    raised to the sender.
    """
    if not isinstance(client_id, str) or len(client_id) > 64:
        client_id = ""  # matches no row; still queried, so a refusal costs the same time
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(push_credential.c.id, push_credential.c.secret_ciphertext)
            .join(tenant, tenant.c.id == push_credential.c.tenant_id)
            .where(push_credential.c.tenant_id == tenant_id,
                   push_credential.c.client_id == client_id,
                   push_credential.c.retired_at.is_(None),
                   tenant.c.status != "deleted",
                   tenant.c.crm_type == PUSH_CRM_TYPE)
            .order_by(push_credential.c.id.desc())
        ).all()
    found: list[str] = []
    for credential_id, token in rows:
        try:
            document = crypto.decrypt_json(
                token, aad=credential_aad(tenant_id, credential_id), keyring=keyring)
        except crypto.DecryptionError as exc:
            logger.error("cannot open push secret %s of tenant %s: %s",
                         credential_id, tenant_id, exc)
            continue
        found.append(str(document["secret"]))
    return found
