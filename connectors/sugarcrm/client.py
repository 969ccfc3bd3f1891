"""A thin SugarCRM REST v11 client on requests: OAuth 2.0 password grant, tokens, retries.

Our own because no maintained Python client exists (`pysugarcrm` was last released in
2021, the others are older). What it has to get right is Sugar's tokens:

- Sugar signs an API user in with the OAuth 2.0 password grant (`client_id` "sugar" with
  an empty secret unless the admin made an OAuth key, and a `platform`), and answers an
  access token (an hour by default) and a refresh token (two weeks).
- Refreshing answers a new pair and invalidates the refresh token used: two holders of
  one refresh token log each other out. Sugar also keeps one session per user and
  platform: a second login with the same platform ends the first one's tokens.
- So tokens are owned by one client object (one connector instance, in one process),
  never stored with the tenant's connection and never shared: the stored credential is
  the password, each client logs in itself, and its refreshes are serialised by a lock.
  A 401 on a call refreshes once, and if that is refused logs in again once (another
  process signed in with the same platform meanwhile), before the call is given up.

Transient failures (429, 5xx, dropped connections, timeouts) are retried with exponential
backoff and jitter (tenacity), `Retry-After` honoured up to the backoff ceiling.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from connectors.retry import retrying

log = logging.getLogger(__name__)

API_PATH = "/rest/v11"
TOKEN_PATH = f"{API_PATH}/oauth2/token"
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
# Renew an access token this long before Sugar says it expires (clock skew, slow calls).
EXPIRY_MARGIN_SECONDS = 60.0


class SugarError(Exception):
    """A refused call: HTTP status, Sugar's `error` code and `error_message`."""

    def __init__(self, status: int, code: str, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after

    @property
    def transient(self) -> bool:
        return self.status in TRANSIENT_STATUS


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    client_id: str = "sugar"
    client_secret: str = ""
    platform: str = "accrue"


def error_of(response: requests.Response) -> SugarError:
    """Sugar's error answer `{"error": code, "error_message": text}` as a SugarError."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    code = str(body.get("error") or f"HTTP_{response.status_code}")
    message = str(body.get("error_message") or body.get("error_description")
                  or response.reason or "")
    retry_after = response.headers.get("Retry-After", "")
    return SugarError(response.status_code, code, message,
                      float(retry_after) if retry_after.isdigit() else None)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, SugarError):
        return exc.transient
    return isinstance(exc, requests.exceptions.RequestException)


def _refused_before_work(exc: BaseException) -> bool:
    """What a create may be retried on: answers saying the call was not run (a 429, or
    a 503 in maintenance mode); never a dropped connection, after which it may have run."""
    return isinstance(exc, SugarError) and exc.status in (429, 503)


class SugarClient:
    """One Sugar instance's REST v11 API, as one API user."""

    def __init__(self, instance_url: str, credentials: Credentials, *,
                 session: requests.Session | None = None, sandbox_url: str | None = None,
                 timeout: float = 60.0, max_attempts: int = 6, max_backoff: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.instance_url = instance_url.rstrip("/")
        self.credentials = credentials
        self.session = session or requests.Session()
        if sandbox_url:
            from connectors.sandbox_kit.transport import SandboxAdapter

            self.session.trust_env = False
            self.session.mount(f"{self.instance_url}/", SandboxAdapter(sandbox_url))
        self.timeout, self.max_attempts, self.max_backoff = timeout, max_attempts, max_backoff
        self.clock = clock
        self._lock = threading.Lock()  # one login or refresh at a time
        self._access: str | None = None
        self._refresh: str | None = None
        self._expires_at = 0.0
        self.logins = 0  # password grants made (tests and logs: refreshes should be most)
        self.refreshes = 0

    # -- tokens ------------------------------------------------------------------------

    def _token_call(self, body: Mapping[str, str]) -> None:
        """One call to the token endpoint; stores the pair it answers."""
        response = self.session.post(f"{self.instance_url}{TOKEN_PATH}", json=dict(body),
                                     timeout=self.timeout, allow_redirects=False)
        if response.status_code != 200:
            raise error_of(response)
        answer = response.json()
        self._access = str(answer["access_token"])
        self._refresh = str(answer.get("refresh_token") or "") or None
        lifetime = float(answer.get("expires_in") or 3600)
        self._expires_at = self.clock() + max(lifetime - EXPIRY_MARGIN_SECONDS, lifetime / 2)

    def login(self) -> None:
        """The password grant: a new session for this user and platform."""
        c = self.credentials
        with self._lock:
            self._token_call({"grant_type": "password", "client_id": c.client_id,
                              "client_secret": c.client_secret, "username": c.username,
                              "password": c.password, "platform": c.platform})
            self.logins += 1

    def refresh(self, used: str | None) -> None:
        """Renew the tokens with the refresh token; a password login if Sugar refuses it.

        `used`: the access token the caller saw fail. If another thread renewed it
        meanwhile, nothing is done (a second refresh would invalidate the first's pair).
        """
        c = self.credentials
        with self._lock:
            if used is not None and self._access != used:
                return
            if self._refresh:
                try:
                    self._token_call({"grant_type": "refresh_token", "client_id": c.client_id,
                                      "client_secret": c.client_secret,
                                      "refresh_token": self._refresh, "platform": c.platform})
                    self.refreshes += 1
                    return
                except SugarError as exc:
                    if exc.transient:
                        raise
                    log.info("Sugar refused the refresh token (%s): signing in again", exc.code)
            self._access = self._refresh = None
        self.login()

    def _token(self) -> str:
        if self._access is None:
            self.login()
        elif self.clock() >= self._expires_at:
            self.refresh(self._access)
        assert self._access is not None
        return self._access

    # -- calls ---------------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None, idempotent: bool = True) -> Any:
        """One API call (path under /rest/v11) with retries; its JSON answer.

        `idempotent=False` (a create): retried only when Sugar says it did not run it, so a
        retry never makes a record twice."""
        def attempt() -> Any:
            for renewal in ("refresh", "login", None):
                token = self._token()
                response = self.session.request(
                    method, f"{self.instance_url}{API_PATH}{path}", params=params, json=json,
                    headers={"OAuth-Token": token}, timeout=self.timeout,
                    allow_redirects=False)
                if response.status_code == 401 and renewal is not None:
                    # Expired, revoked, or ended by another login with this platform.
                    if renewal == "refresh":
                        self.refresh(token)
                    else:
                        with self._lock:
                            self._access = self._refresh = None
                    continue
                if response.status_code >= 400:
                    raise error_of(response)
                return response.json() if response.content else None
            raise AssertionError("unreachable")

        calls = retrying("SugarCRM",
                         is_transient=_is_transient if idempotent else _refused_before_work,
                         describe=_describe, server_wait=_retry_after,
                         max_attempts=self.max_attempts, max_backoff=self.max_backoff)
        return calls(attempt)

    def filter(self, module: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /<Module>/filter`: one page, `{"next_offset": n, "records": [...]}`."""
        page: dict[str, Any] = self.request("POST", f"/{module}/filter", json=dict(body))
        return page

    def count(self, module: str, body: Mapping[str, Any] | None = None) -> int:
        answer = self.request("POST", f"/{module}/filter/count", json=dict(body or {}))
        return int(answer["record_count"])

    def create(self, module: str, body: Mapping[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self.request("POST", f"/{module}", json=dict(body),
                                               idempotent=False)
        return created

    def update(self, module: str, record_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        updated: dict[str, Any] = self.request("PUT", f"/{module}/{record_id}", json=dict(body))
        return updated

    def delete(self, module: str, record_id: str) -> None:
        self.request("DELETE", f"/{module}/{record_id}")

    def server_time(self) -> str:
        """The instance's clock (`/ping/whattimeisit`), ISO 8601 with its offset."""
        return str(self.request("GET", "/ping/whattimeisit"))

    def close(self) -> None:
        self.session.close()


def _retry_after(exc: BaseException, backoff: float) -> float | None:
    return exc.retry_after if isinstance(exc, SugarError) else None


def _describe(exc: BaseException) -> str:
    return f"HTTP {exc.status} {exc.code}" if isinstance(exc, SugarError) else type(exc).__name__
