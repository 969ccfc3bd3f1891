"""Salesforce as the concierge, the CLI and the tests see it: fields, sign-in, hosts, hints.

Cheap to import on purpose (no simple-salesforce): the concierge reads every CRM's spec
to draw Select CRM. See connectors/spec.py for what each part means.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from connectors.spec import (
    AuthMethod,
    ConnectorSpec,
    ErrorHint,
    OAuth2Flow,
    SetupField,
    SetupValueError,
)

LOGIN_HOSTS = ("login.salesforce.com", "test.salesforce.com")
MY_DOMAIN = re.compile(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:--[a-z0-9]+)?"
    r"(?:\.sandbox|\.develop|\.scratch)?\.my\.salesforce\.com$"
)
_USERNAME = r"[^@\s]+@[^@\s]+\.[^@\s]+"

SPEC = ConnectorSpec(
    key="salesforce",
    name="Salesforce",
    product="Salesforce Sales Cloud",
    tagline="Connect in one click with your Salesforce login.",
    connector="connectors.salesforce.connector:SalesforceConnector",
    prepare="connectors.salesforce.spec:prepare",
    sandbox="connectors.salesforce.sandbox.harness:SalesforceHarness",
    fields=(
        SetupField(
            "environment", "Salesforce environment",
            "Production is the org your sales team works in (login.salesforce.com). Choose "
            "Sandbox only for a Salesforce test copy (test.salesforce.com).",
            kind="choice", choices=(("production", "Production"), ("sandbox", "Sandbox")),
            default="production", demo_hidden=True, identifies_account=True),
        SetupField(
            "my_domain", "My Domain (optional)",
            "Only if your company logs in at its own address: in Salesforce, Setup → My "
            "Domain shows it, e.g. acme.my.salesforce.com. Leave blank otherwise.",
            required=False, placeholder="acme.my.salesforce.com", demo_hidden=True,
            identifies_account=True),
        SetupField(
            "username", "Salesforce username",
            "The username of the integration user, shaped like an e-mail address. "
            "Salesforce: your avatar (top right) → Settings → Personal Information → "
            "Username.",
            kind="email", pattern=_USERNAME,
            pattern_message="A Salesforce username looks like an e-mail address.",
            env="ACCRUE_SALESFORCE_USERNAME"),
        SetupField(
            "password", "Password", "That user's Salesforce password.",
            secret=True, kind="password", env="ACCRUE_SALESFORCE_PASSWORD"),
        SetupField(
            "security_token", "Security token",
            "Salesforce e-mails it: avatar → Settings → My Personal Information → Reset My "
            "Security Token. A new one is sent whenever the password changes.",
            secret=True, kind="password", required=False,
            env="ACCRUE_SALESFORCE_SECURITY_TOKEN"),
    ),
    auth_methods=(
        AuthMethod(
            "oauth", "Connect with Salesforce (recommended)", "oauth2_code",
            fields=("environment", "my_domain"), recommended=True,
            oauth=OAuth2Flow(
                authorize_path="/services/oauth2/authorize",
                token_path="/services/oauth2/token",
                scopes=("api", "refresh_token"),
                token_secret_keys=("access_token", "refresh_token", "instance_url"),
                instance_url_key="instance_url",
                client_id_env="ACCRUE_SALESFORCE_CLIENT_ID",
                client_secret_env="ACCRUE_SALESFORCE_CLIENT_SECRET",
            )),
        AuthMethod(
            "password", "Username, password and security token", "password",
            fields=("environment", "my_domain", "username", "password", "security_token")),
    ),
    allowed_hosts=(*LOGIN_HOSTS, "*.my.salesforce.com"),
    objects=("account", "contact", "lead", "opportunity", "opportunity_line", "product",
             "price_book_entry", "user", "activity"),
    error_hints=(
        # INVALID_LOGIN is the same answer for a wrong username, password or token and a
        # locked-out user: no single field is to blame.
        ErrorHint(
            "INVALID_LOGIN",
            "It does not say which one is wrong: check the password first. The security "
            "token changes whenever the password changes (avatar → Settings → Reset My "
            "Security Token e-mails the new one). A user locked out after too many attempts "
            "gets the same answer.",
            message="Salesforce did not accept this username, password and security token."),
        ErrorHint("invalid_grant",
                  "Salesforce refused the authorization: connect with Salesforce again."),
        ErrorHint(
            "API_DISABLED_FOR_ORG",
            "Enterprise, Unlimited or Developer edition is needed, or API access added to "
            "the user's profile.",
            field="username", message="This Salesforce org or user has no API access."),
        ErrorHint(
            "LOGIN_MUST_USE_SECURITY_TOKEN",
            "Enter the security token: avatar → Settings → Reset My Security Token e-mails "
            "it.",
            field="security_token",
            message="Salesforce asks for the security token with this login."),
    ),
    docs=("Accounts, contacts, leads, opportunities with their products (line items), "
          "products, price book entries, users and, when switched on, tasks and events as "
          "activities; deletes through the recycle bin and getDeleted."),
    unreachable_hint="Salesforce did not answer in time: check the environment and retry.",
)


def normalise_my_domain(value: str) -> str:
    """'https://acme.my.salesforce.com/' → 'acme.my.salesforce.com', or SetupValueError."""
    text = value.strip()
    if not text:
        return ""
    parts = urlsplit(text if "://" in text else f"https://{text}")
    if parts.scheme != "https" or parts.username or parts.password or parts.port:
        raise SetupValueError(
            "my_domain", "Enter your My Domain as acme.my.salesforce.com (https, no port).")
    host = (parts.hostname or "").lower()
    if not MY_DOMAIN.match(host) or parts.path not in ("", "/") or parts.query:
        raise SetupValueError(
            "my_domain", "Only Salesforce addresses ending in .my.salesforce.com can be used "
            "here.")
    return host


def prepare(secrets: dict[str, str], config: dict[str, Any]) -> tuple[dict[str, str],
                                                                       dict[str, Any]]:
    """Where logins and OAuth go (My Domain, else login./test.salesforce.com), for the
    adapter's `domain` and the OAuth flow's `login_host`; the username is not a secret but
    is only ever used to log in, so it travels with the secrets."""
    my_domain = normalise_my_domain(str(config.get("my_domain", "")))
    if my_domain:
        config["my_domain"] = my_domain
    host = my_domain or ("test.salesforce.com" if config.get("environment") == "sandbox"
                         else "login.salesforce.com")
    config["login_host"] = host
    config["domain"] = host.removesuffix(".salesforce.com")
    if "username" in config:
        secrets["username"] = str(config.pop("username"))
    return secrets, config
