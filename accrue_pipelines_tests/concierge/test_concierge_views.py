"""The concierge app starts and serves its public page (the wizard is a later issue)."""

import pytest

from connectors import registry
from onboarding_app import create_app


@pytest.fixture
def client(database_url, monkeypatch):
    monkeypatch.setenv("ACCRUE_DATABASE_URL", database_url)
    app = create_app({"TESTING": True, "ENV_NAME": "development"})  # production: see security
    return app.test_client()


def test_index_lists_supported_and_planned_crms(client, monkeypatch):
    monkeypatch.setattr(registry, "PLANNED", (("pipedrive", "Pipedrive", "REST API."),))
    response = client.get("/")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    for spec in registry.specs():  # every registered CRM by its proper name (issue 11.5)
        assert f"<li>{spec.product or spec.name}</li>" in body
    assert "<li>Pipedrive (coming soon)</li>" in body
    assert "Hubspot" not in body


def test_health_checks_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_security_headers_on_every_response(client):
    for path in ("/", "/healthz", "/missing"):
        headers = client.get(path).headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
