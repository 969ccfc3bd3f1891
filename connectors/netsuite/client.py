"""A thin SuiteTalk REST client: SuiteQL, the record service, TBA and OAuth 2.0 M2M.

Our own because the one maintained Python package (`netsuite`) hard-codes the host,
is async-only and has no OAuth 2.0. Signing is never hand-written: TBA requests are
signed by requests-oauthlib (HMAC-SHA256, realm = account id) and M2M client
assertions by PyJWT. Transient failures (429 over the concurrency limit, 5xx,
dropped connections) are retried with exponential backoff and jitter (tenacity),
each attempt signed afresh, so a retry never reuses a nonce.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256
from requests_oauthlib import OAuth1

from connectors.retry import retrying

log = logging.getLogger(__name__)

SUITEQL_PATH = "/services/rest/query/v1/suiteql"
RECORD_PATH = "/services/rest/record/v1"
TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


def account_slug(account_id: str) -> str:
    """`123456_SB1` → `123456-sb1`: the host label (the OAuth realm keeps `123456_SB1`)."""
    return account_id.strip().lower().replace("_", "-")


def api_host(account_id: str) -> str:
    return f"{account_slug(account_id)}.suitetalk.api.netsuite.com"


class NetSuiteError(Exception):
    """A refused call: HTTP status, NetSuite's `o:errorCode` (or OAuth `error`), detail,
    and the OAuth problem word from `WWW-Authenticate` when the login was refused."""

    def __init__(self, status: int, code: str, detail: str, problem: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail
        self.problem, self.retry_after = problem, retry_after

    @property
    def transient(self) -> bool:
        return self.status in TRANSIENT_STATUS


@dataclass(frozen=True)
class TbaCredentials:
    consumer_key: str
    consumer_secret: str
    token_id: str
    token_secret: str


@dataclass(frozen=True)
class M2mCredentials:
    client_id: str
    certificate_id: str
    private_key_pem: str
    algorithm: str | None = None  # None: PS256 for an RSA key, ES256/384/512 for EC P-256/384/521


def _error_of(response: requests.Response) -> NetSuiteError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    details = body.get("o:errorDetails") or [{}]
    first = details[0] if isinstance(details, list) and details else {}
    code = first.get("o:errorCode") or body.get("error") or f"HTTP_{response.status_code}"
    detail = first.get("detail") or body.get("error_description") or response.reason or ""
    match = re.search(r'oauth_problem="([^"]+)"', response.headers.get("WWW-Authenticate", ""))
    retry_after = response.headers.get("Retry-After")
    return NetSuiteError(response.status_code, str(code), str(detail),
                         match.group(1) if match else None,
                         float(retry_after) if retry_after and retry_after.isdigit() else None)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, NetSuiteError):
        return exc.transient
    return isinstance(exc, requests.exceptions.RequestException)


class NetSuiteClient:
    """One account's SuiteTalk REST API, over TBA or M2M."""

    def __init__(
        self, account_id: str, *, tba: TbaCredentials | None = None,
        m2m: M2mCredentials | None = None, session: requests.Session | None = None,
        sandbox_url: str | None = None, timeout: float = 60.0, max_attempts: int = 6,
        max_backoff: float = 30.0, now: Callable[[], float] = time.time,
    ) -> None:
        if (tba is None) == (m2m is None):
            raise ValueError("give exactly one of tba= and m2m=")
        self.account_id = account_id.strip().upper()
        self.base_url = f"https://{api_host(self.account_id)}"
        self.tba, self.m2m = tba, m2m
        self.session = session or requests.Session()
        if sandbox_url:
            self.session.trust_env = False
            self.session.mount(f"{self.base_url}/", _sandbox_adapter(sandbox_url))
        self.timeout, self.max_attempts, self.max_backoff = timeout, max_attempts, max_backoff
        self.now = now
        self._token: tuple[str, float] | None = None  # (bearer, expires at)

    # -- auth --------------------------------------------------------------------

    def _auth(self) -> requests.auth.AuthBase | None:
        if self.tba is not None:
            t = self.tba
            return OAuth1(t.consumer_key, client_secret=t.consumer_secret,
                          resource_owner_key=t.token_id, resource_owner_secret=t.token_secret,
                          signature_method=SIGNATURE_HMAC_SHA256, realm=self.account_id)
        return None

    def client_assertion(self) -> str:
        """The JWT NetSuite's token endpoint takes for a client-credentials grant."""
        assert self.m2m is not None
        issued = int(self.now())
        claims = {"iss": self.m2m.client_id, "scope": "rest_webservices",
                  "aud": f"{self.base_url}{TOKEN_PATH}", "iat": issued, "exp": issued + 1800,
                  "jti": uuid.uuid4().hex}
        key = serialization.load_pem_private_key(self.m2m.private_key_pem.encode(), None)
        algorithm = self.m2m.algorithm or jwt_algorithm(key)
        return jwt.encode(claims, key, algorithm=algorithm,  # type: ignore[arg-type]
                          headers={"kid": self.m2m.certificate_id})

    def _bearer(self) -> str:
        if self._token and self._token[1] > self.now():
            return self._token[0]
        response = self.session.post(
            f"{self.base_url}{TOKEN_PATH}", timeout=self.timeout, allow_redirects=False,
            data={"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                  "client_assertion": self.client_assertion()})
        if response.status_code != 200:
            raise _error_of(response)
        body = response.json()
        lifetime = float(body.get("expires_in", 3600))
        self._token = (body["access_token"], self.now() + max(lifetime - 60, lifetime / 2))
        return self._token[0]

    # -- transport ---------------------------------------------------------------

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None, headers: Mapping[str, str] | None = None
                ) -> requests.Response:
        """One call with retries on transient failures; an expired bearer is renewed once."""
        def attempt() -> requests.Response:
            for renewed in (False, True):
                sent = dict(headers or {})
                if self.m2m is not None:
                    sent["Authorization"] = f"Bearer {self._bearer()}"
                response = self.session.request(
                    method, f"{self.base_url}{path}", params=params, json=json, headers=sent,
                    auth=self._auth(), timeout=self.timeout, allow_redirects=False)
                if response.status_code == 401 and self.m2m is not None and not renewed:
                    self._token = None  # expired or revoked: ask for a new one once
                    continue
                if response.status_code >= 400:
                    raise _error_of(response)
                return response
            raise AssertionError("unreachable")

        calls = retrying("NetSuite", is_transient=_is_transient, describe=_describe,
                         server_wait=_retry_after, max_attempts=self.max_attempts,
                         max_backoff=self.max_backoff)
        return calls(attempt)

    # -- SuiteQL -------------------------------------------------------------------

    def suiteql(self, query: str, *, limit: int = 1000, offset: int = 0) -> dict[str, Any]:
        """One page: `{links, count, hasMore, items, offset, totalResults}`."""
        response = self.request("POST", SUITEQL_PATH, params={"limit": limit, "offset": offset},
                                json={"q": query}, headers={"Prefer": "transient"})
        body: dict[str, Any] = response.json()
        return body

    def suiteql_pages(self, query: str, *, limit: int = 1000) -> Iterator[dict[str, Any]]:
        """Every page of a query (offset paging: the query needs a unique ORDER BY)."""
        offset = 0
        while True:
            page = self.suiteql(query, limit=limit, offset=offset)
            yield page
            if not page.get("hasMore"):
                return
            offset += limit

    # -- record service --------------------------------------------------------------

    def create(self, record_type: str, body: Mapping[str, Any]) -> int:
        """Create a record; its internal id, from the `Location` header NetSuite returns."""
        response = self.request("POST", f"{RECORD_PATH}/{record_type}", json=dict(body))
        return int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])

    def update(self, record_type: str, record_id: int | str, body: Mapping[str, Any], *,
               replace: str | None = None) -> None:
        self.request("PATCH", f"{RECORD_PATH}/{record_type}/{record_id}", json=dict(body),
                     params={"replace": replace} if replace else None)

    def delete(self, record_type: str, record_id: int | str) -> None:
        self.request("DELETE", f"{RECORD_PATH}/{record_type}/{record_id}")

    def get(self, record_type: str, record_id: int | str) -> dict[str, Any]:
        body: dict[str, Any] = self.request("GET", f"{RECORD_PATH}/{record_type}/{record_id}"
                                            ).json()
        return body

    def close(self) -> None:
        self.session.close()


def _retry_after(exc: BaseException, backoff: float) -> float | None:
    return exc.retry_after if isinstance(exc, NetSuiteError) else None


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, NetSuiteError) else type(exc).__name__


def jwt_algorithm(key: Any) -> str:
    """What NetSuite accepts for the key's kind: PS256 (RSA), ES256/384/512 (EC curves)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return "PS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {256: "ES256", 384: "ES384", 521: "ES512"}.get(key.curve.key_size, "ES256")
    raise ValueError("the private key is neither RSA nor EC")


def _sandbox_adapter(sandbox_url: str) -> requests.adapters.HTTPAdapter:
    """The kit's adapter that sends https://<account host>/... to the local sandbox."""
    from connectors.sandbox_kit.transport import SandboxAdapter

    return SandboxAdapter(sandbox_url)
