"""Data access for the concierge: admins, tenants at sign-up, and the saved wizard.

Every function takes the tenant id from the caller's login session, never
from the request, and filters on it: that is the whole of tenant isolation.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from accrue import onboarding_state as saved_progress
from accrue import tenants
from accrue.schema import ONBOARDING_STEPS, app_user, onboarding_state, utcnow
from connectors import registry

STEPS = ONBOARDING_STEPS


class EmailTaken(ValueError):
    """An account with this e-mail exists."""


@dataclass
class Wizard:
    """The saved concierge state of one tenant."""

    tenant_id: str
    step: str
    data: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    deferred_at: datetime | None = None
    terms_version: str | None = None
    terms_agreed_at: datetime | None = None
    completed_at: datetime | None = None
    first_data_notified_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def complete(self) -> bool:
        return self.completed_at is not None

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        return dict(value) if isinstance(value, dict) else {}


def slugify(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:40].strip("-")
    return slug if len(slug) >= 2 else "tenant"


def normalise_email(email: str) -> str:
    """How every e-mail address is stored and compared: trimmed, lowercased."""
    return email.strip().lower()


def create_account(
    engine: Engine, *, company: str, full_name: str, email: str, password_hash: str
) -> tuple[str, int]:
    """Register a pending tenant, its first admin and an empty wizard; (tenant id, user id)."""
    email = normalise_email(email)
    with engine.connect() as conn:
        if conn.execute(sa.select(app_user.c.id).where(app_user.c.email == email)).first():
            raise EmailTaken(email)
    base = slugify(company)
    for attempt in range(6):
        tenant_id = base if attempt == 0 else f"{base}-{secrets.token_hex(3)}"
        try:
            # The CRM is chosen in the wizard (Select CRM sets it); until then, the first.
            tenants.add_tenant(engine, tenant_id, company, registry.supported_crms()[0],
                               status="pending")
            break
        except tenants.TenantExists:
            continue
    else:  # pragma: no cover - six random collisions
        raise RuntimeError("could not allocate a tenant id")
    try:
        with engine.begin() as conn:
            user_id = add_user(conn, tenant_id=tenant_id, email=email,
                               full_name=full_name.strip(), password_hash=password_hash)
            saved_progress.start(conn, tenant_id)
    except IntegrityError:
        tenants.set_status(engine, tenant_id, "deleted")
        raise EmailTaken(email) from None
    return tenant_id, int(user_id)


def create_member(
    engine: Engine, *, tenant_id: str, email: str, full_name: str, password_hash: str,
    role: str, crm_user_id: str,
) -> int:
    """An invited manager or seller of an existing tenant, tied to their CRM user."""
    try:
        with engine.begin() as conn:
            user_id = add_user(conn, tenant_id=tenant_id, email=normalise_email(email),
                               full_name=full_name.strip(), password_hash=password_hash,
                               role=role, crm_user_id=crm_user_id)
    except IntegrityError:
        # The address has an account, or this CRM user has one already.
        raise EmailTaken(email) from None
    return int(user_id)


def add_user(conn: sa.Connection, **values: Any) -> int:
    """Insert one person (app_user's one write path, with `record_login` and
    `remove_member`) in the caller's transaction; their id."""
    now = utcnow()
    return int(conn.execute(sa.insert(app_user).values(**values, created_at=now, updated_at=now)
                            .returning(app_user.c.id)).scalar_one())


def record_login(conn: sa.Connection, user_id: int, now: datetime) -> None:
    conn.execute(sa.update(app_user).where(app_user.c.id == user_id)
                 .values(last_login_at=now, updated_at=now))


def members(engine: Engine, tenant_id: str) -> list[sa.Row[Any]]:
    """Everyone with an account in the tenant, admins first."""
    with engine.connect() as conn:
        return list(conn.execute(
            sa.select(app_user.c.id, app_user.c.email, app_user.c.full_name, app_user.c.role,
                      app_user.c.crm_user_id, app_user.c.last_login_at)
            .where(app_user.c.tenant_id == tenant_id)
            .order_by(app_user.c.role, app_user.c.full_name)))


def remove_member(engine: Engine, tenant_id: str, user_id: int) -> bool:
    """Delete a manager's or seller's account and its sessions; admins are not removed here."""
    from onboarding_app.security import delete_sessions  # it imports this module

    with engine.begin() as conn:
        delete_sessions(conn, user_id, tenant_id)
        removed = conn.execute(sa.delete(app_user).where(
            app_user.c.id == user_id, app_user.c.tenant_id == tenant_id,
            app_user.c.role != "admin")).rowcount
    return bool(removed)


def find_user(engine: Engine, email: str) -> sa.Row[Any] | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(app_user).where(app_user.c.email == normalise_email(email))
        ).first()


def load_wizard(engine: Engine, tenant_id: str) -> Wizard:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(onboarding_state).where(onboarding_state.c.tenant_id == tenant_id)
        ).mappings().first()
    if row is None:  # a tenant registered with `accrue tenant add` has no wizard yet
        with engine.begin() as conn:
            saved_progress.start(conn, tenant_id)
        return Wizard(tenant_id, "welcome")
    return Wizard(
        tenant_id=row["tenant_id"], step=row["step"], data=dict(row["data"] or {}),
        started_at=row["started_at"], deferred_at=row["deferred_at"],
        terms_version=row["terms_version"], terms_agreed_at=row["terms_agreed_at"],
        completed_at=row["completed_at"], first_data_notified_at=row["first_data_notified_at"],
        updated_at=row["updated_at"],
    )


def save_wizard(engine: Engine, tenant_id: str, **values: Any) -> None:
    """Update the saved state (step, data, timestamps) of the caller's tenant."""
    if "step" in values and values["step"] not in STEPS:
        raise ValueError(f"unknown step {values['step']!r}")
    with engine.begin() as conn:
        saved_progress.save(conn, tenant_id, **values)

