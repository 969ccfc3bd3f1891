"""Roles and scoping of the results pages (issue 11): invitations, what each role sees.

The hierarchy used throughout: Maya manages Sam and Lee; Lee manages Kim; Olga is
outside Maya's team. Each owns one open deal.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from flask import Flask

from accrue import db
from accrue.analytics import store as analytics_store
from accrue.schema import app_session, email_link
from accrue.warehouse import Warehouse
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    Admin,
    admin_fixture,
    app_fixture,
    captured_mail,
    concierge_db_url_fixture,
)
from connectors.base import Upsert
from onboarding_app.results.scope import reports_below

STAMP = datetime(2026, 1, 5, tzinfo=UTC)
HIERARCHY = {  # CRM user id: (name, manager id)
    "u-maya": ("Maya Manager", None), "u-sam": ("Sam Seller", "u-maya"),
    "u-lee": ("Lee Lead", "u-maya"), "u-kim": ("Kim Junior", "u-lee"),
    "u-olga": ("Olga Other", None),
}
PASSWORD = "correct horse battery staple 42"


def _seed(engine: sa.Engine, tenant_id: str) -> None:
    """CRM users, one open deal per user, and a recommendation for each deal."""
    store = Warehouse(engine)
    users = [Upsert(uid, STAMP, {"name": name, "email": f"{uid}@{tenant_id}.example.com",
                                 "manager_id": manager, "is_active": True}, {})
             for uid, (name, manager) in HIERARCHY.items()]
    store.apply(tenant_id, "user", users)
    deals = [Upsert(f"o-{uid}", STAMP, {"name": f"Deal of {name}", "owner_id": uid,
                                        "stage": "Proposal", "amount": 1000.0,
                                        "is_closed": False, "is_won": False}, {})
             for uid, (name, _) in HIERARCHY.items()]
    store.apply(tenant_id, "opportunity", deals)
    recs = pd.DataFrame([{"opportunity_id": f"o-{uid}", "method": "model",
                          "current_price": 1000.0, "recommended_price": 1100.0,
                          "expected_uplift": 40.0} for uid in HIERARCHY])
    analytics_store.replace_price_recommendations(engine, tenant_id, recs, "test")


@pytest.fixture
def engine(app: Flask) -> sa.Engine:
    return db.make_engine(app.config["DATABASE_URL"])


@pytest.fixture
def seeded_admin(app: Flask, admin: Admin, engine: sa.Engine) -> Admin:
    admin.signup()
    _seed(engine, admin.tenant_id)
    return admin


def _invite(admin: Admin, crm_user_id: str, role: str) -> str:
    """The admin presses Invite; returns the accept path from the e-mail."""
    with captured_mail(admin.client.application) as mails:
        response = admin.post("/people/invite", {"crm_user_id": crm_user_id, "role": role})
    assert response.status_code == 302
    [mail] = [m for m in mails if m.to.startswith(crm_user_id)]
    match = re.search(r"https?://[^/\s]+(/auth/invitation/[A-Za-z0-9_-]+)", mail.body)
    assert match, mail.body
    return match.group(1)


def _accept(app: Flask, path: str, name: str = "Invited Person") -> Admin:
    person = Admin(app.test_client())
    response = person.post(path, {"full_name": name, "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return person


def _deal_names(person: Admin) -> set[str]:
    html = person.client.get("/deals").get_data(as_text=True)
    return set(re.findall(r"Deal of ([A-Z][a-z]+ [A-Z][a-z]+)", html))


def test_a_manager_hierarchy_is_followed_to_any_depth(engine: sa.Engine, app: Flask,
                                                       admin: Admin) -> None:
    admin.signup()
    tenant = admin.tenant_id
    _seed(engine, tenant)
    assert reports_below(engine, tenant, "u-maya") == {"u-maya", "u-sam", "u-lee", "u-kim"}
    assert reports_below(engine, tenant, "u-lee") == {"u-lee", "u-kim"}
    # A cycle in the CRM's data does not hang the page.
    Warehouse(engine).apply(tenant, "user", [Upsert("u-maya", STAMP + timedelta(1), {
        "name": "Maya Manager", "manager_id": "u-kim", "is_active": True}, {})])
    assert reports_below(engine, tenant, "u-lee") == {"u-lee", "u-kim", "u-maya", "u-sam"}


def test_invited_seller_sees_only_their_deals_and_no_admin_page(
    app: Flask, seeded_admin: Admin
) -> None:
    assert _deal_names(seeded_admin) == {n for n, _ in HIERARCHY.values()}  # admin: all
    seller = _accept(app, _invite(seeded_admin, "u-sam", "seller"))
    assert _deal_names(seller) == {"Sam Seller"}
    assert seller.client.get("/deals/o-u-sam").status_code == 200
    assert seller.client.get("/deals/o-u-kim").status_code == 404  # a teammate's deal
    for admin_page in ("/people/", "/status", "/status/progress.json", "/onboarding/crm"):
        assert seller.client.get(admin_page).status_code == 403, admin_page
    invite = seller.post("/people/invite", {"crm_user_id": "u-olga", "role": "seller"})
    assert invite.status_code == 403


def test_invited_manager_sees_their_team_not_others(app: Flask, seeded_admin: Admin) -> None:
    manager = _accept(app, _invite(seeded_admin, "u-maya", "manager"))
    assert _deal_names(manager) == {"Maya Manager", "Sam Seller", "Lee Lead", "Kim Junior"}
    assert manager.client.get("/deals/o-u-olga").status_code == 404
    lead = _accept(app, _invite(seeded_admin, "u-lee", "manager"))
    assert _deal_names(lead) == {"Lee Lead", "Kim Junior"}


def test_another_tenants_admin_cannot_invite_or_read_this_tenants_people(
    app: Flask, seeded_admin: Admin, engine: sa.Engine
) -> None:
    other = Admin(app.test_client())
    other.signup(company="Other Corp")
    response = other.post("/people/invite", {"crm_user_id": "u-sam", "role": "seller"})
    assert response.status_code == 404  # not a CRM user of *their* tenant
    assert "Sam Seller" not in other.client.get("/people/").get_data(as_text=True)
    assert other.client.get("/deals/o-u-sam").status_code == 404
    assert _deal_names(other) == set()


def test_an_invitation_works_once_and_not_after_it_expires(
    app: Flask, seeded_admin: Admin, engine: sa.Engine
) -> None:
    path = _invite(seeded_admin, "u-sam", "seller")
    _accept(app, path)
    again = Admin(app.test_client())
    assert again.client.get(path).status_code == 404
    late = _invite(seeded_admin, "u-kim", "seller")
    with engine.begin() as conn:
        conn.execute(sa.update(email_link).where(email_link.c.purpose == "invite")
                     .values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    assert Admin(app.test_client()).client.get(late).status_code == 404


def test_a_weak_password_keeps_the_invitation_usable(app: Flask, seeded_admin: Admin) -> None:
    path = _invite(seeded_admin, "u-sam", "seller")
    person = Admin(app.test_client())
    weak = person.post(path, {"full_name": "Sam", "password": "password1234"})
    assert weak.status_code == 400 and "too easy to guess" in weak.get_data(as_text=True)
    _accept(app, path)  # the link still works


def test_removing_access_ends_the_persons_sessions(
    app: Flask, seeded_admin: Admin, engine: sa.Engine
) -> None:
    seller = _accept(app, _invite(seeded_admin, "u-sam", "seller"))
    assert seller.client.get("/deals").status_code == 200
    html = seeded_admin.client.get("/people/").get_data(as_text=True)
    [remove] = re.findall(r'action="(/people/remove/(\d+))"', html)
    assert seeded_admin.post(remove[0], {}).status_code == 302
    assert seller.client.get("/deals").status_code == 302  # back to the login page
    with engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(app_session).where(
            app_session.c.user_id == int(remove[1]))).scalar_one()
    assert left == 0
    assert seeded_admin.client.get("/people/").status_code == 200  # the admin's own goes on
