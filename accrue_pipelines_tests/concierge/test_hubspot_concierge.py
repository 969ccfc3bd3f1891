"""Connect with HubSpot in the concierge: the spec's OAuth 2.0 code flow against the
sandbox's authorize and token endpoints, tokens sealed, and a connection that syncs and
renews its 30-minute access token by itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask

from accrue import tenants
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    Admin,
    concierge_db_url_fixture,
    location,
    make_app,
)
from accrue_pipelines_tests.fixtures_sandbox import SandboxClock
from connectors import registry
from connectors.hubspot.sandbox.harness import HubSpotHarness, RunningHubSpotSandbox


@pytest.fixture
def clock() -> SandboxClock:
    return SandboxClock()


@pytest.fixture
def portal(tmp_path: Path, clock: SandboxClock) -> Iterator[RunningHubSpotSandbox]:
    running = HubSpotHarness().start(tmp_path / "hubspot.db", opportunities=10, clock=clock)
    yield running
    running.stop()


def test_connect_with_hubspot_end_to_end(concierge_db_url: str, portal: RunningHubSpotSandbox,
                                         clock: SandboxClock) -> None:
    app: Flask = make_app(concierge_db_url, SANDBOX_URLS={"hubspot": portal.url})
    admin = Admin(app.test_client())
    admin.signup()
    admin.start()
    assert location(admin.choose_crm("hubspot")) == "/onboarding/details"
    start = admin.post("/onboarding/details/oauth", {"auth_method": "oauth"})
    assert start.status_code == 302, start.get_data(as_text=True)[-2000:]
    authorize = start.headers["Location"]
    assert authorize.startswith(f"{portal.url}/oauth/authorize?")
    assert "crm.objects.deals.read" in parse_qs(urlsplit(authorize).query)["scope"][0]
    consent = requests.get(authorize, allow_redirects=False, timeout=10)
    assert consent.status_code == 302
    target = urlsplit(consent.headers["Location"])
    callback = admin.client.get(f"{target.path}?{target.query}")
    assert location(callback) == "/onboarding/details"
    page = admin.client.get("/onboarding/details").get_data(as_text=True)
    assert "Connected to HubSpot" in page
    with app.app_context():
        connection = tenants.load_connection(app.extensions["accrue_warehouse"],
                                             admin.tenant_id)
    assert set(connection.secrets) == {"access_token", "refresh_token"}
    assert connection.config["auth"] == "oauth" and connection.config["client_id"]
    for secret in connection.secrets.values():
        assert secret not in page
    clock.advance(minutes=45)  # past the access token's 30 minutes
    with registry.create_connector("hubspot", connection.secrets, connection.config) as con:
        assert con.count("opportunity") == portal.live_count("opportunity")


def test_production_sends_the_browser_to_app_hubspot_com(concierge_db_url: str) -> None:
    """Without a sandbox the consent page is HubSpot's (app.hubspot.com) while the token
    exchange goes to its API host: the spec says so, the concierge reads it."""
    from onboarding_app.connection import oauth

    spec = registry.spec("hubspot")
    app = make_app(concierge_db_url)
    with app.app_context():
        assert oauth.login_base(spec, {}) == "https://app.hubspot.com"
        assert oauth.login_base(registry.spec("salesforce"), {}) == (
            "https://login.salesforce.com")
    assert spec.allowed_hosts[0] == "api.hubapi.com" and spec.allows_host("app.hubspot.com")
