"""Personal API tokens: their format, and the one module that writes `api_token`.

A token is `acr_` + 32 random base62 characters + a 6-character CRC32 checksum of them.
The prefix lets secret scanners (and our log filter, `accrue.crypto.redact`) find a leaked
token; the checksum lets the API refuse a mistyped or made-up token without a database
read. Like a login session, only the token's SHA-256 is stored: the value is shown once,
when it is created, and cannot be recovered.
"""

from __future__ import annotations

import re
import secrets
import string
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue.schema import api_token, app_user, utcnow
from onboarding_app.security import CurrentUser, token_hash

PREFIX = "acr_"
_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
_RANDOM_LENGTH = 32  # about 190 bits
_CHECK_LENGTH = 6  # 62**6 > 2**32: room for any CRC32
TOKEN_SHAPE = re.compile(rf"{PREFIX}[0-9A-Za-z]{{{_RANDOM_LENGTH + _CHECK_LENGTH}}}")
# A person's live tokens: a BI tool or two each, not an unbounded pile of credentials.
MAX_ACTIVE_TOKENS = 20
# Writing last_used_at on every call would make each read a write: once a minute is enough.
LAST_USED_GRANULARITY = timedelta(minutes=1)


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(_ALPHABET[digit])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _CHECK_LENGTH)


def new_token() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LENGTH))
    return PREFIX + body + _checksum(body)


def well_formed(token: str) -> bool:
    """The prefix, length, alphabet and checksum are right (says nothing about validity)."""
    if not TOKEN_SHAPE.fullmatch(token):
        return False
    body = token[len(PREFIX):len(PREFIX) + _RANDOM_LENGTH]
    return secrets.compare_digest(token[-_CHECK_LENGTH:], _checksum(body))


class Refusal(Enum):
    """Why a presented token does not authenticate (each has its own advice)."""

    MALFORMED = "malformed"
    UNKNOWN = "unknown"  # never issued, or its person's access was removed
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True)
class TokenUser:
    token_id: int
    user: CurrentUser


def authenticate(engine: Engine, token: str) -> TokenUser | Refusal:
    """The person a token acts for, read fresh (role and CRM user as they are now)."""
    if not well_formed(token):
        return Refusal.MALFORMED
    digest = token_hash(token)
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(api_token.c.id, api_token.c.expires_at, api_token.c.revoked_at,
                      api_token.c.last_used_at, app_user.c.id.label("user_id"),
                      app_user.c.tenant_id, app_user.c.email, app_user.c.full_name,
                      app_user.c.role, app_user.c.crm_user_id)
            .join(app_user, sa.and_(app_user.c.id == api_token.c.user_id,
                                    app_user.c.tenant_id == api_token.c.tenant_id))
            .where(api_token.c.token_hash == digest)
        ).first()
    if row is None:
        return Refusal.UNKNOWN
    now = utcnow()
    if row.revoked_at is not None:
        return Refusal.REVOKED
    if row.expires_at is not None and row.expires_at <= now:
        return Refusal.EXPIRED
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_GRANULARITY:
        with engine.begin() as conn:
            conn.execute(sa.update(api_token).where(api_token.c.id == row.id)
                         .values(last_used_at=now))
    user = CurrentUser(row.user_id, row.tenant_id, row.email, row.full_name, "", row.role,
                       row.crm_user_id)
    return TokenUser(row.id, user)


def active_count(engine: Engine, user_id: int) -> int:
    now = utcnow()
    with engine.connect() as conn:
        return int(conn.execute(
            sa.select(sa.func.count()).select_from(api_token).where(
                api_token.c.user_id == user_id, api_token.c.revoked_at.is_(None),
                sa.or_(api_token.c.expires_at.is_(None), api_token.c.expires_at > now))
        ).scalar_one())


def issue(engine: Engine, user: CurrentUser, name: str,
          expires_at: datetime | None) -> tuple[int, str]:
    """Store a new token for `user`; returns its id and its value (never stored)."""
    token = new_token()
    with engine.begin() as conn:
        token_id = conn.execute(sa.insert(api_token).values(
            token_hash=token_hash(token), user_id=user.id, tenant_id=user.tenant_id,
            name=name.strip()[:100], hint=token[-4:], created_at=utcnow(), expires_at=expires_at,
        ).returning(api_token.c.id)).scalar_one()
    return int(token_id), token


def revoke(engine: Engine, user: CurrentUser, token_id: int) -> dict[str, Any] | None:
    """Revoke one of the person's own live tokens; None if there is no such token of theirs."""
    mine = sa.and_(api_token.c.id == token_id, api_token.c.user_id == user.id,
                   api_token.c.tenant_id == user.tenant_id)
    with engine.begin() as conn:
        row = conn.execute(sa.select(api_token.c.id, api_token.c.name, api_token.c.revoked_at)
                           .where(mine)).first()
        if row is None:
            return None
        if row.revoked_at is None:
            conn.execute(sa.update(api_token).where(mine).values(revoked_at=utcnow()))
    return {"id": row.id, "name": row.name}


def listing(engine: Engine, user: CurrentUser) -> list[dict[str, Any]]:
    """The person's tokens, newest first, with their state (active, expired, revoked)."""
    now = utcnow()
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(api_token.c.id, api_token.c.name, api_token.c.hint,
                      api_token.c.created_at, api_token.c.expires_at,
                      api_token.c.last_used_at, api_token.c.revoked_at)
            .where(api_token.c.user_id == user.id, api_token.c.tenant_id == user.tenant_id)
            .order_by(api_token.c.created_at.desc(), api_token.c.id.desc())
        ).mappings().all()
    out = []
    for row in rows:
        item = dict(row)
        item["state"] = ("revoked" if row.revoked_at is not None else
                         "expired" if row.expires_at is not None and row.expires_at <= now
                         else "active")
        out.append(item)
    return out
