"""Close as the concierge, the CLI and the tests see it: one API key, one host.

Cheap to import on purpose (no closeio_api): the concierge reads every CRM's spec to
draw Select CRM. See connectors/spec.py for what each part means.
"""

from __future__ import annotations

from connectors.spec import AuthMethod, ConnectorSpec, ErrorHint, SetupField

SPEC = ConnectorSpec(
    key="close",
    name="Close",
    tagline="Connect with an API key from your Close settings.",
    connector="connectors.close.connector:CloseConnector",
    sandbox="connectors.close.sandbox.harness:CloseHarness",
    fields=(
        SetupField(
            "api_key", "API key",
            "Settings → Developer → API Keys → + New API Key. Close shows the key once: "
            "copy it whole. It acts as the user who created it, so create it as a user who "
            "sees every lead.",
            secret=True, kind="password", env="ACCRUE_CLOSE_API_KEY"),
    ),
    auth_methods=(AuthMethod("api_key", "API key", "api_key", fields=("api_key",),
                             recommended=True),),
    allowed_hosts=("api.close.com",),
    # Close has no products, price books or line items, and its leads are the companies
    # (common `account`): there is no separate common `lead` to offer.
    objects=("account", "contact", "opportunity", "user", "activity"),
    error_hints=(
        ErrorHint(
            "HTTP 401",
            "The key was mistyped, deleted or belongs to another organization: create a new "
            "one in Settings → Developer → API Keys.",
            field="api_key", message="Close did not accept this API key."),
        ErrorHint(
            "HTTP 429",
            "Close's rate limit for this key is spent (integrations share the organization's "
            "limit); the sync resumes by itself."),
        ErrorHint(
            "HTTP 402",
            "Your Close plan does not include API access or a plan limit was reached."),
    ),
    docs=("Leads as accounts (industry, size, revenue and owner from lead custom fields), "
          "contacts, opportunities (value in cents as amount; the value at list price from "
          "the opportunity custom field \"List Price\"; stage from the opportunity status), "
          "users and, when switched on, calls, e-mails, meetings and tasks as activities; "
          "deletes through the event log (30 days), then an id reconciliation."),
    unreachable_hint="Close did not answer in time: retry in a minute.",
)
