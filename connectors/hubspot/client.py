"""The official client (`hubspot-api-client`), sending its calls through a requests session.

`hubspot.Client` talks through urllib3 pools of its own. Its `api_factory` setting (the
client's documented hook for building each API) lets every API it builds send through a
`requests.Session` instead: the concierge's allowlisted one (every host checked before a
request leaves), or the sandbox kit's transport. The client's models, paths and
serialisation are used unchanged.

Errors come back as each API package's own `ApiException` (one class per package); they
are told apart here by their status and HubSpot's `category` / `policyName`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import requests
from hubspot import Client  # type: ignore[import-untyped]
from hubspot.discovery.discovery_base import DiscoveryBase  # type: ignore[import-untyped]


class _Answer:
    """The part of a urllib3 response the generated client reads."""

    def __init__(self, response: requests.Response) -> None:
        self.status = response.status_code
        self.reason = response.reason
        self.data = response.content
        self.headers = response.headers

    def getheaders(self) -> Mapping[str, str]:
        return self.headers

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


class SessionPool:
    """urllib3's `PoolManager.request` (what the generated REST client calls), over a
    requests session; `timeout` applies to every call."""

    def __init__(self, session: requests.Session, timeout: float) -> None:
        self.session = session
        self.timeout = timeout

    def request(self, method: str, url: str, fields: Any = None, body: Any = None,
                headers: Mapping[str, str] | None = None, **_: Any) -> _Answer:
        if fields and method in ("GET", "HEAD"):
            url = f"{url}?{urlencode(fields)}"
            fields = None
        response = self.session.request(method, url, data=body if body is not None else fields,
                                        headers=dict(headers or {}), timeout=self.timeout)
        return _Answer(response)


def make_client(access_token: str, host: str, session: requests.Session,
                timeout: float) -> Any:
    """`hubspot.Client` whose every API sends through `session`."""
    pool = SessionPool(session, timeout)

    def api_factory(package: Any, api_name: str, config: Mapping[str, Any]) -> Any:
        api = DiscoveryBase._default_api_factory(package, api_name, config)  # noqa: SLF001
        api.api_client.rest_client.pool_manager = pool
        return api

    return Client.create(access_token=access_token, host=host, api_factory=api_factory)


def is_api_error(exc: BaseException) -> bool:
    """An error answer from any of the client's API packages."""
    return type(exc).__module__.startswith("hubspot.") and hasattr(exc, "status") and \
        hasattr(exc, "body")


def error_body(exc: BaseException) -> dict[str, Any]:
    raw = getattr(exc, "body", None)
    try:
        body = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def error_text(exc: BaseException) -> str:
    """`HTTP 400 VALIDATION_ERROR: <HubSpot's message>`."""
    body = error_body(exc)
    code = body.get("category") or body.get("status") or ""
    message = str(body.get("message") or "")[:300]
    return f"HTTP {getattr(exc, 'status', '?')} {code}".rstrip() + (
        f": {message}" if message else "")


def header(exc: BaseException, name: str) -> str | None:
    headers = getattr(exc, "headers", None) or {}
    try:
        value = headers.get(name)
    except AttributeError:
        return None
    return str(value) if value is not None else None
