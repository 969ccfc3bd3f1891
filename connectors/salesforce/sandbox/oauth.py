"""OAuth 2.0 web-server flow with PKCE, as a Salesforce org serves it.

Salesforce blocks the username-password flow in orgs created since Summer '23,
so connecting apps use the authorization-code flow: the browser is sent to
`/services/oauth2/authorize`, the user allows access on a consent page, the
org redirects back with a one-time `code`, and the app's server exchanges it
(with the PKCE `code_verifier`) at `/services/oauth2/token` for an access token
(a session id) and a refresh token. This module keeps the codes and refresh
tokens of one sandbox org and renders the consent page.

The sandbox has one user and no connected apps: any client id is accepted,
PKCE (S256) is required instead of a client secret, and the consent page acts
as the integration user, who is taken to be logged in to Salesforce already.
Codes and refresh tokens are stored as SHA-256 hashes only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

if TYPE_CHECKING:
    from .sandbox import SalesforceSandbox

CODE_LIFETIME_SECONDS = 15 * 60  # Salesforce's authorization codes last 15 minutes
SUPPORTED_SCOPES = ("api", "refresh_token", "offline_access", "id", "full", "web")
_TABLES = """
CREATE TABLE IF NOT EXISTS oauth_codes (
    code_hash TEXT PRIMARY KEY, client_id TEXT NOT NULL, redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL, scope TEXT NOT NULL, user_id TEXT NOT NULL,
    expires_at REAL NOT NULL, used_at REAL, refresh_hash TEXT);
CREATE TABLE IF NOT EXISTS oauth_refresh_tokens (
    token_hash TEXT PRIMARY KEY, client_id TEXT NOT NULL, user_id TEXT NOT NULL,
    scope TEXT NOT NULL, created_at REAL NOT NULL, revoked_at REAL);
"""


class OAuthError(Exception):
    """An error in Salesforce's OAuth JSON shape: `{"error", "error_description"}`."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def as_json(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass(frozen=True)
class AuthorizeRequest:
    """The validated query of an authorize call."""

    client_id: str
    redirect_uri: str
    state: str
    code_challenge: str
    scope: str


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _valid_redirect_uri(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.fragment


class OAuthServer:
    """Authorization codes and refresh tokens of one sandbox org."""

    def __init__(self, sandbox: SalesforceSandbox) -> None:
        self.sandbox = sandbox
        with sandbox.store.write() as conn:
            for statement in _TABLES.split(";"):
                if statement.strip():
                    conn.execute(statement)

    # -- authorize -----------------------------------------------------------

    def parse_authorize(self, args: dict[str, str]) -> AuthorizeRequest:
        """Validate an authorize query; errors before redirect_uri is trusted are not redirected."""
        client_id = args.get("client_id", "").strip()
        redirect_uri = args.get("redirect_uri", "").strip()
        if not client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if not _valid_redirect_uri(redirect_uri):
            raise OAuthError("redirect_uri_mismatch", "redirect_uri must match configuration")
        return AuthorizeRequest(
            client_id=client_id,
            redirect_uri=redirect_uri,
            state=args.get("state", ""),
            code_challenge=args.get("code_challenge", ""),
            scope=" ".join(args.get("scope", "api refresh_token").split()),
        )

    def check_authorize(self, request: AuthorizeRequest, args: dict[str, str]) -> None:
        """Errors that are sent back to the (now trusted) redirect_uri."""
        if args.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "response type not supported")
        if not request.code_challenge:
            raise OAuthError("invalid_request", "missing required code challenge")
        if args.get("code_challenge_method", "plain") != "S256":
            raise OAuthError("invalid_request", "code_challenge_method must be S256")
        unknown = [s for s in request.scope.split() if s not in SUPPORTED_SCOPES]
        if unknown:
            raise OAuthError("invalid_scope", f"the requested scope is not allowed: {unknown[0]}")

    def consent_token(self, request: AuthorizeRequest) -> str:
        """Binds the consent form to the request it shows (the sandbox's CSRF check)."""
        message = "|".join((request.client_id, request.redirect_uri, request.state,
                            request.code_challenge, request.scope))
        key = (self.sandbox.org_id + self.sandbox.security_token).encode()
        return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()

    def issue_code(self, request: AuthorizeRequest) -> str:
        code = "aPrx" + secrets.token_urlsafe(32)
        now = self.sandbox.now().timestamp()
        with self.sandbox.store.write() as conn:
            conn.execute(
                "INSERT INTO oauth_codes VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                (_hash(code), request.client_id, request.redirect_uri, request.code_challenge,
                 request.scope, self.sandbox.admin_user_id, now + CODE_LIFETIME_SECONDS),
            )
        return code

    # -- token ---------------------------------------------------------------

    def exchange_code(self, form: dict[str, str]) -> dict[str, str]:
        """authorization_code grant: a code is single-use, and a replay revokes its tokens."""
        code = form.get("code", "")
        verifier = form.get("code_verifier", "")
        now = self.sandbox.now().timestamp()
        with self.sandbox.store.write() as conn:
            row = conn.execute(
                "SELECT client_id, redirect_uri, code_challenge, scope, user_id, expires_at, "
                "used_at, refresh_hash FROM oauth_codes WHERE code_hash = ?", (_hash(code),)
            ).fetchone()
            if row is None:
                raise OAuthError("invalid_grant", "invalid authorization code")
            client_id, redirect_uri, challenge, scope, user_id, expires_at, used_at, rhash = row
            if used_at is not None:
                if rhash:
                    conn.execute("UPDATE oauth_refresh_tokens SET revoked_at = ? "
                                 "WHERE token_hash = ?", (now, rhash))
                replayed = True
            else:
                replayed = False
        if replayed:  # raised after the commit, so the revocation sticks
            raise OAuthError("invalid_grant", "authorization code already used")
        with self.sandbox.store.write() as conn:
            if expires_at <= now:
                raise OAuthError("invalid_grant", "expired authorization code")
            if form.get("client_id", "") != client_id:
                raise OAuthError("invalid_client_id", "client identifier invalid")
            if form.get("redirect_uri", "") != redirect_uri:
                raise OAuthError("redirect_uri_mismatch", "redirect_uri must match configuration")
            if not verifier or not hmac.compare_digest(s256(verifier), challenge):
                raise OAuthError("invalid_grant", "invalid code verifier")
            refresh = None
            if "refresh_token" in scope.split() or "offline_access" in scope.split():
                refresh = "5Aep" + secrets.token_urlsafe(48)
                conn.execute("INSERT INTO oauth_refresh_tokens VALUES (?, ?, ?, ?, ?, NULL)",
                             (_hash(refresh), client_id, user_id, scope, now))
            claimed = conn.execute(
                "UPDATE oauth_codes SET used_at = ?, refresh_hash = ? "
                "WHERE code_hash = ? AND used_at IS NULL",
                (now, _hash(refresh) if refresh else None, _hash(code)),
            ).rowcount
            if claimed != 1:  # a concurrent exchange won the race
                raise OAuthError("invalid_grant", "authorization code already used")
            sid = self._new_session(conn, user_id, now)
        tokens = {"access_token": sid, "scope": scope}
        if refresh:
            tokens["refresh_token"] = refresh
        return tokens

    def refresh(self, form: dict[str, str]) -> dict[str, str] | None:
        """refresh_token grant for tokens this server issued; None when it is not one of them."""
        token = form.get("refresh_token", "")
        now = self.sandbox.now().timestamp()
        with self.sandbox.store.write() as conn:
            row = conn.execute(
                "SELECT client_id, user_id, scope, revoked_at FROM oauth_refresh_tokens "
                "WHERE token_hash = ?", (_hash(token),)
            ).fetchone()
            if row is None:
                return None
            client_id, user_id, scope, revoked_at = row
            if revoked_at is not None:
                raise OAuthError("invalid_grant", "expired access/refresh token")
            if form.get("client_id") and form["client_id"] != client_id:
                raise OAuthError("invalid_client_id", "client identifier invalid")
            sid = self._new_session(conn, user_id, now)
        return {"access_token": sid, "scope": scope}

    def revoke(self, token: str) -> bool:
        now = self.sandbox.now().timestamp()
        with self.sandbox.store.write() as conn:
            return conn.execute(
                "UPDATE oauth_refresh_tokens SET revoked_at = ? WHERE token_hash = ? "
                "AND revoked_at IS NULL", (now, _hash(token))
            ).rowcount > 0

    def _new_session(self, conn: sqlite3.Connection, user_id: str, now: float) -> str:
        sid = f"{self.sandbox.org_id[:15]}!{secrets.token_urlsafe(72)}"
        self.sandbox.store.prune_sessions(conn, now - 86400)
        self.sandbox.store.add_session(conn, sid, user_id, now,
                                       self.sandbox.config.session_lifetime_seconds)
        return sid


def redirect_target(redirect_uri: str, params: dict[str, str]) -> str:
    separator = "&" if urlsplit(redirect_uri).query else "?"
    return f"{redirect_uri}{separator}{urlencode({k: v for k, v in params.items() if v})}"


def consent_page(server: OAuthServer, request: AuthorizeRequest, user_name: str,
                 username: str) -> str:
    """The 'Allow access?' page, in plain HTML with no external resources."""
    fields = {
        "response_type": "code", "client_id": request.client_id,
        "redirect_uri": request.redirect_uri, "state": request.state,
        "code_challenge": request.code_challenge, "code_challenge_method": "S256",
        "scope": request.scope, "consent_token": server.consent_token(request),
    }
    hidden = "\n".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items()
    )
    scopes = "".join(f"<li>{escape(_SCOPE_TEXT.get(s, s))}</li>" for s in request.scope.split())
    app_host = escape(urlsplit(request.redirect_uri).netloc)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Allow Access? | Salesforce sandbox</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,sans-serif;background:#f3f3f3;margin:0;color:#181818}}
main{{max-width:28rem;margin:4rem auto;background:#fff;border-radius:.5rem;padding:2rem;
box-shadow:0 2px 8px rgba(0,0,0,.12)}}
h1{{font-size:1.4rem;margin-top:0}} .who{{color:#444}}
.buttons{{display:flex;gap:.75rem;justify-content:flex-end;margin-top:1.5rem}}
button{{font:inherit;padding:.6rem 1.2rem;border-radius:.25rem;border:1px solid #747474;
background:#fff;cursor:pointer}} button.allow{{background:#0b5cab;color:#fff;border-color:#0b5cab}}
button:focus-visible{{outline:3px solid #1b96ff;outline-offset:2px}}
</style></head>
<body><main>
<h1>Allow Access?</h1>
<p class="who">Logged in to the Salesforce sandbox as <strong>{escape(user_name)}</strong>
({escape(username)}).</p>
<p><strong>{escape(request.client_id)}</strong> at <strong>{app_host}</strong> is asking to:</p>
<ul>{scopes}</ul>
<p>Do you want to allow access for {escape(username)}?</p>
<form method="post" action="/services/oauth2/authorize">
{hidden}
<div class="buttons">
<button type="submit" name="decision" value="deny">Deny</button>
<button type="submit" name="decision" value="allow" class="allow">Allow</button>
</div></form></main></body></html>"""


_SCOPE_TEXT = {
    "api": "Manage user data via APIs (api)",
    "refresh_token": "Perform requests at any time (refresh_token, offline_access)",
    "offline_access": "Perform requests at any time (refresh_token, offline_access)",
    "id": "Access the identity URL service (id, profile, email, address, phone)",
    "full": "Full access (full)",
    "web": "Manage user data via Web browsers (web)",
}
