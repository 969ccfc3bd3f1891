"""File upload in a real browser (headless Chromium): Select CRM's "File upload", the
upload form, the mapping page (screenshot for docs/file-import.md), a correction, the
import, the result with its quarantined lines. Skips like test_concierge_browser.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accrue.file_import.feed import FileConnector
from accrue.sync import sync_object
from accrue.warehouse import Warehouse
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    concierge_db_url_fixture,
    make_app,
)
from accrue_pipelines_tests.concierge.test_concierge_browser import (  # noqa: F401 - fixtures
    LiveServer,
    browser,
    new_email,
    sign_up,
    tenant_of,
)

EXPORTS = Path(__file__).parents[1] / "file_import_exports"
SCREENSHOT = Path(__file__).parents[2] / "docs" / "screenshots" / "file-upload-mapping.png"


@pytest.fixture
def upload_live(concierge_db_url: str) -> Iterator[LiveServer]:
    server = LiveServer(make_app(concierge_db_url, SERVER_NAME=None))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def upload_page(browser: Any, upload_live: LiveServer) -> Iterator[Any]:  # noqa: F811 - the fixture
    context = browser.new_context(base_url=upload_live.url, viewport={"width": 1280,
                                                                      "height": 900})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    context.close()


def test_an_admin_uploads_a_csv_corrects_the_mapping_and_sees_the_result(
        upload_page: Any, upload_live: LiveServer) -> None:
    page, live = upload_page, upload_live
    email = new_email()
    sign_up(page, live, email)
    page.goto("/onboarding/crm")
    page.get_by_label("File upload").check()
    page.get_by_role("button", name="Continue", exact=True).click()
    page.wait_for_url("**/uploads/")
    page.get_by_label("What the file holds").select_option("opportunity")
    page.get_by_label("CSV or zip file").set_input_files(str(EXPORTS / "salesforce_report.csv"))
    page.get_by_role("button", name="Upload and check").click()
    page.wait_for_url("**/uploads/*")
    assert page.get_by_role("heading", name="Check the mapping").is_visible()
    assert page.get_by_text("1 of 6 will be quarantined").first.is_visible()
    assert page.get_by_label("Opportunity ID").input_value() == "source_id"
    page.get_by_label("Lead Source").select_option("")  # the admin's correction
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.get_by_label("Full snapshot").check()
    page.get_by_role("button", name="Import", exact=True).click()
    assert page.get_by_text("Queued").first.is_visible()

    tenant_id = tenant_of(live, email).id
    engine = live.app.extensions["accrue_warehouse"]
    sync_object(Warehouse(engine), FileConnector(engine, tenant_id), tenant_id, "opportunity")
    page.reload()
    assert page.locator("#count-imported").inner_text() == "4"
    assert page.locator("#count-quarantined").inner_text() == "2"
    rows = page.locator("#quarantined tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).inner_text().startswith("6\tAmount (amount): 'TBD' is not a number")
    assert page.get_by_role("link", name="Continue the setup").is_visible()
    stored = Warehouse(engine).history(tenant_id, "opportunity", "0065g00000AbCdEAAV")
    assert "lead_source" not in stored[-1]["fields"] or stored[-1]["fields"][
        "lead_source"] is None
