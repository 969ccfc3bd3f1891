"""Salesforce OAuth 2.0 web-server flow with PKCE: the sandbox's side and the concierge's."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests
from flask import Flask

from accrue import tenants
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    Admin,
    admin_fixture,
    app_fixture,
    concierge_db_url_fixture,
    location,
)
from connectors.salesforce.connector import SalesforceConnector
from connectors.salesforce.sandbox import RunningSandbox

REDIRECT = "https://app.example/callback"


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _authorize(sandbox: RunningSandbox, verifier: str, **overrides: str) -> requests.Response:
    params = {"response_type": "code", "client_id": "test-app", "redirect_uri": REDIRECT,
              "state": "s1", "code_challenge": _challenge(verifier),
              "code_challenge_method": "S256", "scope": "api refresh_token"}
    params.update(overrides)
    page = requests.get(f"{sandbox.url}/services/oauth2/authorize?{urlencode(params)}", timeout=5,
                        allow_redirects=False)
    if page.status_code != 200:
        return page
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
    fields = {k: v.replace("&amp;", "&") for k, v in fields.items()}
    return requests.post(f"{sandbox.url}/services/oauth2/authorize",
                         data={**fields, "decision": "allow"}, allow_redirects=False, timeout=5)


def _code(response: requests.Response) -> str:
    assert response.status_code == 302, response.text
    return dict(parse_qsl(urlsplit(response.headers["Location"]).query))["code"]


def _token(sandbox: RunningSandbox, **form: str) -> requests.Response:
    return requests.post(f"{sandbox.url}/services/oauth2/token", data=form, timeout=5)


def test_sandbox_code_with_pkce_gives_tokens_once(sf_sandbox: RunningSandbox) -> None:
    verifier = secrets.token_urlsafe(48)
    code = _code(_authorize(sf_sandbox, verifier))
    exchange = {"grant_type": "authorization_code", "code": code, "client_id": "test-app",
                "redirect_uri": REDIRECT, "code_verifier": verifier}
    tokens = _token(sf_sandbox, **exchange)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert {"access_token", "refresh_token", "instance_url", "id", "token_type",
            "issued_at", "signature"} <= set(body)
    sf = requests.get(f"{sf_sandbox.url}/services/data/v59.0/limits/", timeout=5,
                      headers={"Authorization": f"Bearer {body['access_token']}"})
    assert sf.status_code == 200
    replay = _token(sf_sandbox, **exchange)
    assert replay.status_code == 400 and replay.json() == {
        "error": "invalid_grant", "error_description": "authorization code already used"}
    # Replaying a code revokes what it issued (RFC 6749 §4.1.2).
    refreshed = _token(sf_sandbox, grant_type="refresh_token",
                       refresh_token=body["refresh_token"], client_id="test-app")
    assert refreshed.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(("change", "error", "description"), [
    ({"code_verifier": "wrong-verifier-" + "x" * 40}, "invalid_grant", "invalid code verifier"),
    ({"redirect_uri": "https://other.example/cb"}, "redirect_uri_mismatch",
     "redirect_uri must match configuration"),
    ({"client_id": "another-app"}, "invalid_client_id", "client identifier invalid"),
    ({"code": "not-a-code"}, "invalid_grant", "invalid authorization code"),
    ({"grant_type": "implicit"}, "unsupported_grant_type", "grant type not supported"),
])
def test_sandbox_token_errors_use_salesforce_oauth_shape(
    sf_sandbox: RunningSandbox, change: dict[str, str], error: str, description: str
) -> None:
    verifier = secrets.token_urlsafe(48)
    code = _code(_authorize(sf_sandbox, verifier))
    form = {"grant_type": "authorization_code", "code": code, "client_id": "test-app",
            "redirect_uri": REDIRECT, "code_verifier": verifier, **change}
    response = _token(sf_sandbox, **form)
    assert response.status_code == 400
    assert response.json() == {"error": error, "error_description": description}


def test_sandbox_authorize_requires_s256_and_refuses_bad_redirects(
    sf_sandbox: RunningSandbox
) -> None:
    missing = _authorize(sf_sandbox, "v" * 50, code_challenge="")
    assert missing.status_code == 302
    assert dict(parse_qsl(urlsplit(missing.headers["Location"]).query))["error"] == (
        "invalid_request")
    plain = _authorize(sf_sandbox, "v" * 50, code_challenge_method="plain")
    assert "error=invalid_request" in plain.headers["Location"]
    bad_redirect = _authorize(sf_sandbox, "v" * 50, redirect_uri="javascript:alert(1)")
    assert bad_redirect.status_code == 400 and "Location" not in bad_redirect.headers
    forged = requests.post(f"{sf_sandbox.url}/services/oauth2/authorize", data={
        "response_type": "code", "client_id": "x", "redirect_uri": REDIRECT,
        "code_challenge": "c", "code_challenge_method": "S256", "decision": "allow",
        "consent_token": "forged"}, allow_redirects=False, timeout=5)
    assert forged.status_code == 400


def test_sandbox_expired_code_is_refused(sf_sandbox: RunningSandbox) -> None:
    verifier = secrets.token_urlsafe(48)
    code = _code(_authorize(sf_sandbox, verifier))
    sf_sandbox.sandbox.clock.advance(minutes=16)
    response = _token(sf_sandbox, grant_type="authorization_code", code=code,
                      client_id="test-app", redirect_uri=REDIRECT, code_verifier=verifier)
    assert response.json() == {"error": "invalid_grant",
                               "error_description": "expired authorization code"}


def test_connector_refreshes_an_expired_access_token_and_goes_on(
    sf_sandbox: RunningSandbox
) -> None:
    verifier = secrets.token_urlsafe(48)
    code = _code(_authorize(sf_sandbox, verifier))
    tokens = _token(sf_sandbox, grant_type="authorization_code", code=code,
                    client_id="test-app", redirect_uri=REDIRECT, code_verifier=verifier).json()
    connector = SalesforceConnector(
        {"access_token": tokens["access_token"], "refresh_token": tokens["refresh_token"],
         "instance_url": tokens["instance_url"]},
        {"sandbox_url": sf_sandbox.url, "client_id": "test-app", "max_attempts": 2},
    )
    with connector:
        assert connector.check().ok
        before = connector.count("opportunity")
        expired = requests.post(f"{sf_sandbox.url}/_sandbox/sessions/expire", timeout=5)
        assert expired.json()["expired"] >= 1
        assert connector.count("opportunity") == before  # refreshed, then repeated
        assert connector._secrets["access_token"] != tokens["access_token"]
    revoked = SalesforceConnector(
        {"access_token": "expired", "refresh_token": "revoked-token",
         "instance_url": tokens["instance_url"]},
        {"sandbox_url": sf_sandbox.url, "client_id": "test-app", "max_attempts": 1},
    )
    with revoked:
        result = revoked.check()
    assert not result.ok and "refresh token" in result.message


def test_password_grant_and_legacy_refresh_still_work(sf_sandbox: RunningSandbox) -> None:
    response = _token(sf_sandbox, grant_type="password", username=sf_sandbox.username,
                      password=sf_sandbox.password + sf_sandbox.security_token)
    assert "access_token" in response.json()
    legacy = _token(sf_sandbox, grant_type="refresh_token",
                    refresh_token=sf_sandbox.security_token)
    assert "access_token" in legacy.json()


# -- the concierge's side ------------------------------------------------------------------


def _connect(admin: Admin, sandbox: RunningSandbox) -> Any:
    admin.signup()
    admin.start()
    admin.choose_crm()
    return admin.oauth_connect(sandbox)


def test_connect_with_salesforce_end_to_end(app: Flask, admin: Admin,
                                            sf_sandbox: RunningSandbox) -> None:
    callback = _connect(admin, sf_sandbox)
    assert location(callback) == "/onboarding/details"
    page = admin.client.get("/onboarding/details").get_data(as_text=True)
    assert "Connected to Salesforce" in page and "Connected to Salesforce; " in page
    engine = app.extensions["accrue_warehouse"]
    connection = tenants.load_connection(engine, admin.tenant_id)
    assert set(connection.secrets) == {"access_token", "refresh_token", "instance_url"}
    assert connection.config["auth"] == "oauth" and connection.config["client_id"]
    for secret in (connection.secrets["access_token"], connection.secrets["refresh_token"]):
        assert secret not in page
    assert location(admin.post("/onboarding/details", {
        "auth_method": "oauth", "environment": "production", "action": "continue"})) == (
        "/onboarding/review")
    assert location(admin.review()) == "/onboarding/terms"
    admin.terms()
    assert location(admin.finish()) == "/status"
    assert tenants.require_tenant(engine, admin.tenant_id).status == "active"


def test_denied_consent_saves_nothing(app: Flask, admin: Admin,
                                      sf_sandbox: RunningSandbox) -> None:
    admin.signup()
    admin.start()
    admin.choose_crm()
    callback = admin.client.get(admin.authorize(sf_sandbox, decision="deny"))
    assert location(callback) == "/onboarding/details"
    page = admin.client.get("/onboarding/details").get_data(as_text=True)
    assert "You chose not to allow access" in page
    engine = app.extensions["accrue_warehouse"]
    assert tenants.connection_info(engine, admin.tenant_id) is None


def test_wrong_reused_or_foreign_state_is_refused(app: Flask, admin: Admin,
                                                  sf_sandbox: RunningSandbox) -> None:
    admin.signup()
    admin.start()
    admin.choose_crm()
    callback = admin.authorize(sf_sandbox)
    path, _, query = callback.partition("?")
    params = dict(parse_qsl(query))
    wrong = admin.client.get(f"{path}?{urlencode({**params, 'state': 'guessed'})}")
    assert wrong.status_code == 400 and "not valid here" in wrong.get_data(as_text=True)
    missing = admin.client.get(f"{path}?code={params['code']}")
    assert missing.status_code == 400
    # Another admin (another session and tenant) cannot use this admin's state.
    other = Admin(app.test_client())
    other.signup("Other Co")
    assert other.client.get(callback).status_code == 400
    assert location(admin.client.get(callback)) == "/onboarding/details"  # the real one works
    assert admin.client.get(callback).status_code == 400  # and only once
    engine = app.extensions["accrue_warehouse"]
    assert tenants.connection_info(engine, other.tenant_id) is None


def test_state_is_bound_to_the_login_session(app: Flask, admin: Admin,
                                             sf_sandbox: RunningSandbox) -> None:
    admin.signup()
    admin.start()
    admin.choose_crm()
    callback = admin.authorize(sf_sandbox)
    admin.logout()
    admin.login()  # same admin, new session
    assert admin.client.get(callback).status_code == 400


def test_logged_out_callback_goes_to_login(app: Flask, sf_sandbox: RunningSandbox) -> None:
    response = app.test_client().get("/onboarding/oauth/callback?code=x&state=y")
    assert location(response) == "/auth/login"
