"""Oracle NetSuite as the concierge, the CLI and the tests see it.

Cheap to import on purpose (no client, no sandbox): the concierge reads every CRM's
spec to draw Select CRM. OAuth 2.0 machine-to-machine is the recommended sign-in
(Oracle creates no new token-based integrations from 2027.1); TBA stays for accounts
that already have one. See connectors/spec.py for what each part means.
"""

from __future__ import annotations

from typing import Any

from connectors.spec import AuthMethod, ConnectorSpec, ErrorHint, SetupField, SetupValueError

_INTEGRATION = "Setup → Integration → Manage Integrations → New"
_CLOCK = ("the clock of the machine signing the request is more than five minutes off: "
          "sync it (NTP) and retry.")


def prepare(secrets: dict[str, str], config: dict[str, Any]
            ) -> tuple[dict[str, str], dict[str, Any]]:
    """Account ids as NetSuite spells realms (upper case), a real time zone, a usable key."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    config["account_id"] = config["account_id"].strip().upper().replace("-", "_")
    try:
        ZoneInfo(config.get("timezone") or "America/Los_Angeles")
    except (ZoneInfoNotFoundError, ValueError):
        raise SetupValueError("timezone", "Enter a time zone name such as "
                              "America/New_York or Europe/London.") from None
    if "private_key" in secrets:
        from cryptography.hazmat.primitives import serialization

        secrets["private_key"] = _pem(secrets["private_key"])
        try:
            serialization.load_pem_private_key(secrets["private_key"].encode(), None)
        except (ValueError, TypeError):
            raise SetupValueError("private_key", "Paste the whole PEM private key, from "
                                  "its BEGIN line to its END line, unencrypted."
                                  ) from None
    return secrets, config


def _pem(text: str) -> str:
    """A PEM pasted into a one-line field (newlines turned to spaces) made whole again."""
    import re

    match = re.fullmatch(r"\s*(-----BEGIN [A-Z ]+-----)(.*?)(-----END [A-Z ]+-----)\s*", text,
                         re.DOTALL)
    if not match:
        return text
    body = "".join(match.group(2).split())
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "\n".join([match.group(1), *lines, match.group(3)]) + "\n"


SPEC = ConnectorSpec(
    key="netsuite",
    name="Oracle NetSuite",
    tagline="Connect with OAuth 2.0 (machine to machine) or token-based authentication.",
    connector="connectors.netsuite.connector:NetSuiteConnector",
    sandbox="connectors.netsuite.sandbox.harness:NetSuiteHarness",
    prepare="connectors.netsuite.spec:prepare",
    fields=(
        SetupField(
            "account_id", "Account ID", "Setup → Company → Company Information → Account ID "
            "(a sandbox's ends in _SB1).",
            placeholder="1234567 or 1234567_SB1", pattern=r"[0-9A-Za-z]+([_-][0-9A-Za-z]+)?",
            pattern_message="The Account ID is digits, maybe with a suffix such as _SB1.",
            env="ACCRUE_NETSUITE_ACCOUNT_ID"),
        SetupField(
            "timezone", "Account time zone",
            "The integration user's time zone (Home → Set Preferences → Time Zone; by "
            "default the company's, Setup → Company → Preferences → General Preferences), as "
            "a name like America/Los_Angeles. NetSuite states modification times in it.",
            default="America/Los_Angeles", env="ACCRUE_NETSUITE_TIMEZONE"),
        SetupField(
            "client_id", "Client ID",
            f"{_INTEGRATION}: tick Client Credentials (machine to machine) grant and the "
            "REST Web Services scope; NetSuite shows the Client ID once, on save.",
            secret=True, kind="password", env="ACCRUE_NETSUITE_CLIENT_ID"),
        SetupField(
            "certificate_id", "Certificate ID",
            "Setup → Integration → Manage Authentication → OAuth 2.0 Client Credentials "
            "(M2M) Setup: map the integration, the role and your certificate; copy the "
            "Certificate ID of the mapping.", env="ACCRUE_NETSUITE_CERTIFICATE_ID"),
        SetupField(
            "private_key", "Certificate private key (PEM)",
            "The private key of the certificate you uploaded in the M2M setup (RSA 3072/4096 "
            "or EC P-256/384/521), e.g. from `openssl req -new -x509 -newkey ec "
            "-pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 730 -out cert.pem "
            "-keyout key.pem`.",
            secret=True, kind="multiline", env="ACCRUE_NETSUITE_PRIVATE_KEY"),
        SetupField(
            "consumer_key", "Consumer key",
            f"{_INTEGRATION} with Token-Based Authentication ticked; shown once, on save.",
            secret=True, kind="password", env="ACCRUE_NETSUITE_CONSUMER_KEY"),
        SetupField(
            "consumer_secret", "Consumer secret", "Shown once with the consumer key.",
            secret=True, kind="password", env="ACCRUE_NETSUITE_CONSUMER_SECRET"),
        SetupField(
            "token_id", "Token ID",
            "Setup → Users/Roles → Access Tokens → New: the integration, the integration "
            "user and a role that may run SuiteQL; shown once, on save.",
            secret=True, kind="password", env="ACCRUE_NETSUITE_TOKEN_ID"),
        SetupField(
            "token_secret", "Token secret", "Shown once with the token ID.",
            secret=True, kind="password", env="ACCRUE_NETSUITE_TOKEN_SECRET"),
    ),
    auth_methods=(
        AuthMethod("oauth2_m2m", "OAuth 2.0 (machine to machine)", "oauth2_m2m",
                   fields=("account_id", "timezone", "client_id", "certificate_id",
                           "private_key"),
                   recommended=True),
        AuthMethod("oauth1_tba", "Token-based authentication (TBA)", "oauth1_tba",
                   fields=("account_id", "timezone", "consumer_key", "consumer_secret",
                           "token_id", "token_secret"),
                   legacy_note="From NetSuite 2027.1 no new token-based integrations can be "
                   "created; existing ones keep working. Prefer OAuth 2.0 for new setups."),
    ),
    allowed_hosts=("*.suitetalk.api.netsuite.com",),
    objects=("user", "account", "contact", "product", "price_book_entry", "opportunity",
             "opportunity_line", "activity"),
    error_hints=(
        ErrorHint("timestamp_refused", f"NetSuite refused the request time: {_CLOCK}"),
        ErrorHint("InvalidTimestamp", f"NetSuite refused the request time: {_CLOCK}"),
        ErrorHint("signature_invalid",
                  "The signature did not match: check the consumer secret, the token secret "
                  "and the Account ID (a sandbox's ends in _SB1).", field="token_secret"),
        ErrorHint("InvalidSignature",
                  "The signature did not match: check the secrets and the Account ID.",
                  field="token_secret"),
        ErrorHint("consumer_key_unknown",
                  "NetSuite does not know this consumer key or certificate: check it belongs "
                  "to this account (tokens are not copied when a sandbox is refreshed).",
                  field="consumer_key"),
        ErrorHint("token_rejected", "The access token was revoked, or belongs to another "
                  "integration or account: create a new one.", field="token_id"),
        ErrorHint("nonce_used", "NetSuite saw this request's nonce before: retry."),
        ErrorHint("permission_denied",
                  "A feature is off: Setup → Company → Enable Features → SuiteCloud → "
                  "Token-Based Authentication / OAuth 2.0 and REST Web Services."),
        ErrorHint("FeatureDisabled",
                  "A feature is off: Setup → Company → Enable Features → SuiteCloud."),
        ErrorHint("invalid_client", "NetSuite does not know this Client ID and Certificate "
                  "ID pair: check the M2M mapping.", field="certificate_id"),
        ErrorHint("invalid_grant", "NetSuite refused the signed assertion: the private key "
                  "must belong to the mapped certificate, and the certificate be valid.",
                  field="private_key"),
        ErrorHint("invalid_scope", "Tick the REST Web Services scope on the integration "
                  "record.", field="client_id"),
        ErrorHint("INVALID_LOGIN_ATTEMPT", "NetSuite refused the login; its Login Audit "
                  "Trail (Setup → Users/Roles → User Management) says why."),
        ErrorHint("INVALID_LOGIN", "NetSuite refused the login; its Login Audit Trail "
                  "(Setup → Users/Roles → User Management) says why."),
        ErrorHint("CONCURRENCY_LIMIT_EXCEEDED", "The account's web-services concurrency "
                  "limit is in use by other integrations; the sync retries by itself."),
    ),
    docs=("Employees as users, customers as accounts, contacts, non-inventory items as "
          "products, item prices per price level, opportunities and their item lines, read "
          "with SuiteQL over SuiteTalk REST; deletes from DeletedRecord, then an id "
          "reconciliation (lines and prices, which NetSuite logs no deletes for, every sync); "
          "when switched on, calls, to-dos and meetings as activities."),
    unreachable_hint="NetSuite did not answer in time: check the Account ID and retry.",
)
