"""SugarCRM as the concierge, the CLI and the tests see it: an instance URL and an API user.

Cheap to import on purpose (no client, no sandbox): the concierge reads every CRM's spec
to draw Select CRM. See connectors/spec.py for what each part means.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from connectors.spec import AuthMethod, ConnectorSpec, ErrorHint, SetupField, SetupValueError

# SugarCloud serves every instance from a name under these domains.
CLOUD_DOMAINS = ("*.sugarondemand.com", "*.sugarcrm.com", "*.sugarcrm.eu")


def prepare(secrets: dict[str, str], config: dict[str, Any]
            ) -> tuple[dict[str, str], dict[str, Any]]:
    """The instance URL as `https://host[/path]`, without the `/rest/...` an admin may paste."""
    url = str(config["instance_url"]).strip()
    if "://" not in url:
        url = f"https://{url}"
    parts = urlsplit(url)
    path = parts.path.split("/rest/", 1)[0].split("/#", 1)[0].rstrip("/")
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.port:
        raise SetupValueError("instance_url", "Enter the https address you open Sugar at, "
                              "e.g. https://acme.sugarondemand.com.")
    config["instance_url"] = f"https://{parts.hostname.lower()}{path}"
    return secrets, config


SPEC = ConnectorSpec(
    key="sugarcrm",
    name="SugarCRM",
    tagline="Connect with an API user's username and password (REST v11).",
    connector="connectors.sugarcrm.connector:SugarConnector",
    sandbox="connectors.sugarcrm.sandbox.harness:SugarHarness",
    prepare="connectors.sugarcrm.spec:prepare",
    fields=(
        SetupField(
            "instance_url", "Sugar instance URL",
            "The address you open Sugar at in the browser, e.g. "
            "https://acme.sugarondemand.com (SugarCloud).",
            kind="url", placeholder="https://acme.sugarondemand.com", identifies_account=True),
        SetupField(
            "username", "Username",
            "The user Accrue signs in as: best a dedicated API user (Admin → User Management "
            "→ Create New User, user type Regular) who sees every record to import."),
        SetupField(
            "password", "Password", "That user's Sugar password.",
            secret=True, kind="password", env="ACCRUE_SUGARCRM_PASSWORD"),
        SetupField(
            "client_id", "OAuth client ID",
            "Leave \"sugar\" (Sugar's own client) unless your admin made an OAuth key for "
            "Accrue: Admin → OAuth Keys → Consumer Key.",
            default="sugar", demo_hidden=True),
        SetupField(
            "client_secret", "OAuth client secret",
            "Empty for the \"sugar\" client; else the OAuth key's Consumer Secret.",
            secret=True, kind="password", required=False, demo_hidden=True,
            env="ACCRUE_SUGARCRM_CLIENT_SECRET"),
        SetupField(
            "platform", "API platform",
            "Sugar keeps one session per user and platform: register a platform for Accrue "
            "(Admin → Configure API Platforms → add \"accrue\") so Accrue never signs the "
            "user out of the web (platform \"base\") or the app (\"mobile\").",
            default="accrue", pattern=r"[A-Za-z0-9_-]{1,64}",
            pattern_message="A platform name is letters, digits, _ and -.", demo_hidden=True),
    ),
    auth_methods=(
        AuthMethod("password", "Username and password (OAuth 2.0 password grant)", "password",
                   fields=("instance_url", "username", "password", "client_id",
                           "client_secret", "platform"), recommended=True),
    ),
    allowed_hosts=CLOUD_DOMAINS,
    objects=("user", "account", "contact", "lead", "product", "opportunity",
             "opportunity_line", "activity"),
    error_hints=(
        ErrorHint("need_login", "Sugar did not accept this username and password: sign in "
                  "to Sugar with them once to check (a user may have to change a first "
                  "password).", field="password",
                  message="SugarCRM did not accept this username and password."),
        ErrorHint("invalid_client", "Sugar does not know this OAuth client and secret: "
                  "leave \"sugar\" with an empty secret, or copy the OAuth key from Admin → "
                  "OAuth Keys.", field="client_id"),
        ErrorHint("invalid_platform", "Register the platform in Sugar (Admin → Configure "
                  "API Platforms) or use one listed there.", field="platform"),
        ErrorHint("HTTP 429", "Sugar is limiting this user's API calls; the sync resumes by "
                  "itself."),
        ErrorHint("maintenance", "The Sugar instance is in maintenance mode: retry when it "
                  "is back."),
    ),
    docs=("Users (with their managers) as users, accounts, contacts, leads, product "
          "templates as products, opportunities and their revenue line items and, when "
          "switched on, calls, meetings, tasks and e-mails as activities, read with "
          "the REST v11 filter API in (date_modified, id) order; deletes with "
          "deleted=true (Sugar deletes softly), and an id reconciliation after Sugar's "
          "monthly prune."),
    unreachable_hint="SugarCRM did not answer in time: check the instance URL and retry.",
)
