"""The concierge connects every registered CRM from its spec alone (issue 12).

For each CRM with a sandbox: an admin signs up, chooses it, sees its own setup fields
(labels and "where do I find this?" from its spec), types a wrong secret and gets the
CRM's refusal in words, types the right ones and reaches Review Data Import with the
org's real counts, then finishes; the tenant syncs from that CRM with sealed credentials,
and no secret ever comes back to the browser.
"""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from flask import Flask

from accrue import tenants
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    Admin,
    concierge_db_url_fixture,
    location,
    make_app,
)
from connectors.sandbox_kit.harness import RunningCrmSandbox
from connectors.spec import ConnectorSpec


@pytest.fixture
def app(concierge_db_url: str, crm: ConnectorSpec, crm_org: RunningCrmSandbox) -> Flask:
    return make_app(concierge_db_url, SANDBOX_URLS={crm.key: crm_org.url})


def _typed(crm: ConnectorSpec, connection: tuple[dict[str, str], dict[str, Any]],
           ) -> tuple[str, dict[str, str]]:
    """The sign-in method a sandbox connection uses and what the admin types for it."""
    secrets, config = connection
    method = crm.auth(config.get("auth"))
    known = {**config, **secrets}
    values = {f.name: str(known[f.name]) for f in crm.fields_for(method.key) if f.name in known}
    return method.key, values


def test_an_admin_connects_each_crm_from_its_spec(
    app: Flask, crm: ConnectorSpec, crm_org: RunningCrmSandbox
) -> None:
    admin = Admin(app.test_client())
    admin.signup()
    admin.start()
    assert location(admin.choose_crm(crm.key)) == "/onboarding/details"
    method, values = _typed(crm, crm_org.connection())
    secret_values = [v for k, v in values.items() if crm.field(k).secret]
    page = unescape(admin.client.get("/onboarding/details").get_data(as_text=True))
    assert f"Connect Accrue to {crm.name}" in page
    for setup in crm.fields_for(method):
        if not setup.demo_hidden:
            assert setup.label in page and setup.help in page, setup.name

    _, bad = _typed(crm, crm_org.bad_connection())
    refused = admin.post("/onboarding/details", {"auth_method": method, **bad,
                                                 "action": "continue"})
    text = unescape(refused.get_data(as_text=True))
    assert refused.status_code == 400
    assert re.search(r'class="result bad"', text), text[-3000:]

    accepted = admin.post("/onboarding/details", {"auth_method": method, **values,
                                                  "action": "continue"})
    assert location(accepted) == "/onboarding/review", accepted.get_data(as_text=True)[-3000:]
    review = unescape(admin.client.get("/onboarding/review").get_data(as_text=True))
    assert f"import from {crm.name}" in review
    deals = f"{crm_org.live_count('opportunity'):,}"
    assert re.search(rf"Opportunities \(deals\)</td><td><code>[^<]+</code></td>"
                     rf"<td class=\"num\">{re.escape(deals)}</td>", review), review[-4000:]
    assert location(admin.review()) == "/onboarding/terms"
    assert location(admin.terms()) == "/onboarding/complete"
    admin.finish()

    with app.app_context():
        engine = app.extensions["accrue_warehouse"]
        tenant = tenants.require_tenant(engine, admin.tenant_id)
        connection = tenants.load_connection(engine, admin.tenant_id)
    assert (tenant.crm_type, tenant.status) == (crm.key, "active")
    assert connection.config["sandbox_url"] == crm_org.url
    assert connection.config["auth"] == method
    for name in values:  # every value typed is stored (a preparer may normalise it)
        assert connection.secrets.get(name, connection.config.get(name)) is not None, name
    for secret in secret_values:
        assert secret not in str(connection.config)
        for path in ("/onboarding/details", "/onboarding/review", "/integration"):
            assert secret not in admin.client.get(path).get_data(as_text=True), path
