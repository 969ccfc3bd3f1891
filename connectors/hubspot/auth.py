"""Signing in to HubSpot and calling it: tokens, token refresh, retries, errors in our words.

Two ways in, both a bearer token on every call:
- a private app's access token (`auth: private_app`), which does not expire;
- OAuth 2.0 (`auth: oauth`): an access token that lives 30 minutes and a refresh token
  that does not rotate. A 401 `EXPIRED_AUTHENTICATION` (or any 401 with a refresh token
  stored) is met by one refresh grant at `/oauth/v1/token` and the call again, so an
  expired token is invisible to the sync. The app's client id and secret come from the
  connection's config / secrets or `ACCRUE_HUBSPOT_CLIENT_ID` / `_SECRET`.

Retries (tenacity, exponential with jitter) on 5xx, dropped connections and 429s. A 429
with `Retry-After` waits what it says; HubSpot's ten-secondly limit answers 429 *without*
it, and then the backoff waits at least the rest of the interval's share. A 429 whose
policy is `DAILY` is not retried: the day's calls are spent (`QuotaExceeded`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import requests

from connectors.base import (
    AuthenticationError,
    ConnectorError,
    QuotaExceeded,
    SourceUnavailable,
)
from connectors.hubspot.client import error_body, error_text, header, is_api_error, make_client
from connectors.retry import retrying

log = logging.getLogger(__name__)
T = TypeVar("T")
API_HOST = "https://api.hubapi.com"
TOKEN_PATH = "/oauth/v1/token"
SANDBOX_CLIENT_ID = "accrue-concierge"  # the concierge's stand-in app on a sandbox
INTERVAL_SHARE = 1.0  # seconds waited at least after a 429 that names no Retry-After


def _status(exc: BaseException) -> int | None:
    return int(getattr(exc, "status", 0) or 0) or None if is_api_error(exc) else None


def _is_daily(exc: BaseException) -> bool:
    return _status(exc) == 429 and error_body(exc).get("policyName") == "DAILY"


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, requests.exceptions.RequestException):
        return True  # connection reset, timeout, body cut short
    status = _status(exc)
    return status is not None and ((status == 429 and not _is_daily(exc)) or status >= 500)


def _describe(exc: BaseException) -> str:
    status = _status(exc)
    return f"HTTP {status}" if status else type(exc).__name__


def _server_wait(exc: BaseException, backoff: float) -> float | None:
    """Retry-After when HubSpot sends one with a 429; without it, at least INTERVAL_SHARE
    (the ten-secondly limit's 429s name no wait)."""
    if _status(exc) != 429:
        return None
    retry_after = header(exc, "Retry-After")
    if retry_after and retry_after.isdigit():
        return float(retry_after)
    return max(backoff, INTERVAL_SHARE)


class AuthMixin:
    """The client, the session under it and `_call`; mixed into the adapter."""

    config: dict[str, Any]
    _server_now: datetime | None
    _pause: float

    def _setup_auth(self, secrets: Mapping[str, str], config: Mapping[str, Any],
                    session: requests.Session | None) -> None:
        self._oauth = config.get("auth") == "oauth"
        self.secret_field = None if self._oauth else "access_token"
        self._access_token = (secrets.get("access_token") or "").strip()
        self._refresh_token = (secrets.get("refresh_token") or "").strip()
        sandbox_url = config.get("sandbox_url")
        self.host = str(sandbox_url).rstrip("/") if sandbox_url else str(
            config.get("base_url") or API_HOST)
        self._client_id = str(config.get("client_id") or os.environ.get(
            "ACCRUE_HUBSPOT_CLIENT_ID") or (SANDBOX_CLIENT_ID if sandbox_url else ""))
        self._client_secret = str(secrets.get("client_secret") or os.environ.get(
            "ACCRUE_HUBSPOT_CLIENT_SECRET") or "")
        self.session = session or requests.Session()
        if session is None:
            self.session.trust_env = False
        self.session.hooks["response"].append(self._note_answer)
        self._server_now = None
        self._pause = 0.0
        self._build_client()

    def _build_client(self) -> None:
        self.client = make_client(self._access_token, self.host, self.session,
                                  float(self.config["timeout_seconds"]))

    def _note_answer(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def _wait_for_window(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.session.close()

    def _call(self, fn: Callable[[], T]) -> T:
        """One API call with backoff on transient failures and one token refresh on an
        expired OAuth token, then errors in our words."""
        if not self._access_token and not self._refresh_token:
            raise AuthenticationError("no HubSpot access token is stored",
                                      hint="Enter the private app's access token, or connect "
                                      "with HubSpot again.")
        calls = retrying("HubSpot", is_transient=_is_transient, describe=_describe,
                         server_wait=_server_wait,
                         max_attempts=int(self.config["max_attempts"]),
                         max_backoff=float(self.config["max_backoff_seconds"]))

        def attempt() -> T:
            self._wait_for_window()
            return fn()

        try:
            try:
                return calls(attempt)
            except Exception as exc:
                if _status(exc) != 401 or not self._refresh_token:
                    raise
                self.refresh()
                return calls(attempt)
        except requests.exceptions.RequestException as exc:
            raise SourceUnavailable(f"HubSpot unreachable: {type(exc).__name__}") from None
        except Exception as exc:
            if not is_api_error(exc):
                raise
            raise self._translate(exc) from None

    def _translate(self, exc: BaseException) -> ConnectorError:
        status = _status(exc)
        text = error_text(exc)
        if status == 401:
            return AuthenticationError(
                f"HubSpot refused the access token ({text})",
                hint="Connect with HubSpot again." if self._oauth else
                "Copy the private app's access token again (Settings → Integrations → Private "
                "Apps → the app → Auth → Show token); a rotated token stops the old one.")
        if status == 403:
            return AuthenticationError(
                f"HubSpot refused the call ({text})",
                hint="The private app or the OAuth app lacks a CRM read scope: add the "
                "crm.objects.*.read scopes it needs.")
        if status == 429:
            return QuotaExceeded(f"HubSpot kept answering HTTP 429 ({text})",
                                 hint="The portal's API limit is spent (other integrations "
                                 "share it); the sync resumes from its checkpoint.")
        if status is not None and status >= 500:
            return SourceUnavailable(f"HubSpot unavailable: HTTP {status}")
        return ConnectorError(f"HubSpot refused the request: {text}")

    def refresh(self) -> None:
        """The refresh_token grant: a new 30-minute access token (the refresh token stays)."""
        form = {"grant_type": "refresh_token", "refresh_token": self._refresh_token,
                "client_id": self._client_id, "client_secret": self._client_secret}
        try:
            response = self.session.post(f"{self.host}{TOKEN_PATH}", data=form,
                                         timeout=float(self.config["timeout_seconds"]))
        except requests.exceptions.RequestException as exc:
            raise SourceUnavailable(f"HubSpot unreachable: {type(exc).__name__}") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or \
                not body.get("access_token"):
            code = body.get("status") if isinstance(body, dict) else None
            if response.status_code >= 500:
                raise SourceUnavailable(f"HubSpot unavailable: HTTP {response.status_code}")
            raise AuthenticationError(
                f"HubSpot refused the token refresh ({code or response.status_code})",
                hint="The app was uninstalled or its access revoked: connect with HubSpot "
                "again.")
        self._access_token = str(body["access_token"])
        self._build_client()
