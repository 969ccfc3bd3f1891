"""The wizard's rough edges found in the walk-through (issue 11.5), through the test client.

What needs a real browser (where the page scrolls, focus, colours) is in
test_concierge_walkthrough.py.
"""

from __future__ import annotations

import re
from html import unescape

import pytest
from flask import Flask

from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    Admin,
    admin_fixture,
    app_fixture,
    concierge_db_url_fixture,
    location,
    make_app,
)
from connectors import registry
from connectors.base import CheckResult
from connectors.salesforce.sandbox import RunningSandbox
from onboarding_app.connection import crm
from onboarding_app.wizard import SETUP_MINUTES, STEP_TITLES

FORMATTED_QUOTA = re.compile(r"Connected to Salesforce; \d{1,3}(,\d{3})+ API requests left today")


def _at_details(admin: Admin) -> None:
    admin.signup()
    admin.start()
    admin.choose_crm()


def _autofocused(html: str) -> list[str]:
    """The ids of the elements carrying `autofocus`."""
    return re.findall(r'<[^>]*\bid="([^"]+)"[^>]*\bautofocus\b[^>]*>', html) + re.findall(
        r'<[^>]*\bautofocus\b[^>]*\bid="([^"]+)"[^>]*>', html)


def test_a_failed_continue_focuses_the_error_and_a_missing_field_its_input(
    admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    _at_details(admin)
    page = admin.details(sf_sandbox, password="not-the-password-1")
    assert page.status_code == 400
    assert _autofocused(page.get_data(as_text=True)) == ["test-result"]
    missing = admin.details(None, username="", password="")
    assert _autofocused(missing.get_data(as_text=True)) == ["username"]
    first = admin.client.get("/onboarding/details").get_data(as_text=True)
    assert _autofocused(first) == []  # a plain visit jumps nowhere


def test_test_connection_shows_only_once_something_is_saved(
    admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    _at_details(admin)
    assert "Test connection" not in admin.client.get("/onboarding/details").get_data(
        as_text=True)
    admin.details(sf_sandbox, action="save")
    assert "Test connection" in admin.client.get("/onboarding/details").get_data(as_text=True)


def test_oauth_connect_says_connected_once_with_a_formatted_quota(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    _at_details(admin)
    assert "Test connection" not in admin.client.get("/onboarding/details").get_data(
        as_text=True)
    admin.oauth_connect(sf_sandbox)
    html = admin.client.get("/onboarding/details").get_data(as_text=True)
    assert html.count("Connected to") == 1 and FORMATTED_QUOTA.search(html)
    assert not re.search(r"\d{4,} API requests", html)
    assert "Test connection" in html and _autofocused(html) == ["test-result"]
    again = admin.client.get("/onboarding/details").get_data(as_text=True)
    assert _autofocused(again) == []  # only on the way back from Salesforce


def test_a_field_the_crm_blames_is_marked_and_the_words_said_once(
    admin: Admin, sf_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = crm._failed(registry.spec("salesforce"), CheckResult(
        False, "Salesforce rejected the login (API_DISABLED_FOR_ORG)", field="password"), 0.0)
    assert (refused.field, refused.message) == (
        "username", "This Salesforce org or user has no API access.")
    monkeypatch.setattr(crm, "test_connection", lambda *a, **k: refused)
    _at_details(admin)
    html = unescape(admin.details(sf_sandbox).get_data(as_text=True))
    username = re.search(r'<input[^>]*id="username"[^>]*>', html)
    assert username and 'aria-invalid="true"' in username.group(0)
    assert "test-result" in username.group(0)  # aria-describedby points at the one message
    assert html.count(refused.hint or "") == 1 and html.count(refused.message) == 1
    assert 'id="username-error"' not in html


def test_demo_mode_hides_environment_and_my_domain(admin: Admin) -> None:
    _at_details(admin)
    html = admin.client.get("/onboarding/details").get_data(as_text=True)
    assert "Demo mode" in html and "stands in for every Salesforce address" in html
    assert 'name="environment"' not in html and 'name="my_domain"' not in html
    assert html.count("Where do I find this?") == 3  # username, password, token


def test_landing_page_names_the_crms_properly_and_quotes_the_setup_time(
    concierge_db_url: str
) -> None:
    html = make_app(concierge_db_url).test_client().get("/").get_data(as_text=True)
    for name in ("Salesforce Sales Cloud", "Oracle NetSuite", "HubSpot", "Close", "SugarCRM"):
        assert f"<li>{name}" in html
    for wrong in ("Netsuite", "Hubspot", "Sugarcrm"):
        assert wrong not in html
    assert f"Setup takes about {SETUP_MINUTES} minutes." in html
    assert "five minutes" not in html


def test_the_popup_quotes_the_same_setup_time(admin: Admin) -> None:
    admin.signup()
    home = admin.client.get("/home").get_data(as_text=True)
    assert 'id="concierge"' in home and f"About {SETUP_MINUTES} minutes." in home
    assert "About 2 minutes" not in home


def test_welcome_is_the_first_step_of_the_stepper(admin: Admin, sf_sandbox: RunningSandbox
                                                  ) -> None:
    admin.signup()
    welcome = admin.client.get("/onboarding/welcome").get_data(as_text=True)
    stepper = welcome[welcome.index('<ol class="stepper">'):welcome.index("</ol>")]
    assert re.findall(r'class="step-label"[^>]*>([^<]+)<', stepper) == list(STEP_TITLES.values())
    assert f"Step 1 of {len(STEP_TITLES)}" in welcome
    assert 'aria-current="step"' in stepper.split("Select CRM")[0]  # Welcome is current
    admin.start()
    crm_page = admin.client.get("/onboarding/crm").get_data(as_text=True)
    assert f"Step 2 of {len(STEP_TITLES)}" in crm_page
    assert '<a class="step-label" href="/onboarding/welcome">Welcome' in crm_page  # done
    admin.choose_crm(action="save")
    home = admin.client.get("/home").get_data(as_text=True)
    assert f"(step 2 of {len(STEP_TITLES)})" in home
