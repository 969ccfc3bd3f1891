"""A CRM's OAuth 2.0 web-server flow with PKCE, from the app's side (endpoints, scopes
and token keys from the CRM's spec).

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
from connectors.spec import ConnectorSpec, OAuth2Flow
from onboarding_app.connection import crm
from onboarding_app.logs import get_logger
from onboarding_app.security import CurrentUser, token_hash

logger = get_logger(__name__)
STATE_LIFETIME = timedelta(minutes=10)


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


def flow(spec: ConnectorSpec) -> OAuth2Flow:
    method = next((m for m in spec.auth_methods if m.oauth is not None), None)
    if method is None or method.oauth is None:
        raise OAuthFlowError(f"{spec.name} has no browser sign-in.")
    return method.oauth


def client_id(spec: ConnectorSpec) -> str | None:
    """The connected app's id: configured, or the sandbox's stand-in when one is used."""
    clients = current_app.config.get("OAUTH_CLIENTS") or {}
    return (clients.get(spec.key) or {}).get("client_id") or (
        "accrue-concierge" if crm.sandbox_url(spec) else None)


def login_base(spec: ConnectorSpec, config: Mapping[str, Any]) -> str:
    """Where the browser signs in: the sandbox when configured, else the org's login host."""
    sandbox = crm.sandbox_url(spec)
    if sandbox:
        return sandbox
    host = config.get("login_host") or flow(spec).authorize_host or next(
        h for h in spec.allowed_hosts if "*" not in h)
    return f"https://{host}"


def begin(engine: Engine, user: CurrentUser, spec: ConnectorSpec, config: Mapping[str, Any],
          redirect_uri: str) -> str:
    """Record a pending authorization and return the URL to send the browser to."""
    cid = client_id(spec)
    oauth = flow(spec)
    if not cid:
        raise OAuthFlowError(f"OAuth is not configured: set {oauth.client_id_env}.")
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
        "code_challenge_method": "S256", "scope": " ".join(oauth.scopes),
    })
    return f"{login_base(spec, config)}{oauth.authorize_path}?{query}"


@dataclass(frozen=True)
class Tokens:
    secrets: dict[str, str]
    instance_host: str


def consume_state(engine: Engine, user: CurrentUser, state: str) -> tuple[str, str]:
    """(verifier, redirect_uri) for a state this session started; single use, 10 minutes."""
    if not state:
        raise OAuthFlowError("The CRM's answer had no state: start again.", "state")
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
                "This authorization is not valid here (it expired, was already "
                "used, or was started in another session). Please connect again.", "state")
        claimed = conn.execute(
            sa.update(oauth_flow)
            .where(oauth_flow.c.state_hash == state_hash, oauth_flow.c.used_at.is_(None))
            .values(used_at=now)
        ).rowcount
    if claimed != 1:
        raise OAuthFlowError("This authorization was already used.", "state")
    opened = crypto.decrypt_json(row["verifier_ciphertext"], aad=_aad(user.tenant_id, state_hash))
    return str(opened["verifier"]), str(row["redirect_uri"])


def exchange(spec: ConnectorSpec, config: Mapping[str, Any], code: str, verifier: str,
             redirect_uri: str) -> Tokens:
    """Trade the code (and the PKCE verifier) for tokens at the CRM's token endpoint."""
    if not code:
        raise OAuthFlowError(f"{spec.name} did not return an authorization code.")
    oauth = flow(spec)
    session = crm.make_session(spec)
    form = {
        "grant_type": "authorization_code", "code": code, "client_id": client_id(spec) or "",
        "redirect_uri": redirect_uri, "code_verifier": verifier,
    }
    secret = ((current_app.config.get("OAUTH_CLIENTS") or {}).get(spec.key) or {}).get(
        "client_secret")
    if secret:
        form["client_secret"] = secret
    host = config.get("login_host") or next(h for h in spec.allowed_hosts if "*" not in h)
    try:
        response = session.post(f"https://{host}{oauth.token_path}", data=form)
    except crm.HostNotAllowed as exc:
        raise OAuthFlowError(f"That address is not a {spec.name} address.") from exc
    except Exception as exc:  # noqa: BLE001 - network failures become a message
        logger.warning("token exchange failed: %s", type(exc).__name__)
        raise OAuthFlowError(f"{spec.name} could not be reached. Please try again.") from None
    finally:
        session.close()
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or "access_token" not in body:
        error = body.get("error", f"HTTP {response.status_code}") if isinstance(body, dict) else ""
        logger.info("token exchange refused: %s", error)
        raise OAuthFlowError(
            f"{spec.name} refused the authorization ({error}). Please try again.")
    instance_host = ""
    if oauth.instance_url_key:
        instance_host = urlsplit(str(body.get(oauth.instance_url_key, ""))).netloc
        if not crm.host_allowed(spec, instance_host):
            raise OAuthFlowError(f"{spec.name} returned an unexpected instance address.")
    tokens = {key: str(body[key]) for key in oauth.token_secret_keys if body.get(key)}
    return Tokens(tokens, instance_host)


def complete(engine: Engine, user: CurrentUser, spec: ConnectorSpec, config: Mapping[str, Any],
             args: Mapping[str, str]) -> Tokens:
    """A callback's three steps: its state (this session's, once), the CRM's answer (an
    `error` when access was not allowed), the code exchange. OAuthFlowError otherwise."""
    verifier, redirect_uri = consume_state(engine, user, args.get("state", ""))
    if args.get("error"):
        logger.info("authorization ended with %s", args.get("error", "")[:64])
        raise OAuthFlowError("Access was not allowed, so nothing changed." if args.get(
            "error") == "access_denied" else "The sign-in was not completed.", "denied")
    return exchange(spec, config, args.get("code", ""), verifier, redirect_uri)
