"""The concierge app starts and serves its public page (the wizard is a later issue)."""

import pytest

from onboarding_app import create_app


@pytest.fixture
def client(database_url, monkeypatch):
    monkeypatch.setenv("ACCRUE_DATABASE_URL", database_url)
    app = create_app({"TESTING": True, "ENV_NAME": "development"})  # production: see security
    return app.test_client()


def test_index_lists_supported_and_planned_crms(client):
    response = client.get("/")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "Salesforce" in body and "HubSpot (coming soon)" in body
    assert "Hubspot" not in body  # the proper name (issue 11.5)


def test_health_checks_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_security_headers_on_every_response(client):
    for path in ("/", "/healthz", "/missing"):
        headers = client.get(path).headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
