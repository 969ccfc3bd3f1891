"""The activities switch in the concierge: the wizard and Integration settings store it on
the tenant, and the pages say what it does and what will be imported.

Why: the pipelines obey only the tenant's `optional_objects`; a switch that the pages
show but that never reaches the tenant would be a switch that does nothing.
"""

from __future__ import annotations

from flask import Flask

from accrue import tenants
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    Admin,
    admin_fixture,
    app_fixture,
    concierge_db_url_fixture,
    location,
)
from accrue_pipelines_tests.concierge.test_concierge_integration import (
    _audited,
    _engine,
    _follow,
    _page,
)
from accrue_pipelines_tests.concierge.test_concierge_status import _complete_setup
from connectors.common_model import OPTIONAL_OBJECTS
from connectors.salesforce.sandbox import RunningSandbox
from onboarding_app import store
from onboarding_app.connection import imports


def _to_review(admin: Admin, sandbox: RunningSandbox) -> None:
    admin.signup()
    admin.start()
    admin.choose_crm()
    assert location(admin.details(sandbox)) == "/onboarding/review"


def test_every_optional_object_has_its_switch() -> None:
    assert set(imports.OPTIONAL_IMPORTS.values()) == set(OPTIONAL_OBJECTS)


def test_the_review_page_lists_what_is_imported_and_says_what_the_switch_does(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    _to_review(admin, sf_sandbox)
    page = admin.client.get("/onboarding/review").get_data(as_text=True)
    always = page[page.index("Always imported"):page.index("Optional imports")]
    optional = page[page.index("Optional imports"):]
    assert "Opportunities (deals)" in always and "Activities" not in always  # U2
    counts = sf_sandbox.sandbox.counts()
    activities = counts["Task"]["live"] + counts["Event"]["live"]
    assert f"{activities:,} records now" in optional and "Task, Event" in optional
    assert "stalled deals" in optional  # what the switch does
    assert "Market data" not in page and "Vendor" not in page
    assert "later, in Integration settings" in page  # the promise the settings page keeps


def test_the_wizard_stores_the_switch_on_the_tenant(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    engine = _engine(app)
    _to_review(admin, sf_sandbox)
    admin.review(frequency=60, activities=True, action="save")
    assert tenants.require_tenant(engine, admin.tenant_id).optional_objects == ("activity",)
    assert location(admin.review(frequency=60)) == "/onboarding/terms"  # switched off again
    assert tenants.require_tenant(engine, admin.tenant_id).optional_objects == ()
    admin.review(frequency=60, activities=True)
    admin.terms()
    complete = admin.client.get("/onboarding/complete").get_data(as_text=True)
    assert "Activities (calls, e-mails, meetings, to-dos)" in complete
    admin.finish()
    tenant = tenants.require_tenant(engine, admin.tenant_id)
    assert tenant.status == "active" and tenant.syncs("activity")
    wizard = store.load_wizard(engine, admin.tenant_id)
    assert wizard.section("review")["imports"] == {"activities": True}


def test_the_finish_stores_answers_saved_before_the_switch_reached_the_tenant(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    engine = _engine(app)
    _to_review(admin, sf_sandbox)
    admin.review(frequency=60, activities=True)
    admin.terms()
    tenants.set_optional_objects(engine, admin.tenant_id, [])  # as a tenant from before
    admin.finish()
    assert tenants.require_tenant(engine, admin.tenant_id).optional_objects == ("activity",)


def test_integration_settings_switch_activities_on_and_off(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    engine = _engine(app)
    _complete_setup(admin, sf_sandbox)
    page = _page(admin)
    assert "Optional imports" in page and "stalled deals" in page
    page = _follow(admin, admin.post("/integration/imports", {"activities": "y"}))
    assert "Activities are imported: the next sync reads them" in page
    assert tenants.require_tenant(engine, admin.tenant_id).optional_objects == ("activity",)
    assert store.load_wizard(engine, admin.tenant_id).section("review")["imports"] == {
        "activities": True}
    assert "Changed the optional imports" in page  # in the change trail
    page = _follow(admin, admin.post("/integration/imports", {}))
    assert "Activities are not imported" in page
    assert tenants.require_tenant(engine, admin.tenant_id).optional_objects == ()
    _follow(admin, admin.post("/integration/imports", {}))  # no change: nothing audited
    changes = _audited(engine, admin.tenant_id, "integration.imports_changed")
    assert [e["detail"]["to"] for e in changes] == [{"activities": True},
                                                    {"activities": False}]
    refused = admin.client.post("/integration/imports", data={"activities": "y"})  # no CSRF
    assert refused.status_code == 400
    assert tenants.require_tenant(engine, admin.tenant_id).optional_objects == ()


def test_another_admin_cannot_switch_this_tenants_imports(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    engine = _engine(app)
    _complete_setup(admin, sf_sandbox)
    other = Admin(app.test_client())
    _complete_setup(other, sf_sandbox)
    _follow(other, other.post("/integration/imports", {"activities": "y"}))
    assert tenants.require_tenant(engine, other.tenant_id).syncs("activity")
    assert not tenants.require_tenant(engine, admin.tenant_id).syncs("activity")
