"""The results pages in a real browser, on a realistically seeded tenant (issue 11.1).

The tenant is the demo's: a local sandbox org of 1,200 opportunities synced by the real
connector and analysed by the real assets (a fitted price curve, opportunities, seller
months), once per module. Each role logs in and reads its pages; the charts must load
as images under the app's CSP, the CSV must download. With ACCRUE_SCREENSHOT_DIR set
(e.g. docs/screenshots) the pages are saved there as 1280×800 PNGs for the README:
`ACCRUE_SCREENSHOT_DIR=docs/screenshots pytest \
accrue_pipelines_tests/concierge/test_results_browser.py`.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from accrue import config, crypto, db, tenants
from accrue.schema import object_table, price_recommendation, utcnow
from accrue_pipelines.analytics.assets import (
    price_recommendations,
    revenue_opportunities,
    seller_metrics,
)
from accrue_pipelines.platform.partitions import TENANT_PARTITIONS_NAME
from accrue_pipelines.platform.resources import pipeline_resources
from accrue_pipelines.sync.assets import sync_assets
from accrue_pipelines_tests.concierge.test_concierge_app import PASSWORD, make_app
from accrue_pipelines_tests.concierge.test_concierge_browser import (  # noqa: F401 - fixture
    LiveServer,
    browser,
    log_in,
)
from connectors.salesforce.sandbox import running_sandbox
from onboarding_app import store
from onboarding_app.results import queries
from onboarding_app.results.scope import reports_below
from onboarding_app.security import hash_password

OPPORTUNITIES = 1200
VIEWPORT = {"width": 1280, "height": 800}


@dataclass(frozen=True)
class Person:
    email: str
    name: str
    crm_user_id: str | None = None


@dataclass(frozen=True)
class Tenant:
    database_url: str
    tenant_id: str
    admin: Person
    manager: Person
    seller: Person
    team: frozenset[str]  # the manager's team, by CRM user name


def _materialize(database_url: str, tenant_id: str) -> None:
    """The real sync of every object, then the three analytics assets."""
    resources = pipeline_resources(database_url)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant_id])
        for assets in (sync_assets, [price_recommendations, revenue_opportunities,
                                     seller_metrics]):
            assert dg.materialize(assets, instance=instance, partition_key=tenant_id,
                                  resources=resources).success


def _people(engine: sa.Engine, tenant_id: str) -> tuple[Person, Person, frozenset[str]]:
    """The CRM manager with most direct reports, and their report with most open deals."""
    users, deals = object_table("user"), object_table("opportunity")
    with engine.connect() as conn:
        names = dict(conn.execute(sa.select(users.c.source_id, users.c.name).where(
            users.c.tenant_id == tenant_id)).all())
        manager_id = conn.execute(
            sa.select(users.c.manager_id).where(users.c.tenant_id == tenant_id,
                                                users.c.manager_id.is_not(None))
            .group_by(users.c.manager_id).order_by(sa.func.count().desc()).limit(1)
        ).scalar_one()
        seller_id = conn.execute(
            sa.select(deals.c.owner_id).join(users, sa.and_(
                users.c.tenant_id == deals.c.tenant_id, users.c.source_id == deals.c.owner_id))
            .where(deals.c.tenant_id == tenant_id, users.c.manager_id == manager_id,
                   deals.c.is_closed.is_(False))
            .group_by(deals.c.owner_id).order_by(sa.func.count().desc()).limit(1)
        ).scalar_one()
    team = frozenset(names[u] for u in reports_below(engine, tenant_id, manager_id))
    people = []
    for role, crm_user_id in (("manager", manager_id), ("seller", seller_id)):
        person = Person(f"{role}@northwind.example.com", names[crm_user_id], crm_user_id)
        store.create_member(engine, tenant_id=tenant_id, email=person.email,
                            full_name=person.name, password_hash=hash_password(PASSWORD),
                            role=role, crm_user_id=crm_user_id)
        people.append(person)
    return people[0], people[1], team


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenant]:
    home = tmp_path_factory.mktemp("results-browser")
    database_url = f"sqlite:///{home / 'warehouse.db'}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv(config.SECRET_KEYS_ENV, crypto.generate_key())
        env.setenv(config.HOME_ENV, str(home / "accrue_home"))
        engine = db.make_engine(database_url)
        db.upgrade(engine)
        admin = Person("ana@northwind.example.com", "Ana Admin")
        tenant_id, _ = store.create_account(
            engine, company="Northwind Supplies", full_name=admin.name, email=admin.email,
            password_hash=hash_password(PASSWORD))
        sandbox = running_sandbox(str(home / "org.db"), seed=7, n_opportunities=OPPORTUNITIES)
        try:
            tenants.save_credentials(
                engine, tenant_id, "salesforce",
                {"username": sandbox.username, "password": sandbox.password,
                 "security_token": sandbox.security_token}, {"sandbox_url": sandbox.url})
            tenants.set_status(engine, tenant_id, "active")
            store.save_wizard(engine, tenant_id, completed_at=utcnow())
            _materialize(database_url, tenant_id)
        finally:
            sandbox.stop()
        manager, seller, team = _people(engine, tenant_id)
        engine.dispose()
    yield Tenant(database_url, tenant_id, admin, manager, seller, team)


def stand_in_curve(row: dict[str, Any]) -> list[list[float]] | None:
    """Until price_recommendation.win_curve is stored: the deal's logit curve through the
    two points the row has (its win chance at the current and at the recommended price)."""
    try:
        x1 = row["current_price"] / row["list_total"]
        x2 = row["recommended_price"] / row["list_total"]
        p1, p2 = row["win_probability_current"], row["win_probability_recommended"]
        l1, l2 = math.log((1 - p1) / p1), math.log((1 - p2) / p2)
        b = (l1 - l2) / (x1 - x2)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    low, high = min(x1, x2, row["band_floor"] or 1) - 0.1, max(x1, x2, row["band_start"] or 0) + 0.1
    grid = [low + (high - low) * i / 40 for i in range(41)]
    return [[x * row["list_total"], 1 / (1 + math.exp(l1 + b * (x - x1)))] for x in grid]


@pytest.fixture
def live(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    if "win_curve" not in price_recommendation.c:
        original = queries.deal

        def deal(*args: Any, **kwargs: Any) -> dict[str, Any] | None:
            row = original(*args, **kwargs)
            if row is not None:
                row["win_curve"] = stand_in_curve(row)
            return row

        monkeypatch.setattr(queries, "deal", deal)
    server = LiveServer(make_app(tenant.database_url, None, SERVER_NAME=None))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser: Any, live: LiveServer) -> Iterator[Any]:  # noqa: F811 - the fixture
    context = browser.new_context(base_url=live.url, viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(30_000)
    tab = context.new_page()
    tab.csp_errors = []  # what the browser refused under the Content-Security-Policy
    tab.on("console", lambda m: "Content Security Policy" in m.text and tab.csp_errors.append(
        m.text))
    yield tab
    assert tab.csp_errors == []
    context.close()


def shoot(page: Any, name: str) -> None:
    """The viewport as a PNG of 256 colours (a third of the size; a page has few colours)."""
    target = os.environ.get("ACCRUE_SCREENSHOT_DIR")
    if target:
        from PIL import Image

        Path(target).mkdir(parents=True, exist_ok=True)
        image = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
        image.quantize(colors=256).save(Path(target) / f"{name}.png", optimize=True)


def image_loads(page: Any, selector: str) -> bool:
    image = page.locator(selector)
    image.scroll_into_view_if_needed()
    page.wait_for_function("s => { const i = document.querySelector(s); "
                           "return i && i.complete; }", arg=selector)
    return bool(image.evaluate("i => i.naturalWidth > 0 && i.naturalHeight > 0"))


def column(page: Any, index: int) -> list[str]:
    """The first line of every body cell in the table's column `index` (from 1)."""
    cells = page.locator(f"table.results tbody tr td:nth-child({index})").all_inner_texts()
    return [cell.split("\n")[0].strip() for cell in cells]


def download(page: Any, link: str) -> list[dict[str, str]]:
    with page.expect_download() as info:
        page.get_by_role("link", name=link, exact=True).click()
    path = info.value.path()
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_admin_reads_every_page_with_its_chart_and_csv(page: Any, tenant: Tenant) -> None:
    log_in(page, tenant.admin.email)
    assert page.get_by_text("open deals priced").is_visible()
    assert page.get_by_role("heading", name="Connect your CRM").count() == 0
    shoot(page, "home")

    page.goto("/deals")
    assert page.locator("table.results tbody tr").count() == 50
    assert page.get_by_text("Showing 1–50 of").first.is_visible()
    assert "Curve fitted" in page.locator("table.results").inner_text()
    shoot(page, "deals")
    page.get_by_label("Seller").select_option(label=tenant.seller.name)
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(f"**seller={tenant.seller.crm_user_id}**")
    assert set(column(page, 2)) == {tenant.seller.name}
    rows = download(page, "Download CSV")
    assert rows and {r["Seller"] for r in rows} == {tenant.seller.name}
    assert len(rows) >= page.locator("table.results tbody tr").count()

    page.goto("/deals")
    page.locator("table.results tbody tr td a").first.click()
    page.wait_for_url("**/deals/*")
    assert page.get_by_role("heading", name="How this price was made").is_visible()
    assert image_loads(page, "figure.chart img")
    page.evaluate("window.scrollTo(0, document.querySelector('h1').offsetTop - 8)")
    shoot(page, "deal")

    page.goto("/opportunities")
    groups = page.locator("section.account-group")
    assert groups.count() > 0 and "Cross-sell" in groups.first.inner_text()
    shoot(page, "opportunities")
    assert len(download(page, "Download CSV")) > groups.count()

    page.goto("/team")
    assert image_loads(page, "main > figure.chart img")
    assert page.locator("table.results tbody tr").count() > 3
    page.evaluate("window.scrollTo(0, 0)")
    shoot(page, "team")
    assert download(page, "Download CSV")
    page.get_by_role("link", name=tenant.seller.name).click()
    assert image_loads(page, "#history figure.chart img")


def test_a_seller_reads_only_their_own(page: Any, tenant: Tenant) -> None:
    log_in(page, tenant.seller.email)
    assert page.get_by_text("your win rate").is_visible()
    assert page.get_by_role("link", name="Data status").count() == 0
    page.goto("/deals")
    assert page.get_by_label("Seller").count() == 0  # nobody else's deals to pick
    assert set(column(page, 2)) == {tenant.seller.name}
    assert {r["Seller"] for r in download(page, "Download CSV")} == {tenant.seller.name}
    page.locator("table.results tbody tr td a").first.click()
    assert image_loads(page, "figure.chart img")
    page.goto("/team")
    assert column(page, 1)[0] == tenant.seller.name  # their own row, next to the team
    assert page.locator("main > .table-wrap table.results tbody tr").count() == 1
    assert image_loads(page, "main > figure.chart img")
    assert image_loads(page, "#history figure.chart img")  # and their months
    page.evaluate("window.scrollTo(0, 0)")
    shoot(page, "team-seller")
    assert page.goto("/status").status == 403


def test_a_manager_reads_their_team(page: Any, tenant: Tenant) -> None:
    log_in(page, tenant.manager.email)
    assert page.get_by_text("your team's win rate").is_visible()
    page.goto("/deals?sort=name")
    assert set(column(page, 2)) <= tenant.team
    assert {r["Seller"] for r in download(page, "Download CSV")} <= tenant.team
    page.goto("/team")
    assert set(column(page, 1)) <= tenant.team
    assert image_loads(page, "main > figure.chart img")
