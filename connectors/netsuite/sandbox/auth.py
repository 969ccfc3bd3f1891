"""How the sandbox account signs callers in: TBA (OAuth 1.0a) and OAuth 2.0 M2M.

TBA signatures are checked with oauthlib's own server-side helpers against the URL
the client signed (`https://<account>.suitetalk.api.netsuite.com/...`), so a client
that signs the wrong host, realm or query is refused as NetSuite would refuse it. M2M
client assertions are JWTs verified with PyJWT against the certificate registered
for the integration (kid = certificate id). Like NetSuite, a refused caller only
learns INVALID_LOGIN; the reason goes to the Login Audit Trail (`store.login_audit`),
plus an OAuth problem word in `WWW-Authenticate` so a person has a hint.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from datetime import timedelta

import jwt
from oauthlib.common import Request
from oauthlib.oauth1.rfc5849 import signature

from .store import AccountStore

TIMESTAMP_TOLERANCE = timedelta(minutes=5)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# What NetSuite's token endpoint accepts ("The Request Token Structure"): no RS256.
JWT_ALGORITHMS = ("PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"


def account_host(account_id: str) -> str:
    """`123456_SB1` → `123456-sb1.suitetalk.api.netsuite.com` (the realm keeps its case)."""
    return f"{account_id.lower().replace('_', '-')}.suitetalk.api.netsuite.com"


class LoginRefused(Exception):
    """A refused login: `audit` is what the Login Audit Trail says, `problem` the OAuth word."""

    def __init__(self, audit: str, problem: str, status: int = 401,
                 oauth_error: str = "invalid_grant") -> None:
        super().__init__(audit)
        self.audit, self.problem, self.status = audit, problem, status
        self.oauth_error = oauth_error  # for the token endpoint


class Authenticator:
    def __init__(self, store: AccountStore, account_id: str, token_lifetime: int = 3600,
                 now: Callable[[], float] = time.time) -> None:
        self.store = store
        self.account_id = account_id
        self.token_lifetime = token_lifetime
        # Real time, not the account's data clock: tests move the data clock, while
        # signatures and tokens are checked against the clocks of the machines involved.
        self.now = now

    # -- TBA -------------------------------------------------------------------

    def verify_tba(self, method: str, path: str, query: str,
                   headers: Mapping[str, str]) -> None:
        header = {"Authorization": headers.get("Authorization", "")}
        try:
            params = dict(signature.collect_parameters(headers=header,
                                                       exclude_oauth_signature=False,
                                                       with_realm=True))
        except ValueError:
            raise LoginRefused("InvalidHeader", "parameter_absent") from None
        if params.get("realm") != self.account_id:
            raise LoginRefused("InvalidAccount", "parameter_rejected")
        if params.get("oauth_signature_method") != "HMAC-SHA256":
            raise LoginRefused("UnsupportedSignatureMethod", "signature_method_rejected")
        if self.store.meta("tba_enabled", "1") != "1":
            raise LoginRefused("FeatureDisabled", "permission_denied")
        consumer = self.store.fetchone(
            "SELECT consumer_secret, tba_enabled FROM ns_integration WHERE consumer_key = ?",
            (params.get("oauth_consumer_key", ""),))
        if consumer is None:
            raise LoginRefused("InvalidConsumerKey", "consumer_key_unknown")
        if not consumer[1]:
            raise LoginRefused("FeatureDisabled", "permission_denied")
        token = self.store.fetchone(
            "SELECT token_secret FROM ns_token WHERE token_id = ? AND consumer_key = ?",
            (params.get("oauth_token", ""), params["oauth_consumer_key"]))
        if token is None:
            raise LoginRefused("InvalidToken", "token_rejected")
        try:
            stamp = int(params.get("oauth_timestamp", ""))
        except ValueError:
            raise LoginRefused("InvalidTimestamp", "timestamp_refused") from None
        if abs(stamp - self.now()) > TIMESTAMP_TOLERANCE.total_seconds():
            raise LoginRefused("InvalidTimestamp", "timestamp_refused")
        uri = f"https://{account_host(self.account_id)}{path}" + (f"?{query}" if query else "")
        request = Request(uri, method.upper(), "", dict(headers))  # type: ignore[arg-type]
        vars(request).update(  # what oauthlib's own endpoints set before verifying
            params=signature.collect_parameters(uri_query=query, headers=header),
            signature=params.get("oauth_signature", ""))
        if not signature.verify_hmac_sha256(request, consumer[0], token[0]):
            raise LoginRefused("InvalidSignature", "signature_invalid")
        # A nonce counts once it came with a valid signature (no one burns another's nonce).
        if not self.store.use_nonce(f"{params['oauth_consumer_key']}:{params['oauth_nonce']}",
                                    TIMESTAMP_TOLERANCE, self.now()):
            raise LoginRefused("UsedNonce", "nonce_used")

    # -- OAuth 2.0 client credentials (M2M) --------------------------------------

    def issue_token(self, form: Mapping[str, str]) -> dict[str, str]:
        """The token endpoint: a client-credentials grant with a JWT client assertion."""
        if form.get("grant_type") != "client_credentials":
            raise LoginRefused("UnsupportedGrantType", "parameter_rejected", 400,
                               "unsupported_grant_type")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get(
                "client_assertion"):
            raise LoginRefused("InvalidRequest", "parameter_absent", 400, "invalid_request")
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise LoginRefused("InvalidJWT", "parameter_rejected", 400, "invalid_request") from None
        row = self.store.fetchone(
            "SELECT client_id, public_key_pem FROM ns_certificate WHERE certificate_id = ?",
            (str(header.get("kid", "")),))
        if row is None:
            raise LoginRefused("InvalidCertificateId", "consumer_key_unknown", 401,
                               "invalid_client")
        if header.get("alg") not in JWT_ALGORITHMS:
            raise LoginRefused("UnsupportedAlgorithm", "signature_method_rejected", 400,
                               "invalid_request")
        token_url = f"https://{account_host(self.account_id)}{TOKEN_PATH}"
        try:
            claims = jwt.decode(
                assertion, row[1], algorithms=[header["alg"]], audience=token_url,
                issuer=row[0], options={"require": ["exp", "iat", "iss", "aud"]},
                leeway=TIMESTAMP_TOLERANCE.total_seconds(),
            )
        except jwt.ExpiredSignatureError:
            raise LoginRefused("ExpiredJWT", "timestamp_refused", 400, "invalid_grant") from None
        except jwt.InvalidSignatureError:
            raise LoginRefused("InvalidSignature", "signature_invalid", 400,
                               "invalid_grant") from None
        except jwt.PyJWTError as exc:
            raise LoginRefused(f"InvalidJWT: {exc}", "parameter_rejected", 400,
                               "invalid_grant") from None
        if claims["exp"] - claims["iat"] > 3600:
            raise LoginRefused("InvalidJWT: exp more than 60 minutes after iat",
                               "parameter_rejected", 400, "invalid_grant")
        scope = claims.get("scope", [])
        scopes = ([s.strip() for s in scope.replace(",", " ").split()]
                  if isinstance(scope, str) else list(scope))  # "a, b" or ["a", "b"]
        if "rest_webservices" not in scopes:
            raise LoginRefused("InvalidScope", "permission_denied", 400, "invalid_scope")
        token = secrets.token_urlsafe(48)
        self.store.execute("INSERT INTO ns_access_token VALUES (?, ?)",
                           (token, self.now() + self.token_lifetime))
        return {"access_token": token, "token_type": "Bearer",
                "expires_in": str(self.token_lifetime)}

    def verify_bearer(self, authorization: str) -> None:
        token = authorization.split(" ", 1)[1].strip() if " " in authorization else ""
        row = self.store.fetchone(
            "SELECT expires_at FROM ns_access_token WHERE token = ?", (token,))
        if row is None:
            raise LoginRefused("InvalidToken", "token_rejected")
        if row[0] <= self.now():
            raise LoginRefused("ExpiredToken", "token_expired")

    def verify(self, method: str, path: str, query: str, headers: Mapping[str, str]) -> None:
        authorization = headers.get("Authorization", "")
        if authorization.startswith("OAuth "):
            self.verify_tba(method, path, query, headers)
        elif authorization.startswith("Bearer "):
            self.verify_bearer(authorization)
        else:
            raise LoginRefused("MissingAuthorization", "parameter_absent")

    # -- registration (the account admin's Integration and Certificate pages) ------

    def register_integration(self, consumer_key: str, consumer_secret: str, client_id: str
                             ) -> None:
        self.store.execute("INSERT OR REPLACE INTO ns_integration VALUES (?, ?, ?, 1)",
                           (consumer_key, consumer_secret, client_id))

    def register_token(self, token_id: str, token_secret: str, consumer_key: str) -> None:
        self.store.execute("INSERT OR REPLACE INTO ns_token VALUES (?, ?, ?)",
                           (token_id, token_secret, consumer_key))

    def register_certificate(self, certificate_id: str, client_id: str, public_key_pem: str
                             ) -> None:
        self.store.execute("INSERT OR REPLACE INTO ns_certificate VALUES (?, ?, ?)",
                           (certificate_id, client_id, public_key_pem))
