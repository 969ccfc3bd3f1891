"""Integration settings after setup (issue 11, part 2), through Flask's test client.

Each action with its happy path and its refusals: logged out, not an admin, another
tenant's admin, no CSRF token, wrong new credentials. The CRM is the local sandbox, so
re-authentication is tested live, as the wizard's Provide Details is. Disconnecting is in
test_concierge_disconnect.py, which imports the helpers here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, g
from sqlalchemy.engine import Engine

from accrue import sync_schedule as ss
from accrue import tenants
from accrue.schema import audit_event, crm_connection, utcnow
from accrue.warehouse import Warehouse
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    Admin,
    admin_fixture,
    app_fixture,
    concierge_db_url_fixture,
    location,
    query,
)
from accrue_pipelines_tests.concierge.test_concierge_status import _complete_setup
from connectors.salesforce.sandbox import RunningSandbox
from onboarding_app import app as app_module
from onboarding_app import store
from onboarding_app.connection import crm

POSTS = ("/integration/pause", "/integration/resume", "/integration/frequency",
         "/integration/sync-now", "/integration/credentials", "/integration/oauth",
         "/integration/disconnect")


def _engine(app: Flask) -> Engine:
    return app.extensions["accrue_warehouse"]


def _connected(app: Flask, sandbox: RunningSandbox) -> Admin:
    admin = Admin(app.test_client())
    _complete_setup(admin, sandbox)  # sync every 5 minutes
    return admin


def _page(admin: Admin) -> str:
    response = admin.client.get("/integration")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _follow(admin: Admin, response: Any) -> str:
    """The page a POST redirected to, with its flash message."""
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    assert location(response) == "/integration"
    return _page(admin)


def _events(engine: Engine, tenant_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            sa.select(audit_event).where(audit_event.c.tenant_id == tenant_id)
            .order_by(audit_event.c.id)).mappings()]


def _audited(engine: Engine, tenant_id: str, action: str) -> list[dict[str, Any]]:
    return [e for e in _events(engine, tenant_id) if e["action"] == action]


def _ciphertext(engine: Engine, tenant_id: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(crm_connection.c.secret_ciphertext).where(
            crm_connection.c.tenant_id == tenant_id)).scalar_one_or_none()


# -- the page and who may see it ----------------------------------------------------------


def test_the_gear_appears_once_setup_is_complete_and_nothing_secret_is_shown(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    newcomer = Admin(app.test_client())
    newcomer.signup()
    assert 'href="/integration"' not in newcomer.client.get("/home").get_data(as_text=True)
    assert location(newcomer.client.get("/integration")) == "/onboarding/"  # setting up
    _complete_setup(admin, sf_sandbox)
    home = admin.client.get("/home").get_data(as_text=True)
    assert 'href="/integration"' in home and "Integration settings" in home
    page = _page(admin)
    for part in ("Status:", "Active", "Pause the integration", "Sync now", "Every 5 minutes",
                 "Test and save", "Sign in with", "Sync history", "Disconnect"):
        assert part in page, part
    assert sf_sandbox.password not in page and sf_sandbox.security_token not in page
    for name in ("password", "security_token"):  # never pre-filled
        assert not re.search(rf'name="{name}"[^>]*value="[^"]', page)
    assert f'value="{sf_sandbox.username}"' in page  # the username is not a secret
    # The optional imports are a setting here (test_activities_concierge.py switches them).
    assert "Optional imports" in page and "Market data" not in page


def test_logged_out_visitors_go_to_the_login_page(app: Flask, admin: Admin,
                                                  sf_sandbox: RunningSandbox) -> None:
    _complete_setup(admin, sf_sandbox)
    tenant_id = admin.tenant_id
    stranger = Admin(app.test_client())
    response = stranger.client.get("/integration")
    assert location(response) == "/auth/login" and query(response)["next"] == "/integration"
    for path in POSTS:
        response = stranger.post(path, {"frequency": "60", "confirm": "y",
                                        "synced_data": "delete"})
        assert location(response) == "/auth/login", path
    engine = _engine(app)
    tenant = tenants.require_tenant(engine, tenant_id)
    assert (tenant.status, tenant.sync_frequency_minutes) == ("active", 5)
    assert tenants.connection_info(engine, tenant_id) is not None


@dataclass(frozen=True)
class _WithRole:
    """The logged-in account as it will look once accounts carry a role."""

    user: Any
    role: str

    def __getattr__(self, name: str) -> Any:
        return getattr(self.user, name)


def test_an_account_that_is_not_an_admin_gets_403(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    _complete_setup(admin, sf_sandbox)
    loaded = app_module.load_current_user

    def load_as_seller() -> None:
        loaded()
        if g.get("user") is not None:
            g.user = _WithRole(g.user, "seller")

    monkeypatch.setattr(app_module, "load_current_user", load_as_seller)
    assert admin.client.get("/integration").status_code == 403
    assert admin.post("/integration/pause").status_code == 403
    assert admin.post("/integration/disconnect", {"confirm": "y"}).status_code == 403
    assert 'href="/integration"' not in admin.client.get("/home").get_data(as_text=True)
    engine = _engine(app)
    assert tenants.require_tenant(engine, admin.tenant_id).status == "active"
    assert tenants.connection_info(engine, admin.tenant_id) is not None


def test_another_tenants_admin_changes_only_their_own_tenant(
    app: Flask, sf_sandbox: RunningSandbox
) -> None:
    first, second = _connected(app, sf_sandbox), _connected(app, sf_sandbox)
    engine = _engine(app)
    second.post("/integration/pause")
    second.post("/integration/frequency", {"frequency": "1440"})
    assert tenants.require_tenant(engine, second.tenant_id).status == "paused"
    mine = tenants.require_tenant(engine, first.tenant_id)
    assert (mine.status, mine.sync_frequency_minutes) == ("active", 5)
    # An OAuth sign-in the first admin started cannot be finished in the second's session.
    start = first.post("/integration/oauth")
    state = dict(re.findall(r"(state)=([^&]+)", start.headers["Location"]))["state"]
    before = _ciphertext(engine, first.tenant_id), _ciphertext(engine, second.tenant_id)
    hijack = second.client.get(f"/integration/oauth/callback?state={state}&code=x")
    assert hijack.status_code == 400 and "not valid here" in hijack.get_data(as_text=True)
    assert (_ciphertext(engine, first.tenant_id), _ciphertext(engine, second.tenant_id)) == before


def test_every_post_needs_the_csrf_token(app: Flask, admin: Admin,
                                         sf_sandbox: RunningSandbox) -> None:
    _complete_setup(admin, sf_sandbox)
    for path in POSTS:
        response = admin.client.post(path, data={"frequency": "60", "confirm": "y",
                                                 "synced_data": "delete"})
        assert response.status_code == 400, path
        assert "This form has expired" in response.get_data(as_text=True)
    engine = _engine(app)
    tenant = tenants.require_tenant(engine, admin.tenant_id)
    assert (tenant.status, tenant.sync_frequency_minutes) == ("active", 5)
    assert tenants.connection_info(engine, admin.tenant_id) is not None
    assert not ss.load(engine, [admin.tenant_id]).get(
        admin.tenant_id, ss.TenantSchedule(admin.tenant_id)).admin_request_pending


# -- pause, frequency, sync now ---------------------------------------------------------


def test_pause_stops_the_scheduler_and_resume_restarts_it(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    _complete_setup(admin, sf_sandbox)
    engine = _engine(app)
    page = _follow(admin, admin.post("/integration/pause"))
    assert "Paused. Accrue does not sync until you resume" in page
    assert "Resume the integration" in page
    assert admin.tenant_id not in {t.id for t in tenants.list_tenants(engine, "active")}
    page = _follow(admin, admin.post("/integration/pause"))
    assert "nothing to pause" in page
    page = _follow(admin, admin.post("/integration/resume"))
    assert "Resumed." in page and "Pause the integration" in page
    assert admin.tenant_id in {t.id for t in tenants.list_tenants(engine, "active")}
    actions = [(e["action"], e["actor"]) for e in _events(engine, admin.tenant_id)]
    user = f"user:{store.find_user(engine, admin.email).id}"
    assert ("integration.paused", user) in actions and ("integration.resumed", user) in actions
    assert "Paused the integration" in page and admin.email in page  # the change trail


def test_the_frequency_takes_the_review_steps_choices_only(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    _complete_setup(admin, sf_sandbox)
    engine = _engine(app)
    page = _follow(admin, admin.post("/integration/frequency", {"frequency": "360"}))
    assert "Accrue syncs every 6 hours." in page
    assert tenants.require_tenant(engine, admin.tenant_id).sync_frequency_minutes == 360
    wizard = store.load_wizard(engine, admin.tenant_id)
    assert wizard.section("review")["frequency"] == 360
    assert wizard.section("review")["imports"]["activities"] is False  # the rest kept
    changed = _audited(engine, admin.tenant_id, "integration.frequency_changed")
    assert [e["detail"] for e in changed] == [{"from": 5, "to": 360}]
    for bad in ("7", "", "60; DROP TABLE tenant"):
        refused = admin.post("/integration/frequency", {"frequency": bad})
        assert refused.status_code == 400 and "Not a valid choice" in refused.get_data(
            as_text=True)
    assert tenants.require_tenant(engine, admin.tenant_id).sync_frequency_minutes == 360


def test_sync_now_is_one_pending_request_until_the_scheduler_acts_on_it(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    _complete_setup(admin, sf_sandbox)
    engine, tenant_id = _engine(app), admin.tenant_id
    page = _follow(admin, admin.post("/integration/sync-now"))
    assert "Sync requested: it starts within a minute." in page
    assert re.search(r'<button type="submit" class="btn btn-secondary"\s+disabled>Sync now', page)
    assert ss.load(engine, [tenant_id])[tenant_id].admin_request_pending
    page = _follow(admin, admin.post("/integration/sync-now"))  # no spamming
    assert "A sync is already requested" in page
    outcomes = [e["outcome"] for e in _audited(engine, tenant_id, "integration.sync_requested")]
    assert outcomes == ["ok", "refused"]

    # The scheduler's next tick: due now, then no longer pending once requested.
    now = utcnow()
    schedules = ss.load(engine, [tenant_id])
    chosen, _ = ss.plan([(tenant_id, 5)], schedules, busy=(), now=now, limit=1,
                        routine_limit=0)
    assert [(r.tenant_id, r.reason) for r in chosen] == [(tenant_id, ss.REQUESTED_REASON)]
    ss.save(engine, [schedules[tenant_id].with_request(now)])
    assert not ss.load(engine, [tenant_id])[tenant_id].admin_request_pending
    assert "The last sync was started at" in _page(admin)
    Warehouse(engine).start_run(tenant_id, "account")  # that sync is running now
    page = _follow(admin, admin.post("/integration/sync-now"))
    assert "A sync is running: it started at" in page
    assert "Sync requested: it starts when the sync in progress has ended." in page

    admin.post("/integration/pause")  # pausing drops the pending request
    assert not ss.load(engine, [tenant_id])[tenant_id].admin_request_pending
    page = _follow(admin, admin.post("/integration/sync-now"))
    assert "Resume the integration first" in page
    assert not ss.load(engine, [tenant_id])[tenant_id].admin_request_pending


# -- signing in again ---------------------------------------------------------------------


def test_wrong_new_credentials_are_refused_and_the_saved_ones_stay(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    _complete_setup(admin, sf_sandbox)
    engine = _engine(app)
    before = _ciphertext(engine, admin.tenant_id)
    refused = admin.post("/integration/credentials", {
        "username": sf_sandbox.username, "password": "not-the-password-at-all",
        "security_token": sf_sandbox.security_token})
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert "did not work" in page and "unchanged" in page
    assert "not-the-password-at-all" not in page and sf_sandbox.security_token not in page
    assert _ciphertext(engine, admin.tenant_id) == before
    secrets = tenants.load_connection(engine, admin.tenant_id).secrets
    assert secrets["password"] == sf_sandbox.password
    missing = admin.post("/integration/credentials", {"username": "", "password": "x"})
    assert missing.status_code == 400 and "Enter it to sign in again." in missing.get_data(
        as_text=True)
    assert _ciphertext(engine, admin.tenant_id) == before
    failed = _audited(engine, admin.tenant_id, "integration.reauthenticated")
    assert [(e["outcome"], e["detail"]["method"]) for e in failed] == [("failed", "password")]


def test_a_new_password_is_tested_live_then_saved_and_a_blank_token_kept(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    _complete_setup(admin, sf_sandbox)
    engine = _engine(app)
    admin.post("/integration/pause")
    # The CRM's administrator changes the integration user's password.
    sf_sandbox.sandbox._credentials["password"] = "rotated-password-2026"
    page = _follow(admin, admin.post("/integration/credentials", {
        "username": sf_sandbox.username, "password": "rotated-password-2026",
        "security_token": ""}))
    assert "Signed in again: the new credentials work and are saved." in page
    assert "Resume the integration to sync again." in page  # it was paused
    assert "rotated-password-2026" not in page
    secrets = tenants.load_connection(engine, admin.tenant_id).secrets
    assert (secrets["password"], secrets["security_token"]) == (
        "rotated-password-2026", sf_sandbox.security_token)
    assert tenants.require_tenant(engine, admin.tenant_id).status == "paused"  # not resumed
    events = _audited(engine, admin.tenant_id, "integration.reauthenticated")
    assert [e["outcome"] for e in events] == ["ok"]
    assert "rotated-password-2026" not in str(events)


def test_signing_in_again_with_oauth_saves_tokens_only_when_they_work(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    _complete_setup(admin, sf_sandbox)
    engine = _engine(app)
    before = _ciphertext(engine, admin.tenant_id)
    denied = admin.client.get(admin.authorize(sf_sandbox, "deny", "/integration/oauth"))
    assert "Access was not allowed" in _follow(admin, denied)
    assert _ciphertext(engine, admin.tenant_id) == before

    broken = crm.TestOutcome(False, "API_DISABLED_FOR_ORG: API is not enabled", "username",
                             "This edition has no API access.")
    with monkeypatch.context() as patched:  # the CRM refuses API calls with these tokens
        patched.setattr(crm, "test_connection", lambda *a, **k: broken)
        refused = admin.client.get(admin.authorize(sf_sandbox, "allow", "/integration/oauth"))
        page = _follow(admin, refused)
    assert "the test failed: This edition has no API access." in page
    assert _ciphertext(engine, admin.tenant_id) == before

    callback = admin.authorize(sf_sandbox, "allow", "/integration/oauth")
    assert "Signed in again" in _follow(admin, admin.client.get(callback))
    info = tenants.connection_info(engine, admin.tenant_id)
    assert info is not None and info.config["auth"] == "oauth" and info.config["instance_host"]
    assert "access_token" in tenants.load_connection(engine, admin.tenant_id).secrets
    assert store.load_wizard(engine, admin.tenant_id).section("details")["auth_method"] == (
        "oauth")
    assert admin.client.get(callback).status_code == 400  # a state is single use
    outcomes = [(e["outcome"], (e["detail"] or {}).get("reason"))
                for e in _audited(engine, admin.tenant_id, "integration.reauthenticated")]
    assert outcomes == [("failed", "denied"), ("failed", None), ("ok", None),
                        ("refused", "state")]


# -- history --------------------------------------------------------------------------------


def test_the_history_says_what_to_do_and_never_shows_the_raw_error(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    _complete_setup(admin, sf_sandbox)
    warehouse = Warehouse(_engine(app))
    raw = 'Traceback (most recent call last):\n  File "x.py"\nINVALID_SESSION_ID sid=00Dxx!AQ'
    done = warehouse.start_run(admin.tenant_id, "account")
    warehouse.finish_run(done, "succeeded", {"upserted": 12})
    for object_name, status, kind in (("opportunity", "failed", "credentials"),
                                      ("user", "stopped", "quota"),
                                      ("product", "failed", "outage")):
        run = warehouse.start_run(admin.tenant_id, object_name)
        warehouse.finish_run(run, status, error=raw, error_kind=kind)
    page = _page(admin)
    assert "refused the saved credentials. Sign in again" in page
    assert "daily API allowance was used up" in page and "Accrue retries by itself" in page
    assert "Completed" in page and "Failed" in page and "Stopped early" in page
    assert "Traceback" not in page and "INVALID_SESSION_ID" not in page and "AQ" not in page
