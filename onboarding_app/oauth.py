"""Salesforce OAuth 2.0 web-server flow with PKCE, from the app's side.

`begin` creates a single-use `state` bound to the admin's login session and
tenant, and a PKCE verifier kept server-side (sealed by accrue.crypto); only
their SHA-256 and S256 challenge leave the server. `finish` consumes the
state exactly once, then exchanges the code for tokens over the allowlisted
session. Tokens go straight into the credential vault.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.engine import Engine

from accrue import crypto
from accrue.schema import oauth_flow, utcnow
from onboarding_app import crm
from onboarding_app.security import CurrentUser, get_logger, token_hash

logger = get_logger(__name__)
STATE_LIFETIME = timedelta(minutes=10)
SCOPE = "api refresh_token"


class OAuthFlowError(Exception):
    """The callback cannot be trusted or the exchange failed; the message is for the admin.

    `reason` says which step failed: `state` (not this session's, expired or used),
    `denied` (the admin or the CRM ended the sign-in), `exchange` (the code was refused).
    """

    def __init__(self, message: str, reason: str = "exchange") -> None:
        super().__init__(message)
        self.reason = reason


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _aad(tenant_id: str, state_hash: str) -> str:
    return f"oauth_flow|tenant={tenant_id}|state={state_hash}"


def client_id() -> str | None:
    return current_app.config.get("SALESFORCE_CLIENT_ID") or (
        "accrue-concierge" if crm.sandbox_url() else None)


def authorize_base(details: dict[str, Any]) -> str:
    """The authorize endpoint: the sandbox when configured, else the org's login host."""
    sandbox = crm.sandbox_url()
    if sandbox:
        return f"{sandbox}/services/oauth2/authorize"
    return f"https://{crm.login_host(details)}/services/oauth2/authorize"


def begin(engine: Engine, user: CurrentUser, details: dict[str, Any], redirect_uri: str) -> str:
    """Record a pending authorization and return the URL to send the browser to."""
    cid = client_id()
    if not cid:
        raise OAuthFlowError("OAuth is not configured: set ACCRUE_SALESFORCE_CLIENT_ID.")
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    state_hash = token_hash(state)
    now = utcnow()
    sealed = crypto.encrypt_json({"verifier": verifier}, aad=_aad(user.tenant_id, state_hash))
    with engine.begin() as conn:
        conn.execute(sa.delete(oauth_flow).where(oauth_flow.c.expires_at < now))
        conn.execute(sa.insert(oauth_flow).values(
            state_hash=state_hash, tenant_id=user.tenant_id, user_id=user.id,
            session_hash=user.session_hash, verifier_ciphertext=sealed,
            redirect_uri=redirect_uri, created_at=now, expires_at=now + STATE_LIFETIME,
        ))
    query = urlencode({
        "response_type": "code", "client_id": cid, "redirect_uri": redirect_uri,
        "state": state, "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256", "scope": SCOPE,
    })
    return f"{authorize_base(details)}?{query}"


@dataclass(frozen=True)
class Tokens:
    secrets: dict[str, str]
    instance_host: str


def consume_state(engine: Engine, user: CurrentUser, state: str) -> tuple[str, str]:
    """(verifier, redirect_uri) for a state this session started; single use, 10 minutes."""
    if not state:
        raise OAuthFlowError("The Salesforce answer had no state: start again.", "state")
    state_hash = token_hash(state)
    now = utcnow()
    with engine.begin() as conn:
        row = conn.execute(sa.select(oauth_flow).where(
            oauth_flow.c.state_hash == state_hash,
            oauth_flow.c.tenant_id == user.tenant_id,
            oauth_flow.c.user_id == user.id,
            oauth_flow.c.session_hash == user.session_hash,
        )).mappings().first()
        if row is None or row["used_at"] is not None or row["expires_at"] <= now:
            raise OAuthFlowError(
                "This Salesforce authorization is not valid here (it expired, was already "
                "used, or was started in another session). Please connect again.", "state")
        claimed = conn.execute(
            sa.update(oauth_flow)
            .where(oauth_flow.c.state_hash == state_hash, oauth_flow.c.used_at.is_(None))
            .values(used_at=now)
        ).rowcount
    if claimed != 1:
        raise OAuthFlowError("This Salesforce authorization was already used.", "state")
    opened = crypto.decrypt_json(row["verifier_ciphertext"], aad=_aad(user.tenant_id, state_hash))
    return str(opened["verifier"]), str(row["redirect_uri"])


def exchange(details: dict[str, Any], code: str, verifier: str, redirect_uri: str) -> Tokens:
    """Trade the code (and the PKCE verifier) for tokens at the org's token endpoint."""
    if not code:
        raise OAuthFlowError("Salesforce did not return an authorization code.")
    session = crm.make_session()
    form = {
        "grant_type": "authorization_code", "code": code, "client_id": client_id() or "",
        "redirect_uri": redirect_uri, "code_verifier": verifier,
    }
    if current_app.config.get("SALESFORCE_CLIENT_SECRET"):
        form["client_secret"] = current_app.config["SALESFORCE_CLIENT_SECRET"]
    url = f"https://{crm.login_host(details)}/services/oauth2/token"
    try:
        response = session.post(url, data=form)
    except crm.HostNotAllowed as exc:
        raise OAuthFlowError("That address is not a Salesforce address.") from exc
    except Exception as exc:  # noqa: BLE001 - network failures become a message
        logger.warning("token exchange failed: %s", type(exc).__name__)
        raise OAuthFlowError("Salesforce could not be reached. Please try again.") from None
    finally:
        session.close()
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or "access_token" not in body:
        error = body.get("error", f"HTTP {response.status_code}") if isinstance(body, dict) else ""
        logger.info("token exchange refused: %s", error)
        raise OAuthFlowError(f"Salesforce refused the authorization ({error}). Please try again.")
    instance_url = str(body.get("instance_url", ""))
    host = urlsplit(instance_url).netloc
    if not crm.is_salesforce_host(host, sandbox=crm.sandbox_netloc()):
        raise OAuthFlowError("Salesforce returned an unexpected instance address.")
    tokens = {"access_token": str(body["access_token"]), "instance_url": instance_url}
    if body.get("refresh_token"):
        tokens["refresh_token"] = str(body["refresh_token"])
    return Tokens(tokens, host)


def complete(engine: Engine, user: CurrentUser, details: dict[str, Any],
             args: Mapping[str, str]) -> Tokens:
    """A callback's three steps: its state (this session's, once), the CRM's answer (an
    `error` when access was not allowed), the code exchange. OAuthFlowError otherwise."""
    verifier, redirect_uri = consume_state(engine, user, args.get("state", ""))
    if args.get("error"):
        logger.info("authorization ended with %s", args.get("error", "")[:64])
        raise OAuthFlowError("Access was not allowed, so nothing changed." if args.get(
            "error") == "access_denied" else "The sign-in was not completed.", "denied")
    return exchange(details, args.get("code", ""), verifier, redirect_uri)
