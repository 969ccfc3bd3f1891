"""After "Finish and Close": the tenant is active, the status page follows the first sync,
and e-mails go out through SMTP (a local aiosmtpd server here)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from flask import Flask

from accrue import tenants
from accrue.analytics import store
from accrue.sync import sync_object
from accrue.warehouse import Warehouse
from accrue_pipelines_tests.test_concierge_app import (  # noqa: F401 - fixtures
    Admin,
    concierge_db_url_fixture,
    make_app,
)
from connectors.registry import create_connector
from connectors.sandbox.salesforce import RunningSandbox


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
    page = admin.client.get("/status").get_data(as_text=True)
    assert "Waiting to start" in page and "First recommendations" in page
    assert "Being computed." in page

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
    assert "Ready." in page and "Latest syncs" in page

    # The second milestone: the price_recommendations asset has written the tenant's rows.
    store.replace_price_recommendations(
        engine, admin.tenant_id,
        pd.DataFrame([{"opportunity_id": "006000000000001AAA", "method": "model",
                       "recommended_price": 1000.0}]),
        "test-model",
    )
    ready = admin.client.get("/status/progress.json").get_json()["recommendations"]
    assert (ready["state"], ready["count"]) == ("ready", 1)
    page = admin.client.get("/status").get_data(as_text=True)
    assert "1 open deals have a recommended price" in page


def test_no_smtp_host_means_no_mail_but_setup_still_completes(
    concierge_db_url: str, sf_sandbox: RunningSandbox
) -> None:
    app = make_app(concierge_db_url, sf_sandbox.url, SMTP_HOST=None)
    admin = Admin(app.test_client())
    _complete_setup(admin, sf_sandbox)
    engine = app.extensions["accrue_warehouse"]
    assert tenants.require_tenant(engine, admin.tenant_id).status == "active"


def test_status_before_setup_points_back_to_the_wizard(
    concierge_db_url: str, sf_sandbox: RunningSandbox
) -> None:
    app = make_app(concierge_db_url, sf_sandbox.url)
    admin = Admin(app.test_client())
    admin.signup()
    page = admin.client.get("/status").get_data(as_text=True)
    assert "No data yet" in page and "Connect your CRM" in page
