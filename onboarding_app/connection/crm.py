"""Which CRMs the concierge offers, and how a connection is tested — for any registered CRM.

Everything CRM-specific comes from the CRM's spec (`connectors/<crm>/spec.py`): its
setup fields, sign-in methods, hosts and error hints. The connection test is where user
input meets the network, so it is fenced: only the CRM's own hosts are contacted (a local
sandbox's only when the app is configured for one), a URL the admin typed is checked
before any request, redirects are never followed, and every call has a short timeout.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import current_app

from connectors import registry
from connectors.base import CheckResult, ConnectorError
from connectors.spec import ConnectorSpec
from onboarding_app.connection import feeds
from onboarding_app.logs import get_logger

logger = get_logger(__name__)


@dataclass(frozen=True)
class CrmOption:
    key: str
    name: str
    blurb: str
    supported: bool
    feed: bool = False  # a way in for CRMs no connector reads (onboarding_app.connection.feeds)


def catalog() -> list[CrmOption]:
    """Registered CRMs first (in the registry's order), then those coming soon."""
    options = [CrmOption(s.key, s.product or s.name, s.tagline, True)
               for s in registry.specs()]
    options += [CrmOption(key, name, line, False) for key, name, line in registry.PLANNED]
    return options


def choices() -> list[CrmOption]:
    """What Select CRM offers: the CRMs of the catalog, then the feeds for any other CRM."""
    return catalog() + [CrmOption(f.key, f.name, f.blurb, True, feed=True)
                        for f in feeds.FEEDS]


def chosen_name(key: str | None) -> str:
    """The chosen CRM's or feed's name, as the pages and e-mails say it."""
    feed = feeds.get(key)
    return feed.name if feed is not None else spec_for(key).name


def spec_for(key: str | None) -> ConnectorSpec:
    """The chosen CRM's spec (the first registered one when nothing is chosen yet)."""
    return registry.spec(key) if key else registry.specs()[0]


class HostNotAllowed(Exception):
    """A request to a host outside the CRM's allowlist (raised before any I/O)."""

    def __init__(self, host: str | None) -> None:
        super().__init__(f"refusing to contact {host!r}: not one of the CRM's hosts")
        self.host = host


def sandbox_url(spec: ConnectorSpec) -> str | None:
    """The local sandbox standing in for every host of this CRM, when configured."""
    value = (current_app.config.get("SANDBOX_URLS") or {}).get(spec.key)
    return str(value).rstrip("/") if value else None


def sandbox_netloc(spec: ConnectorSpec) -> str | None:
    url = sandbox_url(spec)
    return urlsplit(url).netloc if url else None


def host_allowed(spec: ConnectorSpec, netloc: str | None) -> bool:
    """One of the CRM's hosts, or the configured sandbox's host:port; never a bare IP."""
    sandbox = sandbox_netloc(spec)
    if sandbox and netloc and netloc.lower() == sandbox.lower():
        return True
    return spec.allows_host(netloc)


class AllowlistSession(requests.Session):
    """A requests session that only talks to allowed hosts and never follows redirects.

    Redirects are switched off per request in `send` (a 3xx comes back to the
    caller as is), so a CRM host cannot bounce us to another one.
    """

    def __init__(self, allowed: Callable[[str | None], bool], timeout: float) -> None:
        super().__init__()
        self.trust_env = False  # no proxy or netrc from the environment
        self._allowed = allowed
        self._timeout = timeout
        self.contacted: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        netloc = urlsplit(request.url or "").netloc
        if not self._allowed(netloc):
            raise HostNotAllowed(netloc)
        kwargs["allow_redirects"] = False
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        self.contacted.append(netloc)
        return super().send(request, **kwargs)


def make_session(spec: ConnectorSpec, timeout: float | None = None) -> AllowlistSession:
    """The only way the app reaches a CRM (or, when configured, its sandbox)."""
    limit = timeout or float(current_app.config["CONNECTION_TEST_TIMEOUT_SECONDS"])
    session = AllowlistSession(lambda host: host_allowed(spec, host), limit)
    url = sandbox_url(spec)
    if url:
        from connectors.sandbox_kit.transport import SandboxAdapter

        # Every allowed https host is served by the sandbox (the allowlist runs first).
        session.mount("https://", SandboxAdapter(url))
    return session


def sandbox_config(spec: ConnectorSpec) -> dict[str, Any]:
    """What a connection stores so the pipelines reach the same sandbox the app tested."""
    url = sandbox_url(spec)
    return {"sandbox_url": url} if url else {}


@dataclass
class TestOutcome:
    ok: bool
    message: str
    field: str | None = None
    hint: str | None = None
    seconds: float = 0.0
    objects: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def public(self) -> dict[str, Any]:
        """What the browser may see: no secrets, ever."""
        return {"ok": self.ok, "message": self.message, "field": self.field, "hint": self.hint,
                "seconds": round(self.seconds, 2)}


OBJECT_LABELS = {
    "account": "Accounts (customers)",
    "contact": "Contacts",
    "lead": "Leads",
    "opportunity": "Opportunities (deals)",
    "opportunity_line": "Opportunity products (line items)",
    "product": "Products",
    "price_book_entry": "Price book entries (price lists)",
    "user": "Users (sellers and managers)",
    "activity": "Activities (calls, e-mails, meetings, to-dos)",
}


def test_connection(
    spec: ConnectorSpec, secrets: Mapping[str, Any], config: Mapping[str, Any], *,
    discover: bool = True,
) -> TestOutcome:
    """Log in with the stored secret, make one cheap call, then count what will be imported."""
    started = time.monotonic()
    session = make_session(spec)
    connector = registry.create_connector(
        spec.key, secrets, {**config, "max_attempts": 1, "timeout_seconds": session._timeout},
        session=session)
    try:
        result: CheckResult = connector.check()
        if not result.ok:
            return _failed(spec, result, started)
        objects: list[dict[str, Any]] = []
        if discover:
            for info in connector.objects():
                objects.append({
                    "name": info.name, "source_name": info.source_name,
                    "label": OBJECT_LABELS.get(info.name, info.name),
                    "count": connector.count(info.name),
                })
        return TestOutcome(True, result.message, seconds=time.monotonic() - started,
                           objects=objects)
    except HostNotAllowed as exc:
        logger.warning("connection test refused host %s", exc.host)
        return TestOutcome(False, f"That address is not a {spec.name} address.", None,
                           f"Use the address {spec.name} gives your company.",
                           time.monotonic() - started)
    except ConnectorError as exc:
        return TestOutcome(False, str(exc), None, exc.hint, time.monotonic() - started)
    finally:
        connector.close()


def _failed(spec: ConnectorSpec, result: CheckResult, started: float) -> TestOutcome:
    """A refused test in the admin's words: one message, one hint, a field only if known."""
    message, field_name, hint = result.message, result.field, result.hint
    known = spec.hint_for(result.message)
    if known is not None:
        message, field_name, hint = known.message or message, known.field, known.hint
    if "unreachable" in result.message.lower():
        hint = hint or spec.unreachable_hint
    return TestOutcome(False, message, field_name, hint, time.monotonic() - started)
