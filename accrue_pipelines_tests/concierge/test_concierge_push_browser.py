"""The Push API choice in a real browser (Playwright, Debian's Chromium, headless): Select
CRM → Push API → the Push setup page with the secret and a curl example; the example,
sent for real over HTTP to the live server, turns the waiting indicator green.

With ACCRUE_SCREENSHOT_DIR set (docs/screenshots) the page is saved as push-setup.png.
"""

from __future__ import annotations

import html
import shlex
from typing import Any

import requests

from accrue_pipelines_tests.concierge.test_concierge_browser import (  # noqa: F401 - fixtures
    LiveServer,
    browser,
    concierge_db_url_fixture,
    live,
    new_email,
    page,
    popup,
    sign_up,
    tenant_of,
)
from accrue_pipelines_tests.concierge.test_concierge_push import parse_curl
from accrue_pipelines_tests.concierge.test_results_browser import shoot
from benchmarks.support.wizard import finish_from_step_3


def test_select_crm_push_api_shows_a_working_curl_example(
    page: Any,  # noqa: F811 - the fixture imported above
    live: LiveServer,  # noqa: F811 - the fixture imported above
) -> None:
    page.set_viewport_size({"width": 1280, "height": 1100})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    email = new_email()
    sign_up(page, live, email)
    popup(page).get_by_role("button", name="Start Now").click()
    page.wait_for_url("**/onboarding/crm")
    card = page.locator("label.choice", has_text="Push API")
    assert "C2CRM" in card.inner_text()
    page.get_by_label("Push API").check()
    page.set_viewport_size({"width": 1280, "height": 1200})  # every card in the picture
    shoot(page, "select-crm")
    page.set_viewport_size({"width": 1280, "height": 1100})
    page.get_by_role("button", name="Continue", exact=True).click()
    page.wait_for_url("**/onboarding/push")

    assert page.get_by_role("heading", name="store it now, it will not be shown again").is_visible()
    secret = page.locator("#push-secret").inner_text().strip()
    assert secret.startswith("whsec_")
    curl = page.locator("#push-curl").inner_text()
    assert curl.startswith("curl ") and "webhook-signature: v1," in curl
    indicator = page.locator("#push-indicator")
    assert "Waiting for your first push" in indicator.inner_text()
    shoot(page, "push-setup")

    # The example as pasted into a terminal: sent over HTTP to the live server.
    url, headers, body = parse_curl(html.unescape(curl))
    assert shlex.quote(body.decode()) in curl
    answer = requests.post(url.replace("http://localhost", live.url), data=body,
                           headers=headers, timeout=10)
    assert answer.status_code == 202, answer.text
    page.wait_for_selector("#push-indicator.ok", timeout=15_000)
    assert "Your first push arrived" in indicator.inner_text()
    assert [e for e in errors if "Content Security Policy" in e] == []

    finish_from_step_3(page)
    tenant = tenant_of(live, email)
    assert (tenant.crm_type, tenant.status) == ("push", "active")

    # Integration settings: the Push API page, with the push listed and no secret.
    page.goto("/integration")
    page.wait_for_url("**/integration/push")
    assert page.get_by_role("heading", name="Recent pushes").is_visible()
    assert "msg_setup_" in page.locator("table.push-batches").inner_text()
    assert secret not in page.content()
    shoot(page, "push-settings")
