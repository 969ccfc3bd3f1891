"""The concierge's security rules for what it holds and reaches, each with its negative case:
tenants kept apart, requests only to the CRM, secrets never in clear, a private warehouse
file."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner
from flask import Flask

from accrue import config, crypto, db, tenants
from accrue.schema import audit_event, crm_connection, oauth_flow, onboarding_state
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    Admin,
    admin_fixture,
    app_fixture,
    concierge_db_url_fixture,
    location,
    make_app,
)
from connectors import registry
from connectors.salesforce.sandbox import RunningSandbox
from onboarding_app.connection import crm


def test_pages_load_nothing_external(app: Flask, admin: Admin, sf_sandbox: RunningSandbox) -> None:
    admin.signup()
    admin.start()
    admin.choose_crm()
    for path in ("/home", "/onboarding/crm", "/onboarding/details", "/auth/login"):
        html = admin.client.get(path).get_data(as_text=True)
        assert not re.search(r'(src|href)="(https?:)?//', html), path
        assert "<script>" not in html and "style=" not in html  # nothing inline (CSP)


def test_another_tenants_ids_are_404(app: Flask, sf_sandbox: RunningSandbox) -> None:
    first, second = Admin(app.test_client()), Admin(app.test_client())
    first.signup("First Co")
    second.signup("Second Co")
    first.start()
    first.choose_crm()
    first.details(sf_sandbox, action="save")
    engine = app.extensions["accrue_warehouse"]
    info = tenants.connection_info(engine, first.tenant_id)
    assert info is not None
    with engine.begin() as conn:
        run_id = conn.execute(sa.text(
            "INSERT INTO sync_run (tenant_id, object_name, started_at, status) "
            "VALUES (:t, 'account', CURRENT_TIMESTAMP, 'running') RETURNING id"),
            {"t": first.tenant_id}).scalar_one()
    second.start()
    headers = {"X-CSRFToken": second.token("/home"), "Accept": "application/json"}
    assert second.client.post(f"/onboarding/connections/{info.id}/test",
                              headers=headers).status_code == 404
    assert second.client.post(f"/onboarding/connections/{info.id}/delete",
                              headers=headers).status_code == 404
    assert second.client.get(f"/status/runs/{run_id}").status_code == 404
    assert tenants.connection_info(engine, first.tenant_id) is not None
    # Each admin sees only their own wizard.
    second.choose_crm()
    page = second.client.get("/onboarding/details").get_data(as_text=True)
    assert sf_sandbox.username not in page
    headers = {"X-CSRFToken": first.token("/home"), "Accept": "application/json"}
    assert first.client.post(f"/onboarding/connections/{info.id}/test",
                             headers=headers).get_json()["ok"] is True


@pytest.mark.parametrize("typed", [
    "http://169.254.169.254", "169.254.169.254", "https://169.254.169.254/latest/meta-data",
    "https://evil.example.com", "acme.my.salesforce.com.evil.example", "http://acme.my.salesforce.com",
    "https://acme.my.salesforce.com:8443", "https://user:pw@acme.my.salesforce.com",
    "localhost", "https://[::1]",
])
def test_typed_urls_outside_salesforce_are_refused_without_any_request(
    app: Flask, admin: Admin, monkeypatch: pytest.MonkeyPatch, typed: str
) -> None:
    admin.signup()
    admin.start()
    admin.choose_crm()
    attempts: list[Any] = []
    real_connect = socket.create_connection

    def record(address: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(address)
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", record)
    monkeypatch.setattr(requests.Session, "send",
                        lambda self, request, **kw: attempts.append(request.url))
    for action in ("test", "continue"):
        response = admin.details(None, action=action, my_domain=typed, username="a@b.co",
                                 password="pw-123456")
        assert response.status_code == 400
        assert "my_domain-error" in response.get_data(as_text=True)
    oauth = admin.post("/onboarding/details/oauth", {"auth_method": "oauth",
                                                     "environment": "production",
                                                     "my_domain": typed})
    assert location(oauth) == "/onboarding/details"
    assert [a for a in attempts if "concierge.test" not in str(a)] == []


def test_allowlist_session_blocks_before_connecting_and_never_follows_redirects(
    app: Flask, monkeypatch: pytest.MonkeyPatch, sf_sandbox: RunningSandbox
) -> None:
    connects: list[Any] = []
    monkeypatch.setattr(socket, "create_connection",
                        lambda *a, **k: connects.append(a) or pytest.fail("connected"))
    with app.app_context():
        session = crm.make_session(registry.spec("salesforce"))
        for url in ("http://169.254.169.254/latest/meta-data/", "https://evil.example/",
                    "https://127.0.0.1:1/", "http://login.salesforce.com.evil.example/"):
            with pytest.raises(crm.HostNotAllowed):
                session.get(url)
        assert session.trust_env is False
    assert connects == []
    salesforce = registry.spec("salesforce")
    assert salesforce.allows_host("acme.my.salesforce.com")
    assert salesforce.allows_host("acme--uat.sandbox.my.salesforce.com")
    for host in ("169.254.169.254", "evil.example", "my.salesforce.com",
                 "a.my.salesforce.com:8443", "u@a.my.salesforce.com",
                 "login.salesforce.com.evil.example", "-x.my.salesforce.com"):
        assert not salesforce.allows_host(host), host


def test_redirects_from_salesforce_hosts_are_not_followed(
    app: Flask, sf_sandbox: RunningSandbox
) -> None:
    with app.app_context():
        session = crm.make_session(registry.spec("salesforce"))
        # The sandbox's authorize endpoint answers with a 302 to the redirect_uri.
        response = session.post("https://login.salesforce.com/services/oauth2/authorize",
                                data={"client_id": "x", "redirect_uri": "https://evil.example/"})
        assert response.status_code == 302 and response.headers["Location"].startswith(
            "https://evil.example/")
        assert session.contacted == ["login.salesforce.com"]


def test_secrets_never_in_responses_logs_audit_or_database_in_clear(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []
    original = admin.client.open

    def capture(*args: Any, **kwargs: Any) -> Any:
        response = original(*args, **kwargs)
        bodies.append(response.get_data(as_text=True) + str(response.headers))
        return response

    admin.client.open = capture  # type: ignore[method-assign]
    admin.signup()
    admin.start()
    admin.choose_crm()
    admin.details(sf_sandbox, action="save")
    admin.details(sf_sandbox, action="test", headers={"Accept": "application/json"})
    admin.details(sf_sandbox, action="test", security_token="WRONGTOKEN1",
                  headers={"Accept": "application/json"})
    admin.details(sf_sandbox)
    for path in ("/onboarding/details", "/onboarding/review", "/home", "/status"):
        admin.client.get(path)
    admin.review()
    admin.terms()
    admin.finish()
    admin.client.get("/status/progress.json")

    secrets = [sf_sandbox.password, sf_sandbox.security_token, "WRONGTOKEN1"]
    everything = "\n".join(bodies)
    for secret in secrets:
        assert secret not in everything
        assert secret not in caplog.text
    engine = app.extensions["accrue_warehouse"]
    with engine.connect() as conn:
        audit_rows = [dict(r) for r in conn.execute(sa.select(audit_event).where(
            audit_event.c.tenant_id == admin.tenant_id)).mappings()]
        ciphertext = conn.execute(sa.select(crm_connection.c.secret_ciphertext).where(
            crm_connection.c.tenant_id == admin.tenant_id)).scalar_one()
        wizard = conn.execute(sa.select(onboarding_state.c.data).where(
            onboarding_state.c.tenant_id == admin.tenant_id)).scalar_one()
    dumped = json.dumps(audit_rows, default=str) + json.dumps(wizard)
    assert len(audit_rows) >= 8
    for secret in secrets:
        assert secret not in dumped and secret not in ciphertext
    assert ciphertext.startswith("v1.")
    opened = crypto.decrypt_json(ciphertext, aad=tenants.connection_aad(
        admin.tenant_id, tenants.connection_info(engine, admin.tenant_id).id))
    assert opened["password"] == sf_sandbox.password


def test_undecryptable_credentials_can_be_removed_and_reentered(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin.signup()
    admin.start()
    admin.choose_crm()
    admin.details(sf_sandbox, action="save")
    engine = app.extensions["accrue_warehouse"]
    info = tenants.connection_info(engine, admin.tenant_id)
    assert info is not None
    monkeypatch.setenv(config.SECRET_KEYS_ENV, crypto.generate_key(kid="other"))
    failed = admin.details(None, action="test", username=sf_sandbox.username,
                           headers={"Accept": "application/json"})
    assert failed.get_json()["ok"] is False
    assert "can no longer be read" in failed.get_json()["message"]
    removed = admin.post(f"/onboarding/connections/{info.id}/delete")
    assert location(removed) == "/onboarding/details"
    assert tenants.connection_info(engine, admin.tenant_id) is None
    assert location(admin.details(sf_sandbox)) == "/onboarding/review"


def test_key_rotation_is_audited_without_secrets(
    sf_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from accrue_cli.commands import main

    database = f"sqlite:///{tmp_path / 'rotation.db'}"
    engine = db.make_engine(database)
    db.upgrade(engine)
    app = make_app(database, sf_sandbox.url)
    admin = Admin(app.test_client())
    admin.signup()
    admin.start()
    admin.choose_crm()
    admin.details(sf_sandbox, action="save")
    new_key = crypto.generate_key(kid="k2")

    monkeypatch.setenv(config.SECRET_KEYS_ENV, f"{new_key},{os.environ[config.SECRET_KEYS_ENV]}")
    monkeypatch.setenv(config.DATABASE_URL_ENV, database)
    result = CliRunner().invoke(main, ["keys", "rotate"])
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        row = conn.execute(sa.select(audit_event).where(audit_event.c.action == "keys.rotated")
                           .order_by(audit_event.c.id.desc())).mappings().first()
    assert row is not None and row["actor"] == "cli" and row["tenant_id"] is None
    assert row["detail"]["rotated"] >= 1 and row["detail"]["primary_key_id"] == "k2"
    assert sf_sandbox.password not in json.dumps(dict(row), default=str)


def test_oauth_state_rows_hold_no_plain_verifier(app: Flask, admin: Admin,
                                                 sf_sandbox: RunningSandbox) -> None:
    admin.signup()
    admin.start()
    admin.choose_crm()
    start = admin.post("/onboarding/details/oauth", {"auth_method": "oauth",
                                                     "environment": "production"})
    state = dict(re.findall(r"([a-z_]+)=([^&]+)", start.headers["Location"]))["state"]
    engine = app.extensions["accrue_warehouse"]
    with engine.connect() as conn:
        row = conn.execute(sa.select(oauth_flow).where(
            oauth_flow.c.tenant_id == admin.tenant_id)).mappings().one()
    assert row["state_hash"] != state and state not in json.dumps(dict(row), default=str)
    assert row["verifier_ciphertext"].startswith("v1.")


def test_the_embedded_warehouse_file_is_private(tmp_path: Path) -> None:
    """Issue 9, item 9: password hashes and sealed credentials live there: 0600."""
    fresh = tmp_path / "home" / "warehouse.db"
    engine = db.make_engine(f"sqlite:///{fresh}")
    db.upgrade(engine)
    engine.dispose()
    assert fresh.stat().st_mode & 0o777 == 0o600
    assert fresh.parent.stat().st_mode & 0o777 == 0o700
    for leftover in fresh.parent.iterdir():  # -wal / -shm follow the database's mode
        assert leftover.stat().st_mode & 0o077 == 0, leftover
    older = tmp_path / "old.db"
    older.touch(mode=0o644)
    older.chmod(0o644)
    db.make_engine(f"sqlite:///{older}").dispose()
    assert older.stat().st_mode & 0o777 == 0o600  # tightened on first use
