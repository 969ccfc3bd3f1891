"""Passwords, login sessions, the current person and their role, safe redirects and links.

Login sessions live in the database (`app_session`); the signed Flask cookie
only carries a random token, so logging out deletes the session for good and
a replayed cookie is worthless. A new token (and a new CSRF token) is issued
at every login, which defeats session fixation.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import abort, current_app, g, redirect, request, session, url_for

from accrue.schema import app_session, app_user, utcnow
from onboarding_app import store
from onboarding_app.extensions import warehouse

F = TypeVar("F", bound=Callable[..., Any])
_hasher = PasswordHasher()
# Verified when the e-mail is unknown, so both failures cost the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
LOGIN_FAILED = "That e-mail and password do not match an account."


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Constant work whether or not the account exists (no user enumeration by timing)."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class CurrentUser:
    id: int
    tenant_id: str
    email: str
    full_name: str
    session_hash: str
    role: str = "admin"  # admin | manager | seller (accrue.schema.APP_ROLES)
    crm_user_id: str | None = None  # the CRM user this person is, for manager and seller

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def start_session(user_id: int, tenant_id: str) -> None:
    """Replace whatever session the browser had with a fresh one for this admin."""
    session.clear()
    token = secrets.token_urlsafe(32)
    now = utcnow()
    hours = int(current_app.config["SESSION_MAX_HOURS"])
    with warehouse.engine.begin() as conn:
        conn.execute(sa.insert(app_session).values(
            token_hash=token_hash(token), user_id=user_id, tenant_id=tenant_id,
            created_at=now, last_seen_at=now, expires_at=now + timedelta(hours=hours),
        ))
        store.record_login(conn, user_id, now)
    session["sid"] = token
    session.permanent = False


def end_session() -> None:
    """Delete the server-side session, then the cookie's content."""
    token = session.get("sid")
    if isinstance(token, str):
        with warehouse.engine.begin() as conn:
            conn.execute(
                sa.delete(app_session).where(app_session.c.token_hash == token_hash(token))
            )
    session.clear()


def end_all_sessions(user_id: int) -> int:
    """Delete every server-side session of the admin, this one included: log out on every
    device (ASVS 3.3.4), e.g. after a laptop was lost. How many there were."""
    with warehouse.engine.begin() as conn:
        ended = conn.execute(sa.delete(app_session).where(app_session.c.user_id == user_id))
    session.clear()
    return int(ended.rowcount or 0)


def delete_sessions(conn: sa.Connection, user_id: int, tenant_id: str) -> None:
    """End a removed person's sessions (app_session's one write path is this module)."""
    conn.execute(sa.delete(app_session).where(app_session.c.user_id == user_id,
                                              app_session.c.tenant_id == tenant_id))


def load_current_user() -> None:
    """Resolve the cookie's token to an admin, or None; slides the idle timeout."""
    g.user = None
    token = session.get("sid")
    if not isinstance(token, str):
        return
    digest = token_hash(token)
    now = utcnow()
    idle = timedelta(minutes=int(current_app.config["SESSION_IDLE_MINUTES"]))
    with warehouse.engine.connect() as conn:
        row = conn.execute(
            sa.select(app_session.c.last_seen_at, app_session.c.expires_at, app_user.c.id,
                      app_user.c.tenant_id, app_user.c.email, app_user.c.full_name,
                      app_user.c.role, app_user.c.crm_user_id)
            .join(app_user, app_user.c.id == app_session.c.user_id)
            .where(app_session.c.token_hash == digest)
        ).first()
    if row is None or row.expires_at <= now or row.last_seen_at + idle <= now:
        if row is not None:
            with warehouse.engine.begin() as conn:
                conn.execute(sa.delete(app_session).where(app_session.c.token_hash == digest))
        session.clear()
        return
    if now - row.last_seen_at > timedelta(minutes=1):
        with warehouse.engine.begin() as conn:
            conn.execute(sa.update(app_session).where(app_session.c.token_hash == digest)
                         .values(last_seen_at=now))
    g.user = CurrentUser(row.id, row.tenant_id, row.email, row.full_name, digest,
                         row.role, row.crm_user_id)


def current_user() -> CurrentUser:
    return cast(CurrentUser, g.user)


def login_required(view: F) -> F:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.get("user") is None:
            if request.method == "GET":
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            return redirect(url_for("auth.login"))
        return view(*args, **kwargs)

    return cast(F, wrapped)


def role_required(*roles: str) -> Callable[[F], F]:
    """Logged in and holding one of `roles`; anyone else logged in gets 403 (a page that
    exists but is not theirs), whoever is not logged in goes to the login page."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            user = g.get("user")
            if user is not None and user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return login_required(cast(F, wrapped))

    return decorate


# The integration (setup, status, settings, people) is the admin's.
admin_required = role_required("admin")
# Blueprints whose every page is the admin's: checked once for all of them before any
# view runs (`refuse_outside_role`), so a new view there cannot forget it.
ADMIN_BLUEPRINTS = frozenset({"onboarding", "status", "integration", "people"})


def refuse_outside_role() -> None:
    """403 for a logged-in manager or seller on an admin page (login is the views' check)."""
    user = g.get("user")
    if user is not None and not user.is_admin and request.blueprint in ADMIN_BLUEPRINTS:
        abort(403)


def safe_next(target: str | None) -> str | None:
    """A same-site path to redirect to, or None: the one check for every redirect target.

    Browsers drop tabs and newlines from URLs and read a backslash as a slash, so
    `/\t/evil.com` and `/\\evil.com` become `//evil.com`, another site: any control
    character or backslash is refused, and what remains must parse as a path with no
    scheme and no host.
    """
    if not target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target) or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or target.startswith("//"):
        return None
    return target


def external_url(endpoint: str, **values: Any) -> str:
    """An absolute URL for links that leave the browser (e-mails, OAuth redirect URIs).

    Built from ACCRUE_APP_PUBLIC_URL when set (production requires it), never from the
    request's Host header, which a client chooses.
    """
    base = current_app.config.get("PUBLIC_URL")
    if base:
        return str(base).rstrip("/") + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)
