"""Disconnecting from the integration settings (issue 11, part 2), through Flask's test client:
the credentials go at once, the synced data only when asked, by its owners, never under a
running sync and never another tenant's.
"""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.engine import Engine

from accrue import erasure, schema, tenants
from accrue import sync_schedule as ss
from accrue.analytics import store as analytics_store
from accrue.schema import utcnow
from accrue.sync import sync_object
from accrue.warehouse import Warehouse
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    Admin,
    admin_fixture,
    app_fixture,
    concierge_db_url_fixture,
)
from accrue_pipelines_tests.concierge.test_concierge_integration import (
    _audited,
    _ciphertext,
    _connected,
    _engine,
    _follow,
)
from connectors.registry import create_connector
from connectors.salesforce.sandbox import RunningSandbox

# Tables with a tenant_id that deleting the synced data leaves alone on purpose: the
# credentials (deleted on their own, at once), the accounts and what belongs to them
# (sessions, invitations, API tokens), the concierge's answers and the audit trail, so
# the admin can still log in, reconnect and see what was done.
KEPT = {"crm_connection", "app_user", "app_session", "onboarding_state", "oauth_flow",
        "email_link", "api_token", "audit_event",
        "push_credential",  # like crm_connection: credentials, not synced data
        "file_import_mapping"}  # the admin's confirmed file mappings: setup, not synced data


# -- disconnecting ------------------------------------------------------------------------


def _sync(app: Flask, tenant_id: str, *objects: str) -> None:
    engine = _engine(app)
    connection = tenants.load_connection(engine, tenant_id)
    warehouse = Warehouse(engine)
    with create_connector("salesforce", connection.secrets, connection.config) as connector:
        for object_name in objects:
            sync_object(warehouse, connector, tenant_id, object_name)


def _tenant_tables() -> list[sa.Table]:
    return [t for t in schema.metadata.sorted_tables if "tenant_id" in t.c]


def _counts(engine: Engine, tenant_id: str) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t).where(
            t.c.tenant_id == tenant_id)).scalar_one() for t in _tenant_tables()}


def test_every_tenant_table_is_deleted_by_its_owner_or_kept_on_purpose() -> None:
    deleted = erasure.erased_tables()
    assert not deleted & KEPT
    assert {t.name for t in _tenant_tables()} - KEPT == deleted


@pytest.fixture(name="synced")
def synced_fixture(app: Flask, sf_sandbox: RunningSandbox) -> Admin:
    """An admin whose setup is complete and whose accounts are synced."""
    admin = _connected(app, sf_sandbox)
    _sync(app, admin.tenant_id, "account")
    return admin


def test_disconnecting_deletes_the_credentials_at_once_and_keeps_the_data(
    app: Flask, synced: Admin
) -> None:
    admin, engine = synced, _engine(app)
    confirm = admin.client.get("/integration/disconnect").get_data(as_text=True)
    assert "Keep it" in confirm and "Delete it now" in confirm
    unconfirmed = admin.post("/integration/disconnect", {"synced_data": "keep"})
    assert unconfirmed.status_code == 400 and "Tick the box" in unconfirmed.get_data(
        as_text=True)
    assert tenants.connection_info(engine, admin.tenant_id) is not None
    kept = _counts(engine, admin.tenant_id)

    page = _follow(admin, admin.post("/integration/disconnect",
                                     {"synced_data": "keep", "confirm": "y"}))
    assert "Disconnected: Accrue has forgotten the" in page and "is kept" in page
    assert _ciphertext(engine, admin.tenant_id) is None
    assert tenants.require_tenant(engine, admin.tenant_id).status == "paused"
    moved = {"crm_connection", "audit_event"}
    assert {k: v for k, v in _counts(engine, admin.tenant_id).items() if k not in moved} == {
        k: v for k, v in kept.items() if k not in moved}
    assert kept["crm_account"] > 0
    assert "Disconnected" in page and "Delete synced data" in page
    assert "Resume the integration first" in _follow(admin, admin.post("/integration/sync-now"))
    assert "Sign in to your CRM again first" in _follow(admin, admin.post("/integration/resume"))
    assert tenants.require_tenant(engine, admin.tenant_id).status == "paused"
    event = _audited(engine, admin.tenant_id, "integration.disconnected")
    assert [e["detail"] for e in event] == [{"credentials_removed": 1, "synced_data": "keep"}]


def test_deleting_the_data_removes_this_tenants_rows_only(
    app: Flask, sf_sandbox: RunningSandbox
) -> None:
    leaving, staying = _connected(app, sf_sandbox), _connected(app, sf_sandbox)
    engine = _engine(app)
    for admin in (leaving, staying):
        _sync(app, admin.tenant_id, "account", "opportunity")
        analytics_store.replace_price_recommendations(
            engine, admin.tenant_id, pd.DataFrame([{"opportunity_id": "006A", "method": "model",
                                                    "recommended_price": 10.0}]), "m1")
        ss.save(engine, [ss.TenantSchedule(admin.tenant_id, last_success_at=utcnow())])
        admin.post("/integration/sync-now")
    staying_before = _counts(engine, staying.tenant_id)
    assert all(staying_before[name] > 0 for name in (
        "crm_account", "crm_opportunity", "crm_change_log", "sync_state", "sync_run",
        "price_recommendation", "tenant_sync_schedule", "crm_connection"))

    page = _follow(leaving, leaving.post("/integration/disconnect",
                                         {"synced_data": "delete", "confirm": "y"}))
    assert "The synced data is deleted (" in page
    after = _counts(engine, leaving.tenant_id)
    assert {name for name, n in after.items() if n} <= KEPT - {"crm_connection"}
    assert after["app_user"] == 1 and after["audit_event"] > 0
    assert not ss.load(engine, [leaving.tenant_id])  # no schedule, no pending request
    assert _counts(engine, staying.tenant_id) == staying_before
    assert ss.load(engine, [staying.tenant_id])[staying.tenant_id].admin_request_pending
    deleted = _audited(engine, leaving.tenant_id, "integration.data_deleted")
    assert len(deleted) == 1 and deleted[0]["detail"]["rows"] > 0


def test_data_is_not_deleted_under_a_running_sync_but_can_be_later(
    app: Flask, synced: Admin
) -> None:
    admin, engine = synced, _engine(app)
    warehouse = Warehouse(engine)
    running = warehouse.start_run(admin.tenant_id, "opportunity")
    page = _follow(admin, admin.post("/integration/disconnect",
                                     {"synced_data": "delete", "confirm": "y"}))
    assert "The data is not deleted yet: a sync that started at" in page
    assert _ciphertext(engine, admin.tenant_id) is None  # the credentials went at once
    assert _counts(engine, admin.tenant_id)["crm_account"] > 0
    warehouse.finish_run(running, "failed", error_kind="credentials")
    confirm = admin.client.get("/integration/disconnect").get_data(as_text=True)
    assert "already disconnected" in confirm and 'name="synced_data" value="delete"' in confirm
    page = _follow(admin, admin.post("/integration/disconnect",
                                     {"synced_data": "delete", "confirm": "y"}))
    assert "The synced data is deleted (" in page and "Disconnected: " not in page
    assert _counts(engine, admin.tenant_id)["crm_account"] == 0
    outcomes = [e["outcome"] for e in _audited(engine, admin.tenant_id, "integration.data_deleted")]
    assert outcomes == ["refused", "ok"]
