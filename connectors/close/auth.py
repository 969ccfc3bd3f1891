"""Calling Close: the API key, the official client with its sleeps bounded, retries
(`connectors.retry`), the `RateLimit` window, Close's clock, and errors in our words."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import requests
from closeio_api import API, APIError  # type: ignore[import-untyped]

from connectors.base import (
    AuthenticationError,
    ConnectorError,
    QuotaExceeded,
    SourceUnavailable,
)
from connectors.retry import retrying

log = logging.getLogger(__name__)
T = TypeVar("T")

BASE_URL = "https://api.close.com/api/v1/"
RATE_LIMIT = re.compile(r"limit=(?P<limit>\d+), remaining=(?P<remaining>\d+), "
                        r"reset=(?P<reset>\d+)")


class _Client(API):  # type: ignore[misc]  # closeio_api ships no types
    """The official client, with its sleeps bounded.

    `closeio_api` sleeps before giving up even on its last attempt: the RateLimit reset on
    a 429 (fine, and kept up to our cap) and 60-90 s on a 502/504. The adapter's own retry
    policy (tenacity, exponential with jitter) owns the backoff, so one proxy error never
    stalls a sync for a minute and a half.
    """

    max_sleep = 30.0

    def _get_rate_limit_sleep_time(self, response: requests.Response) -> float:
        return min(float(super()._get_rate_limit_sleep_time(response)), self.max_sleep)

    def _get_randomized_sleep_time_for_error(self, status_code: int, retries: int) -> float:
        return 0.0


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return response.status_code if isinstance(exc, APIError) and response is not None else None


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, requests.exceptions.RequestException):
        return True  # connection reset, timeout, body cut short
    status = _status(exc)
    return status is not None and (status == 429 or status >= 500)


def _describe(exc: BaseException) -> str:
    status = _status(exc)
    return f"HTTP {status}" if status else type(exc).__name__


def _error_text(exc: APIError) -> str:
    try:
        body = exc.response.json()
    except ValueError:
        return f"HTTP {exc.response.status_code}"
    if not isinstance(body, dict):
        return f"HTTP {exc.response.status_code}"
    message = body.get("error") or "; ".join(map(str, body.get("errors") or []))
    field_errors = body.get("field-errors") or {}
    details = ", ".join(f"{k}: {v}" for k, v in field_errors.items()) if isinstance(
        field_errors, dict) else ""
    return f"HTTP {exc.response.status_code} " + " ".join(
        str(p) for p in (message, details) if p)


class AuthMixin:
    """The connector's client (`api`), made from the API key, and `_call` / `_get`."""

    config: dict[str, Any]

    def _connect(self, secrets: Mapping[str, str], session: requests.Session | None) -> None:
        self._api_key = (secrets.get("api_key") or "").strip()
        sandbox_url = self.config.get("sandbox_url")
        base_url = (f"{str(sandbox_url).rstrip('/')}/api/v1/" if sandbox_url
                    else str(self.config.get("base_url") or BASE_URL))
        self.api = _Client(base_url, api_key=self._api_key or None, max_retries=1)
        self.api.max_sleep = float(self.config["max_backoff_seconds"])
        if session is not None:  # the concierge's allowlisted session, say
            own = self.api.session
            session.headers.update(own.headers)
            session.auth = own.auth
            own.close()
            self.api.session = session
        self.api.session.hooks["response"].append(self._note_answer)
        self._server_now: datetime | None = None
        self._pause = 0.0  # seconds to wait before the next call (the RateLimit window)

    def _note_answer(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Close's clock, from the `Date` header (the event log's 30 days count on it), and
        its `RateLimit: limit=N, remaining=N, reset=N`: with nothing remaining, the next
        call waits for the window to reset instead of earning a 429."""
        with contextlib.suppress(KeyError, TypeError, ValueError):
            self._server_now = parsedate_to_datetime(response.headers["Date"]).astimezone(UTC)
        match = RATE_LIMIT.fullmatch(response.headers.get("RateLimit", "").strip())
        if match and response.status_code != 429 and int(match["remaining"]) == 0:
            self._pause = min(float(match["reset"]), float(self.config["max_backoff_seconds"]))

    def server_now(self) -> datetime:
        return self._server_now or datetime.now(UTC)

    def _call(self, fn: Callable[[], T]) -> T:
        """One API call with backoff on transient failures, then errors in our words."""
        if not self._api_key:
            raise AuthenticationError("no Close API key is stored",
                                      hint="Enter the organization's API key.")
        calls = retrying("Close", is_transient=_is_transient, describe=_describe,
                         max_attempts=int(self.config["max_attempts"]),
                         max_backoff=float(self.config["max_backoff_seconds"]))
        try:
            return calls(fn)
        except APIError as exc:
            status = _status(exc)
            if status == 401:
                raise AuthenticationError(
                    "Close refused the API key (HTTP 401)",
                    hint="Create a key in Settings → Developer → API Keys and paste it "
                    "whole; a deleted key stops working at once.") from None
            if status == 429:
                raise QuotaExceeded(
                    "Close kept answering HTTP 429: the rate limit of this API key is spent",
                    hint="Other integrations share the organization's limit; the sync "
                    "resumes from its checkpoint.") from None
            if status is not None and status >= 500:
                raise SourceUnavailable(f"Close unavailable: HTTP {status}") from None
            raise ConnectorError(f"Close refused the request: {_error_text(exc)}") from None
        except requests.exceptions.RequestException as exc:
            raise SourceUnavailable(f"Close unreachable: {type(exc).__name__}") from None

    def _get(self, endpoint: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if self._pause:
            log.info("Close rate limit window spent; waiting %.1fs", self._pause)
            time.sleep(self._pause)
            self._pause = 0.0
        timeout = float(self.config["timeout_seconds"])
        result = self._call(lambda: self.api.get(endpoint, params=dict(params or {}),
                                                 timeout=timeout))
        if not isinstance(result, dict):
            raise SourceUnavailable(f"Close answered {endpoint} with no JSON object")
        return result

    def close(self) -> None:
        self.api.session.close()
