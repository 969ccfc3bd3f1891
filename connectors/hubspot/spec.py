"""HubSpot as the concierge, the CLI and the tests see it: a private app's token or OAuth.

Cheap to import on purpose (no hubspot-api-client): the concierge reads every CRM's spec
to draw Select CRM. See connectors/spec.py for what each part means.
"""

from __future__ import annotations

from connectors.spec import AuthMethod, ConnectorSpec, ErrorHint, OAuth2Flow, SetupField

# The CRM read scopes the adapter needs (a private app ticks the same ones).
SCOPES = ("oauth", "crm.objects.companies.read", "crm.objects.contacts.read",
          "crm.objects.deals.read", "crm.objects.line_items.read",
          "crm.objects.products.read", "crm.objects.owners.read")

SPEC = ConnectorSpec(
    key="hubspot",
    name="HubSpot",
    tagline="Connect with HubSpot, or paste a private app's access token.",
    connector="connectors.hubspot.connector:HubSpotConnector",
    sandbox="connectors.hubspot.sandbox.harness:HubSpotHarness",
    fields=(
        SetupField(
            "access_token", "Private app access token",
            "Settings (gear) → Integrations → Private Apps → Create a private app; on Scopes "
            "tick the CRM read scopes for companies, contacts, deals, line items, products "
            "and owners; create it, then Auth → Show token and copy it (it starts with "
            "pat-).",
            secret=True, kind="password", pattern=r"\S+",
            pattern_message="Paste the token without spaces.",
            env="ACCRUE_HUBSPOT_ACCESS_TOKEN"),
    ),
    auth_methods=(
        AuthMethod(
            "oauth", "Connect with HubSpot (recommended)", "oauth2_code", recommended=True,
            oauth=OAuth2Flow(
                authorize_path="/oauth/authorize",
                token_path="/oauth/v1/token",
                scopes=SCOPES,
                token_secret_keys=("access_token", "refresh_token"),
                client_id_env="ACCRUE_HUBSPOT_CLIENT_ID",
                client_secret_env="ACCRUE_HUBSPOT_CLIENT_SECRET",
                authorize_host="app.hubspot.com",
            )),
        AuthMethod("private_app", "Private app access token", "api_key",
                   fields=("access_token",)),
    ),
    # api.hubapi.com serves the API and the token endpoint (first: the OAuth exchange's
    # host); app.hubspot.com is where the browser signs in (`authorize_host`).
    allowed_hosts=("api.hubapi.com", "app.hubspot.com"),
    # HubSpot's deals carry line items and products; its leads, quotes and engagements are
    # not read yet.
    objects=("account", "contact", "opportunity", "opportunity_line", "product", "user"),
    error_hints=(
        ErrorHint(
            "INVALID_AUTHENTICATION",
            "The token was mistyped, rotated or its app deleted: copy it again from "
            "Settings → Integrations → Private Apps → the app → Auth.",
            field="access_token", message="HubSpot did not accept this access token."),
        ErrorHint(
            "EXPIRED_AUTHENTICATION",
            "HubSpot's sign-in ran out and could not be renewed: connect with HubSpot again."),
        ErrorHint(
            "MISSING_SCOPES",
            "The app lacks a CRM read scope: tick the read scopes for companies, contacts, "
            "deals, line items, products and owners.", field="access_token",
            message="HubSpot refused a call: a scope is missing."),
        ErrorHint(
            "HTTP 429",
            "HubSpot's API limit for the portal is spent (integrations share it); the sync "
            "resumes by itself."),
    ),
    docs=("Companies as accounts, contacts, deals as opportunities (stage labels and "
          "won / lost from the deal pipelines, the company from the deal's association), "
          "line items with their deal, products and owners as users; deletes from the "
          "archived lists (HubSpot keeps them 90 days), then an id reconciliation."),
    unreachable_hint="HubSpot did not answer in time: retry in a minute.",
)
