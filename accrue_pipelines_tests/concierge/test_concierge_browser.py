"""The concierge in a real browser: Playwright driving Debian's Chromium, headless.

The app is served by a werkzeug server thread on a free port, against the
Salesforce sandbox. Every test skips, saying why, when Chromium or Playwright
is missing (`.ci/run` installs Chromium with apt).
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from accrue import tenants
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    PASSWORD,
    concierge_db_url_fixture,
    confirm_path,
    make_app,
)
from benchmarks.support.wizard import finish_from_step_3
from connectors.salesforce.sandbox import RunningSandbox
from onboarding_app.notify import Email, email_composed

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    if CHROMIUM.exists():
        return str(CHROMIUM)
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("browser tests need Chromium at /usr/bin/chromium: run "
                    "`apt-get install -y chromium` (.ci/run does it when it can)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need the playwright package (pip install playwright)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=LAUNCH_ARGS)
        yield instance
        instance.close()


class LiveServer:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.mails: list[Email] = []  # what the app e-mailed (notify.email_composed)
        email_composed.connect(self._record, app)
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _record(self, _sender: Flask, message: Email, **_: Any) -> None:
        self.mails.append(message)

    def stop(self) -> None:
        email_composed.disconnect(self._record, self.app)
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture
def live(concierge_db_url: str, sf_sandbox: RunningSandbox) -> Iterator[LiveServer]:
    server = LiveServer(make_app(concierge_db_url, sf_sandbox.url, SERVER_NAME=None))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Iterator[Any]:
    context = browser.new_context(base_url=live.url)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    context.close()


def new_email() -> str:
    return f"admin-{uuid.uuid4().hex[:10]}@example.com"


def sign_up(page: Any, live: LiveServer, email: str) -> None:
    """The form, "Check your inbox", the e-mailed link, "Confirm and continue"."""
    page.goto("/auth/signup")
    page.get_by_label("Company name").fill("Browser Co")
    page.get_by_label("Your name").fill("Bea Browser")
    page.get_by_label("Work e-mail").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url("**/auth/signup/sent")
    assert page.get_by_role("heading", name="Check your inbox").is_visible()
    page.goto(confirm_path(live.mails, email))
    page.get_by_role("button", name="Confirm and continue").click()
    page.wait_for_url("**/home")


def log_in(page: Any, email: str, lands_on: str = "/home") -> None:
    """Log in and wait for the landing page: home, or the saved step (U5)."""
    page.goto("/auth/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{lands_on}")


def log_out(page: Any) -> None:
    page.get_by_role("button", name="Log out", exact=True).click()
    page.wait_for_url("**/auth/login")


def popup(page: Any) -> Any:
    return page.get_by_role("dialog")


def tenant_of(live: LiveServer, email: str) -> tenants.Tenant:
    engine = live.app.extensions["accrue_warehouse"]
    with engine.connect() as conn:
        import sqlalchemy as sa

        tenant_id = conn.execute(sa.text("SELECT tenant_id FROM app_user WHERE email = :e"),
                                 {"e": email}).scalar_one()
    return tenants.require_tenant(engine, tenant_id)


def legacy_details(page: Any, sandbox: RunningSandbox) -> None:
    page.get_by_label("Username, password and security token").check()
    page.get_by_label("Salesforce username").fill(sandbox.username)
    page.get_by_label("Password", exact=True).fill(sandbox.password)
    page.get_by_label("Security token", exact=True).fill(sandbox.security_token)


def finish_from_details(page: Any, sandbox: RunningSandbox) -> None:
    """From Provide Details to the status page: legacy credentials, defaults, agree, finish."""
    legacy_details(page, sandbox)
    finish_from_step_3(page)


def test_full_flow_from_sign_up_to_finish_and_close(page: Any, live: LiveServer,
                                                    sf_sandbox: RunningSandbox) -> None:
    email = new_email()
    sign_up(page, live, email)
    dialog = popup(page)
    assert dialog.is_visible() and "Welcome to Accrue" in dialog.inner_text()
    dialog.get_by_role("button", name="Start Now").click()
    page.wait_for_url("**/onboarding/crm")
    assert page.get_by_label("Salesforce Sales Cloud").is_checked()
    assert page.get_by_label("HubSpot").is_enabled()  # registered (nothing is planned now)
    page.get_by_role("button", name="Continue", exact=True).click()
    page.wait_for_url("**/onboarding/details")
    page.get_by_role("button", name="Connect with Salesforce").click()
    page.wait_for_url(f"{sf_sandbox.url}/services/oauth2/authorize**")
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url("**/onboarding/details")
    assert page.get_by_text("Signed in with Salesforce to").is_visible()  # which org
    assert page.locator("#test-result.ok").inner_text().startswith("✓ Connected to Salesforce")
    page.get_by_role("button", name="Continue", exact=True).click()
    page.wait_for_url("**/onboarding/review")
    assert page.get_by_role("cell", name="Opportunities (deals)").is_visible()
    page.get_by_role("switch", name="Activities").check()
    page.get_by_label("How often should Accrue sync?").select_option("15")
    page.get_by_role("button", name="Continue", exact=True).click()
    page.wait_for_url("**/onboarding/terms")
    page.get_by_label("I have read and agree").check()
    page.get_by_role("button", name="Continue", exact=True).click()
    page.wait_for_url("**/onboarding/complete")
    page.get_by_role("button", name="Finish and Close").click()
    page.wait_for_url("**/status")
    assert page.get_by_role("heading", name="First recommendations").is_visible()
    tenant = tenant_of(live, email)
    assert (tenant.status, tenant.sync_frequency_minutes) == ("active", 15)
    assert tenant.optional_objects == ("activity",)


def test_save_log_out_log_in_and_resume_with_fields_filled(
    page: Any, live: LiveServer, sf_sandbox: RunningSandbox
) -> None:
    email = new_email()
    sign_up(page, live, email)
    popup(page).get_by_role("button", name="Start Now").click()
    page.get_by_role("button", name="Continue", exact=True).click()
    page.wait_for_url("**/onboarding/details")
    legacy_details(page, sf_sandbox)
    page.get_by_role("button", name="Save and Continue Later").click()
    page.wait_for_url("**/home")
    log_out(page)
    log_in(page, email, lands_on="/onboarding/details")  # U5: straight to the saved step
    assert page.url == f"{live.url}/onboarding/details"
    dialog = popup(page)  # U1: the login's pop-up, on the step itself
    assert dialog.is_visible()
    assert "Welcome back — continue where you left off" in dialog.inner_text()
    assert "Provide Details" in dialog.inner_text()
    dialog.get_by_role("button", name="Continue setup").click()
    assert popup(page).count() == 0 or not popup(page).is_visible()
    assert page.url == f"{live.url}/onboarding/details"
    assert page.get_by_label("Username, password and security token").is_checked()
    assert page.get_by_label("Salesforce username").input_value() == sf_sandbox.username
    assert page.get_by_label("Password Saved").input_value() == ""  # the label says "Saved"
    assert page.get_by_label("Security token Saved").input_value() == ""
    assert page.locator(".saved-badge").count() == 2
    html = page.content()
    assert sf_sandbox.password not in html and sf_sandbox.security_token not in html
    page.get_by_role("button", name="Test connection").click()
    page.locator("#test-result.ok").wait_for()
    assert "Connected to Salesforce" in page.locator("#test-result").inner_text()


def test_unsaved_changes_ask_before_leaving(page: Any, live: LiveServer) -> None:
    sign_up(page, live, new_email())
    popup(page).get_by_role("button", name="Start Now").click()
    page.get_by_role("button", name="Continue", exact=True).click()
    page.wait_for_url("**/onboarding/details")
    page.get_by_label("Username, password and security token").check()
    page.get_by_label("Salesforce username").fill("someone@example.com")
    # In-app navigation: our own dialog, which can also save.
    page.get_by_role("link", name="Home").click()
    leave = page.get_by_role("dialog", name="Save your changes?")
    assert leave.is_visible()
    leave.get_by_role("button", name="Stay on this page").click()
    assert page.url.endswith("/onboarding/details")
    # Closing the tab: the browser's own beforeunload prompt.
    seen: list[str] = []

    def on_dialog(dialog: Any) -> None:
        seen.append(dialog.type)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.close(run_before_unload=True)
    page.wait_for_timeout(300)
    assert seen == ["beforeunload"]


def test_save_and_leave_from_the_in_app_prompt(page: Any, live: LiveServer,
                                               sf_sandbox: RunningSandbox) -> None:
    email = new_email()
    sign_up(page, live, email)
    popup(page).get_by_role("button", name="Start Now").click()
    page.get_by_role("button", name="Continue", exact=True).click()
    page.wait_for_url("**/onboarding/details")
    legacy_details(page, sf_sandbox)
    page.get_by_role("link", name="Data status").click()
    page.get_by_role("dialog", name="Save your changes?").get_by_role(
        "button", name="Save and leave").click()
    page.wait_for_url("**/status")
    page.goto("/onboarding/details")
    assert page.get_by_label("Salesforce username").input_value() == sf_sandbox.username


def test_popup_on_each_login_until_setup_is_complete(page: Any, live: LiveServer,
                                                     sf_sandbox: RunningSandbox) -> None:
    email = new_email()
    sign_up(page, live, email)
    popup(page).get_by_role("button", name="Not now").click()
    page.wait_for_url("**/home")
    assert popup(page).count() == 0
    for attempt in range(2):
        log_out(page)
        log_in(page, email)
        assert popup(page).is_visible()
        if attempt == 0:
            popup(page).get_by_role("button", name="Not now").click()
            page.wait_for_url("**/home")
    popup(page).get_by_role("button", name="Start Now").click()
    page.get_by_role("button", name="Continue", exact=True).click()
    finish_from_details(page, sf_sandbox)
    log_out(page)
    log_in(page, email)
    assert popup(page).count() == 0
    assert page.get_by_text("Your CRM is connected").is_visible()
