"""After "Finish and Close": the tenant is active, the status page follows the first sync,
and e-mails go out through SMTP (a local aiosmtpd server here)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from flask import Flask

from accrue import sync_progress, sync_schedule, tenants
from accrue.analytics import store as analytics_store
from accrue.schema import sync_run, utcnow
from accrue.sync import sync_object
from accrue.warehouse import Warehouse, WriteStats
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    Admin,
    concierge_db_url_fixture,
    location,
    make_app,
)
from connectors.base import Upsert
from connectors.registry import create_connector
from connectors.salesforce.sandbox import RunningSandbox
from onboarding_app import store


class Inbox:
    """Collects every message the SMTP server receives."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def mailing_app(concierge_db_url: str, sf_sandbox: RunningSandbox,
                smtp: tuple[Inbox, int]) -> Flask:
    return make_app(concierge_db_url, sf_sandbox.url, SMTP_HOST="127.0.0.1", SMTP_PORT=smtp[1],
                    MAIL_FROM="Accrue <concierge@accrue.test>")


def _complete_setup(admin: Admin, sandbox: RunningSandbox) -> None:
    admin.signup()
    admin.start()
    admin.choose_crm()
    admin.details(sandbox)
    admin.review(frequency=5)
    admin.terms()
    admin.finish()


def test_finish_activates_the_tenant_and_emails_the_admin(
    mailing_app: Flask, sf_sandbox: RunningSandbox, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    admin = Admin(mailing_app.test_client())
    _complete_setup(admin, sf_sandbox)
    engine = mailing_app.extensions["accrue_warehouse"]
    tenant = tenants.require_tenant(engine, admin.tenant_id)
    assert tenant.status == "active"  # the tenant sensors pick it up within a minute
    # The sign-up confirmation, then "connected" (the confirmation is tested in
    # test_concierge_signup.py).
    assert [m["Subject"] for m in inbox.messages][0].startswith("Confirm your e-mail")
    assert len(inbox.messages) == 2
    mail = inbox.messages[1]
    assert mail["To"] == admin.email and "connected" in mail["Subject"]
    body = mail.get_payload(decode=True).decode()
    assert "first sync starts within a minute" in body and "/status" in body
    assert sf_sandbox.password not in body and sf_sandbox.security_token not in body


def test_status_page_follows_the_first_sync_and_emails_once_when_data_is_in(
    mailing_app: Flask, sf_sandbox: RunningSandbox, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    admin = Admin(mailing_app.test_client())
    _complete_setup(admin, sf_sandbox)
    before = admin.client.get("/status/progress.json").get_json()
    assert before["first_data_ready"] is False
    assert {o["state"] for o in before["objects"]} == {"waiting"}
    assert before["recommendations"]["state"] == "pending"
    assert before["recommendations"]["phase"] == "waiting_for_data"
    page = admin.client.get("/status").get_data(as_text=True)
    assert "Waiting to start" in page and "First recommendations" in page
    # Nothing is computed before the deals are in, and the page does not say otherwise.
    assert "Being computed" not in page and "once the first sync has brought them in" in page
    assert "We will e-mail you when it is done." in page  # e-mail is on: promised

    engine = mailing_app.extensions["accrue_warehouse"]
    connection = tenants.load_connection(engine, admin.tenant_id)
    warehouse = Warehouse(engine)
    with create_connector("salesforce", connection.secrets, connection.config) as connector:
        sync_object(warehouse, connector, admin.tenant_id, "opportunity")
        middle = admin.client.get("/status/progress.json").get_json()
        by_name = {o["name"]: o for o in middle["objects"]}
        assert by_name["opportunity"]["state"] == "done"
        assert by_name["opportunity"]["synced"] == by_name["opportunity"]["expected"] > 0
        assert by_name["account"]["state"] == "waiting" and not middle["first_data_ready"]
        for name in by_name:
            if name != "opportunity":
                sync_object(warehouse, connector, admin.tenant_id, name)
    after = admin.client.get("/status/progress.json").get_json()
    assert after["first_data_ready"] is True
    assert all(o["percent"] == 100 for o in after["objects"])
    admin.client.get("/status/progress.json")  # a second poll sends nothing more
    subjects = [m["Subject"] for m in inbox.messages]
    assert subjects.count("Your first Accrue data is ready") == 1
    page = admin.client.get("/status").get_data(as_text=True)
    assert "Ready." in page and "Latest syncs" in page and "We e-mailed you at" in page
    # The deals changed and nothing has computed from them yet: owed, not claimed running.
    assert after["recommendations"]["phase"] == "waiting"
    assert "Waiting to be computed, or being computed now" in page

    # The second milestone: the price_recommendations asset has written the tenant's rows.
    analytics_store.replace_price_recommendations(
        engine, admin.tenant_id,
        pd.DataFrame([{"opportunity_id": "006000000000001AAA", "method": "model",
                       "recommended_price": 1000.0}]),
        "test-model",
    )
    ready = admin.client.get("/status/progress.json").get_json()["recommendations"]
    assert (ready["state"], ready["count"]) == ("ready", 1)
    page = admin.client.get("/status").get_data(as_text=True)
    assert "1 open deal has a recommended price" in page


def test_no_smtp_host_means_no_mail_and_no_mail_promised(
    concierge_db_url: str, sf_sandbox: RunningSandbox
) -> None:
    app = make_app(concierge_db_url, sf_sandbox.url, SMTP_HOST=None)
    admin = Admin(app.test_client())
    _complete_setup(admin, sf_sandbox)
    engine = app.extensions["accrue_warehouse"]
    assert tenants.require_tenant(engine, admin.tenant_id).status == "active"
    page = admin.client.get("/status").get_data(as_text=True)
    assert "In progress:" in page and "e-mail" not in page
    _sync_everything(engine, admin.tenant_id)
    page = admin.client.get("/status").get_data(as_text=True)
    assert "Ready." in page and "e-mail" not in page


def _sync_everything(engine: Any, tenant_id: str) -> None:
    connection = tenants.load_connection(engine, tenant_id)
    discovered = store.load_wizard(engine, tenant_id).section("discovery")["objects"]
    with create_connector("salesforce", connection.secrets, connection.config) as connector:
        for o in discovered:
            sync_object(Warehouse(engine), connector, tenant_id, o["name"])


def test_status_before_setup_points_back_to_the_wizard(
    concierge_db_url: str, sf_sandbox: RunningSandbox
) -> None:
    app = make_app(concierge_db_url, sf_sandbox.url)
    admin = Admin(app.test_client())
    admin.signup()
    page = admin.client.get("/status").get_data(as_text=True)
    assert "No data yet" in page and "Connect your CRM" in page


# -- issue 11.3: what the page says while syncs run, fail and wait ---------------------------


@pytest.fixture
def quiet_app(concierge_db_url: str, sf_sandbox: RunningSandbox) -> Flask:
    """E-mail off: the page must not promise any."""
    return make_app(concierge_db_url, sf_sandbox.url, SMTP_HOST=None)


def _set_up(app: Flask, sandbox: RunningSandbox) -> Admin:
    admin = Admin(app.test_client())
    _complete_setup(admin, sandbox)
    return admin


def test_a_failed_sync_says_why_and_when_the_scheduler_retries(
    quiet_app: Flask, sf_sandbox: RunningSandbox
) -> None:
    admin = _set_up(quiet_app, sf_sandbox)
    engine = quiet_app.extensions["accrue_warehouse"]
    wh = Warehouse(engine)
    run_id = wh.start_run(admin.tenant_id, "account")
    wh.finish_run(run_id, "failed", {}, error="[credentials] AuthenticationError: refused",
                  error_kind="credentials")
    failed_at = wh.recent_runs(admin.tenant_id, limit=1)[0]["finished_at"]
    # The scheduler requested that run; its tick has not recorded the failure yet.
    sync_schedule.save(engine, [sync_schedule.TenantSchedule(
        admin.tenant_id, last_requested_at=failed_at - timedelta(minutes=1))])
    retry_at = failed_at + sync_schedule.backoff(admin.tenant_id, 1, timedelta(minutes=5))

    report = admin.client.get("/status/progress.json").get_json()
    account = next(o for o in report["objects"] if o["name"] == "account")
    assert (account["state"], account["state_label"]) == ("failed", "Failed, retrying")
    assert account["next_attempt_at"] == retry_at.isoformat()
    page = admin.client.get("/status").get_data(as_text=True)
    assert "The last sync failed: the CRM refused the saved credentials." in page
    assert f"Next attempt at about {sync_progress.clock(retry_at)}" in page
    assert "Retries keep failing until the saved credentials are replaced" in page
    detail = admin.client.get(f"/status/runs/{run_id}").get_data(as_text=True)
    assert "What happened" in detail and "The CRM refused the saved credentials." in detail

    tenants.set_status(engine, admin.tenant_id, "paused")
    page = admin.client.get("/status").get_data(as_text=True)
    assert "Syncing is paused." in page and "Failed, retrying" not in page
    assert "Next attempt" not in page


def test_syncing_now_shows_the_count_the_percentage_and_the_time_left(
    quiet_app: Flask, sf_sandbox: RunningSandbox
) -> None:
    admin = _set_up(quiet_app, sf_sandbox)
    engine = quiet_app.extensions["accrue_warehouse"]
    wh = Warehouse(engine)
    expected = sf_sandbox.sandbox.counts()["Opportunity"]["live"]
    run_id = wh.start_run(admin.tenant_id, "opportunity")
    stamp = utcnow()
    wh.apply(admin.tenant_id, "opportunity", [
        Upsert(f"006S{i:05d}", stamp, {"name": f"Deal {i}", "is_closed": False}, {})
        for i in range(30)])
    wh.record_progress(run_id, 30, WriteStats(upserted=30))
    with engine.begin() as conn:  # the sync started a minute ago: 30 a minute
        conn.execute(sa.update(sync_run).where(sync_run.c.id == run_id).values(
            started_at=utcnow() - timedelta(minutes=1)))

    report = admin.client.get("/status/progress.json").get_json()
    deals = next(o for o in report["objects"] if o["name"] == "opportunity")
    assert (deals["state"], deals["read"], deals["synced"]) == ("syncing", 30, 30)
    assert deals["percent"] == 30 * 100 // expected
    minutes_left = (expected - 30) / 30
    assert abs(deals["eta_seconds"] - minutes_left * 60) < 5
    assert report["recommendations"]["phase"] == "waiting_for_sync"
    page = admin.client.get("/status").get_data(as_text=True)
    assert "Syncing now" in page
    assert (f"First sync: 30 records read in this sync, "
            f"{sync_progress.duration(timedelta(minutes=minutes_left))} left.") in page
    assert "30 read so far" in page  # the latest-syncs table, while it runs
    assert "The first sync starts within a minute" not in page  # it has started


def test_another_tenants_sync_is_not_on_my_page_and_logged_out_sees_nothing(
    quiet_app: Flask, sf_sandbox: RunningSandbox
) -> None:
    mine, theirs = _set_up(quiet_app, sf_sandbox), _set_up(quiet_app, sf_sandbox)
    wh = Warehouse(quiet_app.extensions["accrue_warehouse"])
    run_id = wh.start_run(theirs.tenant_id, "opportunity")
    # A count no page shows otherwise (not a random e-mail's hex, nor a year or a port).
    wh.record_progress(run_id, 7_351_937, WriteStats(upserted=7_351_937))
    assert any(o["state"] == "syncing" for o in theirs.client.get(
        "/status/progress.json").get_json()["objects"])
    report = mine.client.get("/status/progress.json").get_json()
    assert {o["state"] for o in report["objects"]} == {"waiting"}
    page = mine.client.get("/status").get_data(as_text=True)
    assert "7,351,937" not in page and "7351937" not in page
    assert mine.client.get(f"/status/runs/{run_id}").status_code == 404
    mine.logout()
    for path in ("/status", "/status/progress.json", f"/status/runs/{run_id}"):
        response = mine.client.get(path)
        assert response.status_code == 302 and location(response) == "/auth/login"
