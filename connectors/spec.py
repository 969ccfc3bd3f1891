"""What a CRM package declares about itself, so nothing outside it has to know the CRM.

After Fivetran's Connector SDK configuration form: a connector's own spec lists the
setup fields (label, where to find the value, secret or not), the ways it can sign in,
the hosts a connection may reach (the concierge's SSRF allowlist), the objects it
offers, and what its error codes mean for the admin. The concierge, the CLI, the demo
and the contract tests are built from these specs; `connectors.registry` collects them.

A spec module must stay cheap to import (no client library, no sandbox): the concierge
imports every spec to draw its CRM list. The adapter, the connection preparer and the
sandbox harness are named by import path ("package.module:attribute") and loaded only
when used.
"""

from __future__ import annotations

import fnmatch
import importlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

FieldKind = Literal["text", "email", "password", "choice", "url", "multiline"]
AuthKind = Literal["oauth2_code", "oauth2_m2m", "oauth1_tba", "password", "api_key"]


@dataclass(frozen=True)
class SetupField:
    """One value the admin types in (or picks) on Provide Details."""

    name: str  # the key in the connection's secrets (secret) or config (not secret)
    label: str
    help: str  # "where do I find this?", in the CRM's own menu words
    secret: bool = False  # sealed with the credentials; never shown back, never logged
    kind: FieldKind = "text"
    required: bool = True
    choices: tuple[tuple[str, str], ...] = ()  # (value, label) for kind "choice"
    default: str = ""
    placeholder: str = ""
    pattern: str | None = None  # a regular expression the whole value must match
    pattern_message: str = ""  # what to tell the admin when it does not
    env: str | None = None  # the environment variable `accrue tenant add` reads it from
    demo_hidden: bool = False  # not offered when the concierge talks to a sandbox
    # Picks which org/account is connected: signing in again later may not change it (the
    # records of another org would mix with those Accrue holds).
    identifies_account: bool = False


@dataclass(frozen=True)
class OAuth2Flow:
    """A browser sign-in (authorization code + PKCE): where to send the admin, and back."""

    authorize_path: str  # on the login host, e.g. "/services/oauth2/authorize"
    token_path: str
    scopes: tuple[str, ...]
    # Token-response keys kept (sealed) as the connection's secrets.
    token_secret_keys: tuple[str, ...] = ("access_token", "refresh_token")
    # A token-response key holding the URL the API is served from (checked against the
    # allowed hosts before it is stored), if the CRM sends one.
    instance_url_key: str | None = None
    client_id_env: str = ""  # ACCRUE_<CRM>_CLIENT_ID
    client_secret_env: str = ""
    # Where the browser signs in, when that is not the first allowed host (which serves the
    # token endpoint): HubSpot's consent page is on app.hubspot.com, its tokens on
    # api.hubapi.com. None: the first allowed host (or the org's login host) for both.
    authorize_host: str | None = None


@dataclass(frozen=True)
class AuthMethod:
    """One way to sign in; `fields` are the setup fields this way needs."""

    key: str  # stored in the connection's config as "auth"
    label: str
    kind: AuthKind
    fields: tuple[str, ...] = ()
    oauth: OAuth2Flow | None = None
    recommended: bool = False
    legacy_note: str = ""  # e.g. "Oracle ends new token-based integrations in 2027.1"


@dataclass(frozen=True)
class ErrorHint:
    """What one of the CRM's error codes means for the admin, and the field to fix."""

    code: str  # found in the check's message (the CRM's own code)
    hint: str
    field: str | None = None  # None: the error does not say which field is wrong
    message: str | None = None  # replaces the CRM's coded text (None: keep it)


@dataclass(frozen=True)
class ConnectorSpec:
    key: str  # slug: tenant.crm_type, partition and queue names
    name: str  # as the vendor spells it, as said in sentences ("Connect with Salesforce")
    tagline: str  # one line on Select CRM
    connector: str  # "package.module:Class", built as Class(secrets, config, session=...)
    fields: tuple[SetupField, ...]
    auth_methods: tuple[AuthMethod, ...]
    # Hosts a connection may reach: exact names or `*.` patterns ("*.my.salesforce.com").
    allowed_hosts: tuple[str, ...]
    objects: tuple[str, ...]  # common objects offered (connectors.common_model)
    error_hints: tuple[ErrorHint, ...] = ()
    # "package.module:function" turning the admin's values into (secrets, config), raising
    # SetupValueError for a value it cannot use; None: secret fields → secrets, others →
    # config.
    prepare: str | None = None
    # "package.module:Class" implementing connectors.sandbox_kit.harness.SandboxHarness.
    sandbox: str | None = None
    docs: str = ""  # what the README and docs/connectors.md say it syncs
    product: str = ""  # the full product name where CRMs are listed; default: `name`
    unreachable_hint: str = "The CRM did not answer in time: check the details and retry."

    @property
    def sandbox_url_env(self) -> str:
        """The variable naming a local sandbox that stands in for every host of this CRM."""
        return f"ACCRUE_{self.key.upper()}_SANDBOX_URL"

    def field(self, name: str) -> SetupField:
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise KeyError(f"{self.key} has no setup field {name!r}")

    def auth(self, key: str | None) -> AuthMethod:
        """The sign-in method `key`, or the recommended one (then the first) for None."""
        for method in self.auth_methods:
            if method.key == key:
                return method
        if key is not None:
            raise KeyError(f"{self.key} has no sign-in method {key!r}")
        return next((m for m in self.auth_methods if m.recommended), self.auth_methods[0])

    def fields_for(self, auth_key: str | None) -> tuple[SetupField, ...]:
        """The setup fields one sign-in method asks for, in the spec's order."""
        wanted = set(self.auth(auth_key).fields)
        return tuple(f for f in self.fields if f.name in wanted)

    def hint_for(self, message: str) -> ErrorHint | None:
        return next((h for h in self.error_hints if h.code in message), None)

    def allows_host(self, netloc: str | None) -> bool:
        """True for a host this CRM serves from; never a bare IP address or a port."""
        if not netloc:
            return False
        host = netloc.lower().rstrip(".")
        if ":" in host or "@" in host:
            return False
        try:
            ipaddress.ip_address(host.strip("[]"))
            return False  # never 169.254.169.254, 127.0.0.1, ...
        except ValueError:
            pass
        return any(_host_matches(host, pattern) for pattern in self.allowed_hosts)


class SetupValueError(ValueError):
    """A setup value the CRM cannot use; `field` names it for the form."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _host_matches(host: str, pattern: str) -> bool:
    if not pattern.startswith("*."):
        return host == pattern
    suffix = pattern[1:]  # ".my.salesforce.com"
    label_part = host[: -len(suffix)] if host.endswith(suffix) else ""
    return bool(label_part) and fnmatch.fnmatchcase(label_part, "[a-z0-9]*") and all(
        c.isalnum() or c in "-." for c in label_part)


def load(path: str) -> Any:
    """Import "package.module:attribute" (adapters and harnesses load only when used)."""
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def prepare_connection(
    spec: ConnectorSpec, values: Mapping[str, str], *, partial: bool = False
) -> tuple[dict[str, str], dict[str, Any]]:
    """(secrets, config) from the admin's values, through the spec's preparer if it has one.

    The generic rule: the chosen method's secret fields become secrets, its other fields
    config, with `auth` set to the method; a value failing its field's pattern is refused.
    `partial` (a page saved for later, a secret kept from before) lets required values
    be missing but still checks every value given.
    """
    import re

    method = spec.auth(values.get("auth") or None)
    secrets: dict[str, str] = {}
    config: dict[str, Any] = {"auth": method.key}
    for setup in spec.fields_for(method.key):
        value = (values.get(setup.name) or setup.default or "").strip()
        if not value:
            if setup.required and not partial:
                raise SetupValueError(setup.name, f"Enter the {setup.label}.")
            continue
        if setup.pattern and not re.fullmatch(setup.pattern, value):
            raise SetupValueError(setup.name, setup.pattern_message or f"Check the {setup.label}.")
        (secrets if setup.secret else config)[setup.name] = value
    if spec.prepare:
        secrets, config = load(spec.prepare)(secrets, config)
    return secrets, config


@dataclass(frozen=True)
class Catalogue:
    """The specs the registry found, in the product's order, and those only planned."""

    specs: tuple[ConnectorSpec, ...]
    planned: tuple[tuple[str, str], ...] = field(default=())  # (key, name) shown "coming soon"
