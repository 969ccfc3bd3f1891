"""Single-use links sent by e-mail: what proves a person reads the address they typed.

Sign-up creates no account: it issues a link to the address, and the account exists
once the link is redeemed. The page after sign-up is the same whether or not the
address already has an account (that owner gets an "already registered" notice
instead), so sign-up reveals nothing about who uses Accrue (ASVS 2.1 / 3.x, issue 9).

The link carries a random token; `email_link` keeps only its SHA-256, like login
sessions, so a copy of the database redeems nothing. Redeeming deletes the row in the
same statement that reads it: a link works once, even when clicked twice at once.
Each address gets at most `MAX_PER_ADDRESS_PER_HOUR` mails from here, whatever the
caller's IP, so the form cannot be used to flood someone's inbox.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue.schema import email_link, utcnow
from onboarding_app.security import token_hash
from onboarding_app.store import normalise_email

SIGNUP = "signup"
SIGNUP_NOTICE = "signup_notice"  # "already registered": mailed, no link to redeem
INVITE = "invite"  # an admin invites a manager or seller of their tenant
PURPOSES = (SIGNUP, SIGNUP_NOTICE, INVITE)
SIGNUP_TTL = timedelta(hours=24)  # long enough for "I'll do it after lunch"
INVITE_TTL = timedelta(days=7)  # invitations wait for people back from a week away
MAX_PER_ADDRESS_PER_HOUR = 5  # a person retrying, not a flood


@dataclass(frozen=True)
class Link:
    purpose: str
    email: str
    payload: dict[str, Any]
    expires_at: datetime
    tenant_id: str | None = None


def may_send(engine: Engine, email: str) -> bool:
    """False once the address had its hourly share of mails (issued or notices)."""
    since = utcnow() - timedelta(hours=1)
    with engine.connect() as conn:
        sent = conn.execute(sa.select(sa.func.count()).select_from(email_link).where(
            email_link.c.email == normalise_email(email), email_link.c.created_at >= since,
        )).scalar_one()
    return int(sent) < MAX_PER_ADDRESS_PER_HOUR


def issue(engine: Engine, purpose: str, email: str, payload: dict[str, Any] | None = None,
          ttl: timedelta = SIGNUP_TTL, *, tenant_id: str | None = None) -> str:
    """Record a link and return its token (the only copy: it goes into the e-mail).

    `tenant_id` is set for links a tenant issues (invitations), so that the tenant's
    pages list its own links and nobody else's.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"unknown link purpose {purpose!r}")
    token = secrets.token_urlsafe(32)
    now = utcnow()
    with engine.begin() as conn:
        # Expired links: nothing can redeem them; a day's grace keeps the hourly cap honest.
        conn.execute(sa.delete(email_link).where(
            email_link.c.expires_at < now - timedelta(days=1)))
        conn.execute(sa.insert(email_link).values(
            token_hash=token_hash(token), purpose=purpose, email=normalise_email(email),
            tenant_id=tenant_id, payload=payload or {}, created_at=now, expires_at=now + ttl,
        ))
    return token


def peek(engine: Engine, token: str, purpose: str) -> Link | None:
    """The link behind `token` if it is valid for `purpose`, without using it up.

    For the confirmation page a GET shows: mail scanners that follow links must not
    redeem them.
    """
    with engine.connect() as conn:
        row = conn.execute(sa.select(email_link).where(
            email_link.c.token_hash == token_hash(token), email_link.c.purpose == purpose,
            email_link.c.expires_at > utcnow(),
        )).first()
    return None if row is None else _link(row)


def redeem(engine: Engine, token: str, purpose: str) -> Link | None:
    """Use the link up and return it; None when unknown, expired, used or for another purpose.

    Redeeming a sign-up link also retires the address's other sign-up links: one account
    per address, whichever link the person clicked.
    """
    now = utcnow()
    with engine.begin() as conn:
        row = conn.execute(sa.delete(email_link).where(
            email_link.c.token_hash == token_hash(token), email_link.c.purpose == purpose,
        ).returning(*email_link.c)).first()
        if row is None or row.expires_at <= now:
            return None
        conn.execute(sa.delete(email_link).where(
            email_link.c.email == row.email, email_link.c.purpose == purpose))
    return _link(row)


def _link(row: sa.Row[Any]) -> Link:
    return Link(purpose=row.purpose, email=row.email, payload=dict(row.payload or {}),
                expires_at=row.expires_at, tenant_id=row.tenant_id)
