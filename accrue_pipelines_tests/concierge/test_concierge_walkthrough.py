"""Issue 11's walk-through again, in Chromium: where the page scrolls and what has focus
after an error, what the inline test says, the Sign-up button's contrast, and the status
page's live refresh. Fixtures come from test_concierge_browser.py."""

from __future__ import annotations

from typing import Any

import pytest

from accrue.warehouse import Warehouse, WriteStats
from accrue_pipelines_tests.concierge import test_concierge_browser as browser_tests
from accrue_pipelines_tests.concierge.test_concierge_browser import (  # noqa: F401 - fixtures
    LiveServer,
    concierge_db_url_fixture,
    finish_from_details,
    legacy_details,
    new_email,
    popup,
    sign_up,
    tenant_of,
)
from connectors.salesforce.sandbox import RunningSandbox

browser, live = browser_tests.browser, browser_tests.live  # the fixtures, under their names

SHORT_SCREEN = {"width": 1280, "height": 600}


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Any:
    """A laptop-sized window: short enough that the end of Provide Details is below it."""
    context = browser.new_context(base_url=live.url, viewport=SHORT_SCREEN)
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def _to_details(page: Any, live: LiveServer) -> str:
    email = new_email()
    sign_up(page, live, email)
    popup(page).get_by_role("button", name="Start Now").click()
    page.get_by_role("button", name="Continue", exact=True).click()
    page.wait_for_url("**/onboarding/details")
    return email


def _in_view(page: Any, selector: str) -> bool:
    return bool(page.eval_on_selector(selector, """el => {
        const r = el.getBoundingClientRect();
        return r.top >= 0 && r.bottom <= window.innerHeight; }"""))


def test_continue_with_a_wrong_password_brings_the_error_into_view(
    page: Any, live: LiveServer, sf_sandbox: RunningSandbox
) -> None:
    _to_details(page, live)
    legacy_details(page, sf_sandbox)
    page.get_by_label("Password", exact=True).fill("not-the-password-1")
    page.get_by_role("button", name="Continue", exact=True).click()
    page.locator("#test-result.bad").wait_for()
    assert page.evaluate("document.activeElement.id") == "test-result"
    assert _in_view(page, "#test-result") and page.evaluate("window.scrollY") > 0
    text = page.locator("#test-result").inner_text()
    assert text.startswith("Salesforce did not accept this username, password and security")
    assert "INVALID_LOGIN" not in page.content()
    assert page.locator("#security_token").get_attribute("aria-invalid") is None


def test_the_inline_test_says_it_once_and_blames_no_field_for_invalid_login(
    page: Any, live: LiveServer, sf_sandbox: RunningSandbox
) -> None:
    _to_details(page, live)
    assert page.get_by_role("button", name="Test connection").count() == 0  # nothing saved
    legacy_details(page, sf_sandbox)
    page.get_by_role("button", name="Save and Continue Later").click()
    page.wait_for_url("**/home")
    page.goto("/onboarding/details")
    page.get_by_label("Password Saved").fill("not-the-password-1")
    page.get_by_role("button", name="Test connection").click()
    page.locator("#test-result.bad").wait_for()
    hint = "It does not say which one is wrong"
    assert page.locator(f"text={hint}").count() == 1
    assert page.locator("[aria-invalid='true']").count() == 0
    assert page.evaluate("document.activeElement.id") == "test-result"
    # Demo mode: nothing to choose about the org.
    assert page.get_by_text("Salesforce environment").count() == 0
    assert page.get_by_label("My Domain (optional)").count() == 0


CONTRAST = """el => {
  const rgb = (css) => css.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const style = getComputedStyle(el);
  const [a, b] = [lum(rgb(style.color)), lum(rgb(style.backgroundColor))];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


def test_sign_up_buttons_have_enough_contrast(page: Any) -> None:
    """WCAG AA asks 4.5:1 for text; the header's Sign up was grey on blue once."""
    page.goto("/")
    header = page.get_by_role("navigation", name="Main").get_by_role("link", name="Sign up")
    landing = page.get_by_role("link", name="Create your account")
    for button in (header, landing):
        assert button.evaluate(CONTRAST) >= 4.5


def test_status_page_follows_a_running_sync_without_a_reload(
    page: Any, live: LiveServer, sf_sandbox: RunningSandbox
) -> None:
    email = _to_details(page, live)
    finish_from_details(page, sf_sandbox)
    assert page.get_by_text("The first sync starts within a minute of setup.").is_visible()
    assert page.get_by_text("e-mail").count() == 0  # no SMTP in this app: nothing promised

    tenant_id = tenant_of(live, email).id
    wh = Warehouse(live.app.extensions["accrue_warehouse"])
    run_id = wh.start_run(tenant_id, "account")
    wh.record_progress(run_id, 12, WriteStats(upserted=12))
    row = page.locator('tr[data-object="account"]')
    row.get_by_text("Syncing now").wait_for(timeout=8_000)  # the 5-second refresh
    row.get_by_text("12 records read").wait_for()
    wh.record_progress(run_id, 34, WriteStats(upserted=34))
    row.get_by_text("34 records read").wait_for(timeout=8_000)
    wh.finish_run(run_id, "failed", {}, error="[outage] SourceUnavailable", error_kind="outage")
    row.get_by_text("The last sync failed: the CRM did not answer.").wait_for(timeout=8_000)
    assert row.locator("[data-state]").inner_text() == "Failed, retrying"
