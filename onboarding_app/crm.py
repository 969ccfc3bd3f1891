"""Which CRMs the concierge offers, what each asks for, and how a connection is tested.

The connection test is where user input meets the network, so it is fenced:
only Salesforce's own hosts are contacted (the local sandbox's only when the
app is configured for it), a URL the admin typed is checked before any
request, redirects are never followed, and every call has a short timeout.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import current_app

from connectors.base import CheckResult, ConnectorError
from connectors.registry import PLANNED, supported_crms
from connectors.salesforce.transport import LOGIN_HOSTS, SandboxAdapter
from onboarding_app.security import get_logger

logger = get_logger(__name__)


@dataclass(frozen=True)
class CrmOption:
    key: str
    name: str
    blurb: str
    supported: bool


_NAMES = {
    "salesforce": ("Salesforce Sales Cloud", "Connect in one click with your Salesforce login."),
    "netsuite": ("Oracle NetSuite", "Token-based authentication."),
    "hubspot": ("HubSpot", "CRM v3 API."),
    "close": ("Close", "API key."),
    "sugarcrm": ("SugarCRM", "REST v11 API."),
}


def catalog() -> list[CrmOption]:
    """Supported CRMs first, then those coming soon, in the product's order."""
    supported = set(supported_crms())
    order = ["salesforce", *PLANNED]
    return [
        CrmOption(key, *_NAMES.get(key, (key.title(), "")), supported=key in supported)
        for key in order
    ]


@dataclass(frozen=True)
class FieldHelp:
    label: str
    where: str  # "where do I find this?"


SALESFORCE_HELP: dict[str, FieldHelp] = {
    "environment": FieldHelp(
        "Salesforce environment",
        "Production is the org your sales team works in (login.salesforce.com). Choose "
        "Sandbox only for a Salesforce test copy (test.salesforce.com).",
    ),
    "my_domain": FieldHelp(
        "My Domain (optional)",
        "Only if your company logs in at its own address: in Salesforce, Setup → My Domain "
        "shows it, e.g. acme.my.salesforce.com. Leave blank otherwise.",
    ),
    "username": FieldHelp(
        "Salesforce username",
        "The username of the integration user, shaped like an e-mail address. Salesforce: "
        "your avatar (top right) → Settings → Personal Information → Username.",
    ),
    "password": FieldHelp(
        "Password",
        "That user's Salesforce password.",
    ),
    "security_token": FieldHelp(
        "Security token",
        "Salesforce e-mails it: avatar → Settings → My Personal Information → Reset My "
        "Security Token. A new one is sent whenever the password changes.",
    ),
}

@dataclass(frozen=True)
class ErrorHelp:
    """A Salesforce error code in the admin's words, and the field to fix when it says."""

    field: str | None  # None: the error does not say which field is wrong
    message: str | None  # replaces Salesforce's coded text (None: keep it)
    hint: str


# What each Salesforce error means for the admin. INVALID_LOGIN is the same answer for a
# wrong username, password or token and a locked-out user: no single field is to blame.
HINTS: dict[str, ErrorHelp] = {
    "INVALID_LOGIN": ErrorHelp(
        None,
        "Salesforce did not accept this username, password and security token.",
        "It does not say which one is wrong: check the password first. The security token "
        "changes whenever the password changes (avatar → Settings → Reset My Security Token "
        "e-mails the new one). A user locked out after too many attempts gets the same answer.",
    ),
    "invalid_grant": ErrorHelp(
        None, None, "Salesforce refused the authorization: connect with Salesforce again."),
    "API_DISABLED_FOR_ORG": ErrorHelp(
        "username",
        "This Salesforce org or user has no API access.",
        "Enterprise, Unlimited or Developer edition is needed, or API access added to the "
        "user's profile.",
    ),
    "LOGIN_MUST_USE_SECURITY_TOKEN": ErrorHelp(
        "security_token", "Salesforce asks for the security token with this login.",
        "Enter the security token: avatar → Settings → Reset My Security Token e-mails it.",
    ),
}


class HostNotAllowed(Exception):
    """A request to a host outside the Salesforce allowlist (raised before any I/O)."""

    def __init__(self, host: str | None) -> None:
        super().__init__(f"refusing to contact {host!r}: not a Salesforce host")
        self.host = host


_MY_DOMAIN = re.compile(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:--[a-z0-9]+)?"
    r"(?:\.sandbox|\.develop|\.scratch)?\.my\.salesforce\.com$"
)


def sandbox_url() -> str | None:
    value = current_app.config.get("SALESFORCE_SANDBOX_URL")
    return str(value).rstrip("/") if value else None


def sandbox_netloc() -> str | None:
    url = sandbox_url()
    return urlsplit(url).netloc if url else None


def is_salesforce_host(host: str | None, *, sandbox: str | None = None) -> bool:
    """login/test.salesforce.com, *.my.salesforce.com, or the configured sandbox's host:port."""
    if not host:
        return False
    host = host.lower().rstrip(".")
    if sandbox and host == sandbox.lower():
        return True
    try:
        ipaddress.ip_address(host.split(":")[0].strip("[]"))
        return False  # never a bare IP (169.254.169.254, 127.0.0.1, ...)
    except ValueError:
        pass
    if ":" in host:
        return False
    return host in LOGIN_HOSTS or bool(_MY_DOMAIN.match(host))


def normalise_my_domain(value: str) -> str:
    """'https://acme.my.salesforce.com/' → 'acme.my.salesforce.com', or ValueError."""
    text = value.strip()
    if not text:
        return ""
    parts = urlsplit(text if "://" in text else f"https://{text}")
    if parts.scheme != "https" or parts.username or parts.password or parts.port:
        raise ValueError("Enter your My Domain as acme.my.salesforce.com (https, no port).")
    host = (parts.hostname or "").lower()
    if not _MY_DOMAIN.match(host) or parts.path not in ("", "/") or parts.query:
        raise ValueError(
            "Only Salesforce addresses ending in .my.salesforce.com can be used here."
        )
    return host


class AllowlistSession(requests.Session):
    """A requests session that only talks to allowed hosts and never follows redirects.

    Redirects are switched off per request in `send` (a 3xx comes back to the
    caller as is), so a Salesforce host cannot bounce us to another one.
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


def make_session(timeout: float | None = None) -> AllowlistSession:
    """The only way the app reaches Salesforce (or, when configured, the sandbox)."""
    sandbox = sandbox_netloc()
    limit = timeout or float(current_app.config["CONNECTION_TEST_TIMEOUT_SECONDS"])
    session = AllowlistSession(lambda host: is_salesforce_host(host, sandbox=sandbox), limit)
    url = sandbox_url()
    if url:
        adapter = SandboxAdapter(url)
        for host in (*LOGIN_HOSTS, sandbox):
            session.mount(f"https://{host}/", adapter)
    return session


def login_host(details: Mapping[str, Any]) -> str:
    """Where logins and OAuth go: My Domain, else login./test.salesforce.com."""
    if details.get("my_domain"):
        return str(details["my_domain"])
    return "test.salesforce.com" if details.get("environment") == "sandbox" else (
        "login.salesforce.com")


def connector_config(details: Mapping[str, Any]) -> dict[str, Any]:
    """Non-secret settings stored with the connection (and read by the pipelines)."""
    host = login_host(details)
    config: dict[str, Any] = {
        "auth": details.get("auth_method", "oauth"),
        "domain": host.removesuffix(".salesforce.com"),
    }
    if sandbox_url():
        config["sandbox_url"] = sandbox_url()
    client_id = current_app.config.get("SALESFORCE_CLIENT_ID") or (
        "accrue-concierge" if sandbox_url() else None)
    if client_id:
        config["client_id"] = client_id
    return config


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


def test_salesforce(
    secrets: Mapping[str, Any], config: Mapping[str, Any], *, discover: bool = True
) -> TestOutcome:
    """Log in with the stored secret, make one cheap call, then count what will be imported."""
    from connectors.salesforce import SalesforceConnector

    started = time.monotonic()
    session = make_session()
    connector = SalesforceConnector(
        secrets, {**config, "max_attempts": 1, "timeout_seconds": session._timeout},
        session=session,
    )
    try:
        result: CheckResult = connector.check()
        if not result.ok:
            return _failed(result, started)
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
        return TestOutcome(False, "That address is not a Salesforce address.", "my_domain",
                           "Use your-company.my.salesforce.com, or leave My Domain blank.",
                           time.monotonic() - started)
    except ConnectorError as exc:
        return TestOutcome(False, str(exc), None, exc.hint, time.monotonic() - started)
    finally:
        connector.close()


def _failed(result: CheckResult, started: float) -> TestOutcome:
    """A refused test in the admin's words: one message, one hint, a field only if known."""
    message, field_name, hint = result.message, result.field, result.hint
    for code, known in HINTS.items():
        if code in result.message:
            message, field_name, hint = known.message or message, known.field, known.hint
            break
    if "unreachable" in result.message.lower():
        hint = hint or "Salesforce did not answer in time: check the environment and retry."
    return TestOutcome(False, message, field_name, hint, time.monotonic() - started)
