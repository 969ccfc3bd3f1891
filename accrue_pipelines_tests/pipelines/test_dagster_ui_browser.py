"""The health view in the real Dagster UI: a webserver on a test instance, two tenants (one
failing), the asset pages opened in Chromium; the screenshots go to docs/screenshots/
(docs/operations.md shows them). Skips, saying why, without Chromium or Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import requests

from accrue import tenants
from accrue.warehouse import Warehouse
from accrue_cli.demo import _code_loaded
from accrue_pipelines.ops import assets as ops_assets
from accrue_pipelines.platform.partitions import TENANT_PARTITIONS_NAME
from accrue_pipelines.platform.resources import WarehouseResource
from accrue_pipelines_tests.concierge.test_concierge_browser import browser  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
HEALTHY, FAILING = "acme", "globex"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _seed(engine) -> None:
    store = Warehouse(engine)
    for tenant_id, status in ((HEALTHY, "succeeded"), (FAILING, "failed")):
        tenants.add_tenant(engine, tenant_id, tenant_id.title(), "salesforce",
                           sync_frequency_minutes=60)
        tenants.set_status(engine, tenant_id, "active")
        for name in tenants.require_tenant(engine, tenant_id).synced_objects():
            row = store.start_run(tenant_id, name, run_id=f"run-{tenant_id}")
            store.finish_run(row, status, {"upserted": 40, "deleted": 2, "records_read": 120},
                             "Salesforce rejected the login (INVALID_LOGIN)"
                             if status == "failed" else None,
                             error_kind="credentials" if status == "failed" else None)


@pytest.fixture
def dagster_ui(tmp_path, private_engine, monkeypatch):
    """A webserver on a fresh instance whose ops/* assets were materialized for two tenants."""
    _seed(private_engine)
    database_url = private_engine.url.render_as_string(hide_password=False)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    resources = {"warehouse": WarehouseResource(database_url=database_url)}
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [HEALTHY, FAILING])
        for tenant_id in (HEALTHY, FAILING):
            dg.materialize([ops_assets.tenant_health_asset], instance=instance,
                           partition_key=tenant_id, resources=resources)
        dg.materialize([ops_assets.fleet_health_asset], instance=instance, resources=resources)
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "ACCRUE_DATABASE_URL": database_url}
    webserver = Path(sys.executable).with_name("dagster-webserver")
    log = (tmp_path / "webserver.log").open("w")
    process = subprocess.Popen(
        [str(webserver), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not _loaded(url):
            assert process.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the webserver did not load the code in 180 s"
            time.sleep(1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _loaded(url: str) -> bool:
    try:
        return requests.get(f"{url}/server_info", timeout=2).ok and _code_loaded(url)
    except requests.RequestException:
        return False


def _dismiss_welcome(page) -> None:
    """The UI's one-time "Join the Dagster community" dialog covers the page: skip it."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5_000)
    except Exception:  # noqa: BLE001 - not shown (already dismissed in this browser)
        return
    skip.click()
    skip.wait_for(state="hidden", timeout=5_000)


def test_the_health_view_shows_both_tenants(dagster_ui, browser):  # noqa: F811 - fixture
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{dagster_ui}/assets/ops/fleet_health?view=events", timeout=60_000)
        for tenant_id in (HEALTHY, FAILING):
            page.get_by_text(tenant_id, exact=True).first.wait_for(timeout=60_000)
        page.get_by_text("failing", exact=True).first.wait_for(timeout=10_000)
        _dismiss_welcome(page)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "dagster-fleet-health.png"), full_page=True)
        page.goto(f"{dagster_ui}/assets/ops/tenant_health?view=partitions&partition={FAILING}",
                  timeout=60_000)
        for tenant_id in (HEALTHY, FAILING):
            page.get_by_text(tenant_id, exact=True).first.wait_for(timeout=60_000)
        page.get_by_text("re-enter", exact=False).first.wait_for(timeout=30_000)  # the action
        _dismiss_welcome(page)
        page.screenshot(path=str(SCREENSHOTS / "dagster-tenant-health.png"), full_page=True)
    finally:
        page.close()
