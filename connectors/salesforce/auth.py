"""Signing in to Salesforce and calling it: password or OAuth logins, token refresh,
retries (`connectors.retry`), errors in our words.

Three ways in: a session id, a username + password + security token (SOAP login), or
OAuth 2.0 (`access_token` + `instance_url`, renewed from the `refresh_token`). An expired
OAuth access token is renewed inside simple-salesforce's own retry of the call, so the
sync never sees it; a revoked grant asks a person to connect again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceRefusedRequest,
)

from connectors.base import (
    AuthenticationError,
    ConnectorError,
    QuotaExceeded,
    SourceUnavailable,
)
from connectors.retry import retrying

log = logging.getLogger(__name__)
T = TypeVar("T")


def default_timeout(session: requests.Session, seconds: float) -> None:
    """Give every call a timeout: simple-salesforce sets none, and a silent server would
    otherwise hang a sync forever (a timeout is retried like any transient failure)."""
    send = session.request

    def request(method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", seconds)
        return send(method, url, **kwargs)

    # A deliberate monkeypatch: the wrapper forwards every keyword, so it is not
    # signature-for-signature the method it replaces.
    session.request = request  # type: ignore[method-assign,assignment]


# OAuth token endpoint errors (RFC 6749 §5.2 and Salesforce's own) that mean the grant
# itself is gone: only these ask a person to connect again.
REFRESH_REVOKED = frozenset({
    "invalid_grant", "invalid_client", "invalid_client_id", "invalid_client_credentials",
    "unauthorized_client", "inactive_user", "inactive_org",
})
# ... and those that say "not now": retried like any outage.
REFRESH_TRANSIENT = frozenset({"server_error", "temporarily_unavailable", "rate_limit_exceeded"})


def _refresh_error(url: str, status: int, body: Mapping[str, Any]) -> Exception:
    """What a failed refresh grant means: revoked (connect again), an outage, or neither."""
    code = body.get("error")
    if code in REFRESH_REVOKED:
        return AuthenticationError(
            f"Salesforce refused the refresh token ({code})",
            hint="The access was revoked or expired: connect with Salesforce again.",
        )
    if status >= 500 or status == 429 or code in REFRESH_TRANSIENT or not code:
        # Not a verdict on the credentials: `_call` retries it, then reports SourceUnavailable,
        # so the run is retried instead of failing fast as revoked.
        # simple-salesforce annotates `content` as bytes but itself passes the parsed JSON
        # body (util.exception_handler), which `error_code` reads: a list of error dicts.
        return SalesforceGeneralError(url, status if status >= 500 else 503, "oauth2/token",
                                      [{"errorCode": code or f"HTTP {status}",  # type: ignore[arg-type]
                                        "message": body.get("error_description", "")}])
    description = body.get("error_description")
    return ConnectorError(f"Salesforce refused the token refresh ({code}"
                          + (f": {description}" if description else "") + ")")


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, requests.exceptions.RequestException):
        return True  # connection reset, timeout, body cut short
    if isinstance(exc, SalesforceRefusedRequest):
        # REQUEST_LIMIT_EXCEEDED is either the concurrency limit (passes in seconds) or
        # the daily quota ("TotalRequests"), which no backoff will cure.
        return error_code(exc) == "REQUEST_LIMIT_EXCEEDED" and not _is_daily_quota(exc)
    if isinstance(exc, SalesforceGeneralError):
        return exc.status == 429 or exc.status >= 500
    return isinstance(exc, SalesforceExpiredSession)


def _is_daily_quota(exc: SalesforceError) -> bool:
    content = exc.content
    message = content[0].get("message", "") if isinstance(content, list) and content else ""
    return "TotalRequests" in str(message)


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, SalesforceError):
        return f"HTTP {exc.status} {error_code(exc) or ''}".strip()
    return type(exc).__name__ if exc else "unknown error"


def error_code(exc: SalesforceError) -> str | None:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return content[0].get("errorCode")
    return None


class AuthMixin:
    """The connector's connection: its `sf` client, made on first use, and `_call`."""

    config: dict[str, Any]
    _secrets: dict[str, str]
    _session: requests.Session
    _sf: Salesforce | None

    def _make_session(self) -> requests.Session:
        sandbox_url = self.config.get("sandbox_url")
        if sandbox_url:
            from connectors.salesforce.transport import sandbox_session

            return sandbox_session(sandbox_url)
        return requests.Session()

    # -- connection ---------------------------------------------------------

    def _login(self) -> Salesforce:
        s = self._secrets
        try:
            if s.get("access_token") or s.get("refresh_token"):
                return self._oauth_login()
            if s.get("session_id"):
                return Salesforce(
                    session_id=s["session_id"], instance_url=s["instance_url"],
                    session=self._session, version=self.config["api_version"],
                )
            return Salesforce(
                username=s["username"], password=s["password"],
                security_token=s.get("security_token", ""), domain=self.config["domain"],
                session=self._session, version=self.config["api_version"],
            )
        except SalesforceAuthenticationFailed as exc:
            raise AuthenticationError(
                f"Salesforce rejected the login ({exc.code})",
                hint="Check the username and password; the security token changes "
                "whenever the password is changed.",
            ) from None
        except KeyError as exc:
            raise AuthenticationError(f"missing Salesforce credential {exc.args[0]!r}") from None

    def _oauth_login(self) -> Salesforce:
        """A client on an OAuth access token that renews itself from the refresh token.

        simple-salesforce calls `_salesforce_login_partial` when a call gets
        401 INVALID_SESSION_ID, then repeats the call: pointing it at the
        refresh grant makes an expired access token invisible to the sync.
        """
        s = self._secrets
        access_token, instance_url = s.get("access_token"), s.get("instance_url")
        if not access_token or not instance_url:
            access_token, instance_url = self._oauth_refresh()
        sf = Salesforce(
            session_id=access_token, instance_url=instance_url,
            session=self._session, version=self.config["api_version"],
        )
        if s.get("refresh_token"):
            # simple-salesforce types the hook as the partial it builds itself; it only calls it.
            sf._salesforce_login_partial = self._oauth_refresh  # type: ignore[assignment]  # noqa: SLF001
        return sf

    def _oauth_refresh(self) -> tuple[str, str]:
        """The refresh_token grant at /services/oauth2/token: (access token, instance host)."""
        s = self._secrets
        if not s.get("refresh_token"):
            raise AuthenticationError(
                "the Salesforce access token expired and no refresh token is stored",
                hint="Connect with Salesforce again to grant offline access.",
            )
        base = s.get("instance_url") or f"https://{self.config['domain']}.salesforce.com"
        form = {"grant_type": "refresh_token", "refresh_token": s["refresh_token"],
                "client_id": self.config.get("client_id", "")}
        if s.get("client_secret"):
            form["client_secret"] = s["client_secret"]
        url = f"{base.rstrip('/')}/services/oauth2/token"
        response = self._session.post(
            url, data=form, timeout=float(self.config["timeout_seconds"]), allow_redirects=False,
        )
        try:
            body = response.json() if response.content else {}
        except ValueError:  # an HTML error page from a proxy or an outage
            body = {}
        body = body if isinstance(body, dict) else {}
        if response.status_code != 200 or "access_token" not in body:
            raise _refresh_error(url, response.status_code, body)
        self._secrets["access_token"] = body["access_token"]
        self._secrets["instance_url"] = body.get("instance_url", base)
        host = urlsplit(self._secrets["instance_url"]).netloc
        return body["access_token"], host

    @property
    def sf(self) -> Salesforce:
        if self._sf is None:
            self._sf = self._call(self._login)
        return self._sf

    def _call(self, fn: Callable[[], T]) -> T:
        """Run one API call with backoff on transient failures, then map errors."""
        calls = retrying("Salesforce", is_transient=_is_transient, describe=_describe,
                         max_attempts=int(self.config["max_attempts"]),
                         max_backoff=float(self.config["max_backoff_seconds"]))
        try:
            return calls(fn)
        except SalesforceExpiredSession:
            raise AuthenticationError(
                "Salesforce session expired and could not be renewed",
                hint="Re-enter the Salesforce credentials.",
            ) from None
        except SalesforceRefusedRequest as exc:
            if error_code(exc) == "REQUEST_LIMIT_EXCEEDED" and _is_daily_quota(exc):
                raise QuotaExceeded(
                    "Salesforce daily API request limit exceeded",
                    hint="The sync resumes from its checkpoint when the quota resets.",
                ) from None
            if error_code(exc) == "REQUEST_LIMIT_EXCEEDED":
                raise SourceUnavailable("Salesforce concurrent request limit exceeded") from None
            raise ConnectorError(f"Salesforce refused the request: {_describe(exc)}") from None
        except SalesforceGeneralError as exc:
            raise SourceUnavailable(f"Salesforce unavailable: {_describe(exc)}") from None
        except requests.exceptions.RequestException as exc:
            raise SourceUnavailable(f"Salesforce unreachable: {type(exc).__name__}") from None

    def close(self) -> None:
        self._session.close()
