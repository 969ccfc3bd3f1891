"""The read-only results API (issue 11): per-person tokens, scoped exactly like the pages.

Negative cases first: another tenant's ids, a seller reaching for a teammate's deal or the
team's rows, a manager outside their team, every way a token can be refused, a token in
the URL or a cookie; then the token's life (shown once, hashed, audited, revoked), logs,
rate limit and pagination. The hierarchy is test_results_access's: Maya manages Sam and
Lee, Lee manages Kim, Olga is outside Maya's team.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from accrue import db
from accrue.analytics import store as analytics_store
from accrue.schema import api_token, audit_event, metadata, utcnow
from accrue.warehouse import Warehouse
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    Admin,
    admin_fixture,
    app_fixture,
    concierge_db_url_fixture,
    make_app,
)
from accrue_pipelines_tests.concierge.test_results_access import (
    HIERARCHY,
    STAMP,
    _accept,
    _invite,
    _seed,
)
from connectors.base import Upsert
from onboarding_app.api import tokens
from onboarding_app.logs import get_logger
from onboarding_app.results import queries
from onboarding_app.results.scope import Scope
from onboarding_app.security import token_hash

NEW_TOKEN = re.compile(r'<code class="token-value">(acr_[0-9A-Za-z]+)</code>')


def _create_token(person: Admin, name: str = "Power BI", expires: str = "90") -> str:
    response = person.post("/api-tokens/", {"name": name, "expires": expires})
    assert response.status_code == 200, response.get_data(as_text=True)[:1000]
    assert response.headers["Cache-Control"] == "no-store"
    [token] = NEW_TOKEN.findall(response.get_data(as_text=True))
    return token


def _get(client: FlaskClient, path: str, token: str | None, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(path, headers=headers, **kwargs)


def _deal_ids(client: FlaskClient, token: str, **params: str) -> list[str]:
    response = _get(client, "/api/v1/deals", token, query_string=params)
    assert response.status_code == 200, response.get_json()
    return [d["opportunity_id"] for d in response.get_json()["data"]]


def _seed_results(engine: sa.Engine, tenant_id: str) -> None:
    """Each seller's month next to the team's, and an opportunity on each seller's deal."""
    metrics = pd.DataFrame([{"seller_id": uid, "seller_name": name, "manager_id": manager,
                             "deals_closed": 4, "won": 2, "win_rate": 0.5, "team_win_rate": 0.5,
                             "revenue_won": 2000.0, "open_pipeline": 1000.0}
                            for uid, (name, manager) in HIERARCHY.items()])
    analytics_store.replace_seller_months(engine, tenant_id, {"2026-01": metrics},
                                          last_change_id=0, full=True)
    analytics_store.replace_revenue_opportunities(engine, tenant_id, pd.DataFrame([
        {"kind": "stalled", "opportunity_id": f"o-{uid}", "expected_value": 100.0,
         "reason": f"stalled deal of {uid}"} for uid in HIERARCHY]))


@pytest.fixture(name="engine")
def engine_fixture(app: Flask) -> sa.Engine:
    return db.make_engine(app.config["DATABASE_URL"])


@pytest.fixture
def seeded(app: Flask, admin: Admin, engine: sa.Engine) -> Admin:
    """An admin whose tenant has test_results_access's CRM users, deals and results."""
    admin.signup()
    _seed(engine, admin.tenant_id)
    _seed_results(engine, admin.tenant_id)
    return admin


# -- negative: tenants, roles ----------------------------------------------------------------


def test_another_tenants_deal_is_a_404_and_never_listed(
    app: Flask, seeded: Admin, engine: sa.Engine
) -> None:
    other = Admin(app.test_client())
    other.signup(company="Other Corp")
    store = Warehouse(engine)
    store.apply(other.tenant_id, "opportunity", [Upsert("o-theirs", STAMP, {
        "name": "Their Secret Deal", "owner_id": "x", "is_closed": False}, {})])
    analytics_store.replace_price_recommendations(engine, other.tenant_id, pd.DataFrame([
        {"opportunity_id": "o-theirs", "method": "model", "recommended_price": 5.0}]), "test")
    mine = _create_token(seeded)
    theirs = _create_token(other)
    assert _get(seeded.client, "/api/v1/deals/o-theirs", mine).status_code == 404
    response = _get(other.client, "/api/v1/deals/o-u-sam", theirs)
    assert response.status_code == 404 and response.get_json()["error"] == "not_found"
    assert _deal_ids(other.client, theirs) == ["o-theirs"]
    assert "o-theirs" not in _deal_ids(seeded.client, mine)
    assert _get(other.client, "/api/v1/team", theirs).get_json()["data"] == []
    assert _get(other.client, "/api/v1/opportunities", theirs).get_json()["data"] == []


def test_a_seller_token_reads_only_their_deal_and_their_own_team_row(
    app: Flask, seeded: Admin
) -> None:
    seller = _accept(app, _invite(seeded, "u-sam", "seller"))
    token = _create_token(seller)
    client = app.test_client()  # no cookie: the token alone
    assert _deal_ids(client, token) == ["o-u-sam"]
    assert _deal_ids(client, token, seller="u-kim") == []  # a filter cannot widen the scope
    for teammate in ("o-u-kim", "o-u-maya", "o-u-olga"):
        assert _get(client, f"/api/v1/deals/{teammate}", token).status_code == 404
    team = _get(client, "/api/v1/team", token).get_json()["data"]
    assert [r["seller_id"] for r in team] == ["u-sam"]
    assert team[0]["team_win_rate"] == 0.5  # the team's figure rides on the seller's own row
    opportunities = _get(client, "/api/v1/opportunities", token).get_json()["data"]
    assert [o["opportunity_id"] for o in opportunities] == ["o-u-sam"]


def test_a_manager_token_sees_their_team_only(app: Flask, seeded: Admin) -> None:
    manager = _accept(app, _invite(seeded, "u-lee", "manager"))
    token = _create_token(manager)
    client = app.test_client()
    assert sorted(_deal_ids(client, token)) == ["o-u-kim", "o-u-lee"]
    assert _get(client, "/api/v1/deals/o-u-kim", token).status_code == 200
    for outside in ("o-u-maya", "o-u-sam", "o-u-olga"):
        assert _get(client, f"/api/v1/deals/{outside}", token).status_code == 404
    team = _get(client, "/api/v1/team", token).get_json()["data"]
    assert sorted(r["seller_id"] for r in team) == ["u-kim", "u-lee"]


# -- negative: refused tokens ----------------------------------------------------------------


def _refusal(response: Any) -> str:
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="Accrue API"')
    body = response.get_json()
    assert "/api-tokens" in body["message"]  # says where to get a working token
    return str(body["error"]) + ": " + str(body["message"])


def test_missing_malformed_revoked_expired_and_removed_tokens_get_401_with_advice(
    app: Flask, seeded: Admin, engine: sa.Engine
) -> None:
    client = app.test_client()
    assert "missing_token" in _refusal(client.get("/api/v1/deals"))
    assert "missing_token" in _refusal(client.get("/api/v1/deals",
                                                  headers={"Authorization": "Basic abc"}))
    valid = _create_token(seeded)
    assert "not an Accrue API token" in _refusal(_get(client, "/api/v1/deals", "nonsense"))
    typo = valid[:-1] + ("A" if valid[-1] != "A" else "B")  # the checksum catches it
    assert "not an Accrue API token" in _refusal(_get(client, "/api/v1/freshness", typo))
    unknown = tokens.new_token()  # well formed, never issued
    assert "never issued" in _refusal(_get(client, "/api/v1/deals", unknown))

    revoked = _create_token(seeded, name="old")
    html = seeded.client.get("/api-tokens/").get_data(as_text=True)
    paths = re.findall(r'action="(/api-tokens/\d+/revoke)"', html)
    [revoke_old] = [p for p in paths if f"/{_token_id(engine, revoked)}/" in p]
    assert seeded.post(revoke_old, {}).status_code == 302
    assert "revoked" in _refusal(_get(client, "/api/v1/deals", revoked))
    assert _get(client, "/api/v1/deals", valid).status_code == 200  # the other one still works

    expired = _create_token(seeded, name="short", expires="30")
    with engine.begin() as conn:
        conn.execute(sa.update(api_token).where(api_token.c.id == _token_id(engine, expired))
                     .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert "expired" in _refusal(_get(client, "/api/v1/team", expired))

    seller = _accept(app, _invite(seeded, "u-sam", "seller"))
    sellers_token = _create_token(seller)
    assert _get(client, "/api/v1/deals", sellers_token).status_code == 200
    html = seeded.client.get("/people/").get_data(as_text=True)
    [remove] = re.findall(r'action="(/people/remove/\d+)"', html)
    assert seeded.post(remove, {}).status_code == 302
    assert "no longer has access" in _refusal(_get(client, "/api/v1/deals", sellers_token))


def _token_id(engine: sa.Engine, token: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(api_token.c.id).where(
            api_token.c.token_hash == token_hash(token))).scalar_one())


def test_a_token_is_accepted_only_in_the_authorization_header(
    app: Flask, seeded: Admin
) -> None:
    token = _create_token(seeded)
    client = app.test_client()
    for name in ("access_token", "token", "api_key"):
        response = client.get(f"/api/v1/deals?{name}={token}")
        assert "never in the URL" in _refusal(response), name
    # Even next to a valid header: a token in the URL has leaked, the caller must know.
    assert _refusal(_get(client, f"/api/v1/deals?x={token}", token))
    client.set_cookie("access_token", token, domain="concierge.test")
    client.set_cookie("Authorization", f"Bearer {token}", domain="concierge.test")
    assert "missing_token" in _refusal(client.get("/api/v1/deals"))
    # The login session of the browser that created it does not open the API either.
    assert "missing_token" in _refusal(seeded.client.get("/api/v1/deals"))


def test_token_pages_keep_csrf_and_a_person_revokes_only_their_own_tokens(
    app: Flask, seeded: Admin, engine: sa.Engine
) -> None:
    assert seeded.client.post("/api-tokens/", data={"name": "x", "expires": "30"}
                              ).status_code == 400  # no CSRF token
    token = _create_token(seeded)
    token_id = _token_id(engine, token)
    assert seeded.client.post(f"/api-tokens/{token_id}/revoke").status_code == 400
    other = Admin(app.test_client())
    other.signup(company="Other Corp")
    assert other.post(f"/api-tokens/{token_id}/revoke", {}).status_code == 404
    seller = _accept(app, _invite(seeded, "u-sam", "seller"))
    assert seller.post(f"/api-tokens/{token_id}/revoke", {}).status_code == 404
    assert _get(app.test_client(), "/api/v1/deals", token).status_code == 200
    assert app.test_client().get("/api-tokens/").status_code == 302  # login first
    # The API itself needs no CSRF token (no cookie is read) and writes nothing.
    response = app.test_client().post("/api/v1/deals", headers={"Authorization":
                                                                f"Bearer {token}"})
    assert response.status_code == 405 and response.is_json


# -- the token's life: shown once, hashed, audited, never logged ------------------------------


def test_the_token_is_shown_once_stored_hashed_audited_and_never_logged(
    app: Flask, seeded: Admin, engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = _create_token(seeded, name="Tableau")
    assert tokens.well_formed(token) and token.startswith("acr_") and len(token) == 42
    listing = seeded.client.get("/api-tokens/").get_data(as_text=True)
    assert token not in listing and f"acr_…{token[-4:]}" in listing and "Tableau" in listing
    client = app.test_client()
    assert _get(client, "/api/v1/freshness", token).status_code == 200
    _get(client, f"/api/v1/deals?access_token={token}", None)
    get_logger("accrue.test").warning("calling with Authorization: Bearer %s", token)
    get_logger("accrue.test").warning("bare %s and encoded %%20%s", token, token)
    assert token not in caplog.text and token[4:] not in caplog.text

    with engine.connect() as conn:
        dumped = json.dumps([[dict(r) for r in conn.execute(sa.select(table)).mappings()]
                             for table in metadata.sorted_tables], default=str)
        row = conn.execute(sa.select(api_token).where(
            api_token.c.token_hash == token_hash(token))).mappings().one()
        audit_rows = conn.execute(sa.select(audit_event.c.action, audit_event.c.detail).where(
            audit_event.c.tenant_id == seeded.tenant_id)).all()
    assert token not in dumped and token[4:-4] not in dumped
    assert row["last_used_at"] is not None and row["name"] == "Tableau"
    assert [d for a, d in audit_rows if a == "api_token.created"] == [
        {"id": row["id"], "name": "Tableau", "expires_at": row["expires_at"].isoformat()}]
    assert token not in json.dumps([list(r) for r in audit_rows], default=str)


def test_each_token_has_its_own_rate_limit(concierge_db_url: str, sf_sandbox: Any) -> None:
    app = make_app(concierge_db_url, sf_sandbox.url, API_RATE_LIMIT="3 per minute")
    admin = Admin(app.test_client())
    admin.signup()
    first, second = _create_token(admin), _create_token(admin, name="second")
    client = app.test_client()
    assert [_get(client, "/api/v1/freshness", first).status_code for _ in range(3)] == [200] * 3
    limited = _get(client, "/api/v1/freshness", first)
    assert limited.status_code == 429 and limited.get_json()["error"] == "too_many_requests"
    assert _get(client, "/api/v1/freshness", second).status_code == 200


# -- what it returns -----------------------------------------------------------------------------


def test_a_deal_comes_with_its_lines_and_the_freshness_endpoint_answers(
    app: Flask, seeded: Admin, engine: sa.Engine
) -> None:
    tenant = seeded.tenant_id
    recs = pd.DataFrame([{"opportunity_id": f"o-{uid}", "method": "model",
                          "current_price": 1000.0, "recommended_price": 1100.0,
                          "expected_uplift": 40.0} for uid in HIERARCHY])
    lines = pd.DataFrame([{"opportunity_id": "o-u-sam", "line_id": f"l{i}", "product_id": None,
                           "quantity": 1.0, "list_price": 550.0, "list_total": 550.0,
                           "recommended_line_total": 550.0} for i in (1, 2)])
    analytics_store.replace_price_recommendations(engine, tenant, recs, "test", lines=lines)
    token = _create_token(seeded)
    body = _get(app.test_client(), "/api/v1/deals/o-u-sam", token).get_json()["data"]
    assert body["deal_name"] == "Deal of Sam Seller" and body["recommended_price"] == 1100.0
    assert [line["line_id"] for line in body["lines"]] == ["l1", "l2"]
    assert "tenant_id" not in body
    fresh = _get(app.test_client(), "/api/v1/freshness", token).get_json()["data"]
    assert set(fresh) == {"synced_at", "computed_at"} and fresh["computed_at"].endswith("+00:00")


def _seed_many_deals(engine: sa.Engine, tenant_id: str, n: int) -> None:
    """Deals with ties, empty values and empty names: the hard cases of a keyset."""
    Warehouse(engine).apply(tenant_id, "opportunity", [Upsert(f"p-{i:03d}", STAMP, {
        "name": None if i % 7 == 0 else f"Deal {i % 5}", "owner_id": "u-sam",
        "stage": "Proposal" if i % 2 else "Qualification",
        "amount": None if i % 4 == 0 else float(i % 3) * 100,
        "close_date": None if i % 6 == 0 else f"2026-0{1 + i % 3}-01",
        "is_closed": False}, {}) for i in range(n)])
    analytics_store.replace_price_recommendations(engine, tenant_id, pd.DataFrame([
        {"opportunity_id": f"p-{i:03d}", "method": "model",
         "expected_uplift": None if i % 5 == 0 else float(i % 4),
         "current_discount": None if i % 3 == 0 else 0.1 * (i % 2)} for i in range(n)]), "test")


@pytest.mark.parametrize("sort", list(queries.DEAL_SORT_KEYS))
def test_pagination_returns_every_row_once_in_order(
    app: Flask, seeded: Admin, engine: sa.Engine, sort: str
) -> None:
    _seed_many_deals(engine, seeded.tenant_id, 37)
    token = _create_token(seeded)
    client = app.test_client()
    everything = _deal_ids(client, token, sort=sort, limit="1000")
    assert len(everything) == 37  # replacing the recommendations replaced the seeded ones
    pages, cursor = [], None
    while True:
        params = {"sort": sort, "limit": "5", **({"cursor": cursor} if cursor else {})}
        body = _get(client, "/api/v1/deals", token, query_string=params).get_json()
        pages.append([d["opportunity_id"] for d in body["data"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [i for page in pages for i in page] == everything  # each once, in order
    assert [len(p) for p in pages] == [5] * 7 + [2]
    # Filters page too; numbered pages (limit/offset) for the HTML page agree.
    proposal = _deal_ids(client, token, sort=sort, stage="Proposal", limit="1000")
    assert len(proposal) == 18
    scope = Scope(seeded.tenant_id, "admin", None, None)
    assert queries.count_deals(engine, scope, stage="Proposal") == len(proposal)
    assert queries.count_deals(engine, scope) == len(everything)
    numbered = [r["opportunity_id"] for start in range(0, 37, 10) for r in queries.deals(
        engine, scope, sort=sort, limit=10, offset=start)]
    assert numbered == everything


def _all_pages(client: FlaskClient, path: str, token: str, key: str,
               **params: str) -> list[list[Any]]:
    pages, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = _get(client, path, token, query_string=query).get_json()
        pages.append([row[key] for row in body["data"]])
        if (cursor := body["next_cursor"]) is None:
            return pages


def test_opportunities_and_team_page_too_each_row_once_with_their_filters(
    app: Flask, seeded: Admin
) -> None:
    token = _create_token(seeded)
    client = app.test_client()
    pages = _all_pages(client, "/api/v1/opportunities", token, "opportunity_id", limit="2")
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sorted(i for p in pages for i in p) == sorted(f"o-{uid}" for uid in HIERARCHY)
    pages = _all_pages(client, "/api/v1/team", token, "seller_id", limit="2", month="2026-01")
    assert sorted(i for p in pages for i in p) == sorted(HIERARCHY)
    assert _all_pages(client, "/api/v1/team", token, "seller_id", month="2025-01") == [[]]
    assert _all_pages(client, "/api/v1/opportunities", token, "id", kind="upsell") == [[]]
    page = _get(client, "/api/v1/team", token, query_string={"limit": "2"}).get_json()
    assert _get(client, "/api/v1/opportunities", token, query_string={
        "cursor": page["next_cursor"]}).status_code == 400  # another list's cursor


def test_bad_parameters_are_a_400_that_says_why(app: Flask, seeded: Admin) -> None:
    token = _create_token(seeded)
    client = app.test_client()
    for params in ({"limit": "0"}, {"limit": "5000"}, {"limit": "x"}, {"sort": "price"},
                   {"cursor": "!!"}, {"cursor": "eyJ4IjoxfQ"}, {"min_uplift": "lots"},
                   {"min_uplift": "nan"}):
        response = _get(client, "/api/v1/deals", token, query_string=params)
        assert response.status_code == 400 and response.get_json()["message"], params
    for path, params in (("/api/v1/team", {"month": "2026-13"}),
                         ("/api/v1/opportunities", {"kind": "resell"}),
                         ("/api/v1/team", {"limit": "-1"})):
        response = _get(client, path, token, query_string=params)
        assert response.status_code == 400 and response.get_json()["message"], params
    first = _get(client, "/api/v1/deals", token, query_string={"limit": "1"}).get_json()
    other_sort = {"sort": "name", "cursor": first["next_cursor"]}
    assert _get(client, "/api/v1/deals", token, query_string=other_sort).status_code == 400
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.is_json
