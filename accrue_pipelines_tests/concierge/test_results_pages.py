"""The results pages, their charts and CSV downloads (issue 11.1), through the test client.

What each page says (prices from ratios, the honesty state, flags in words), that every
route keeps to the person's scope (negative tests: another tenant, a teammate's deal, a
manager outside the team), and that the CSV files are safe to open in a spreadsheet.
The people and data: `results_seed.py`.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from flask import Flask

from accrue import db
from accrue.analytics.sellers import monthly_metrics
from accrue.schema import sync_run, utcnow
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    Admin,
    admin_fixture,
    app_fixture,
    concierge_db_url_fixture,
)
from accrue_pipelines_tests.concierge.test_results_access import _accept, _invite
from accrue_pipelines_tests.results_seed import INJECTION, MONTH, seed_results
from onboarding_app.results import charts, downloads, present, queries, summaries, views

ALL_DEALS = {"Deal of Maya Manager", "Deal of Sam Seller", "Deal of Lee Lead",
             "Deal of Kim Junior", "Deal of Olga Other"}


def engine_of(app: Flask) -> sa.Engine:
    return db.make_engine(app.config["DATABASE_URL"])


@pytest.fixture
def seeded(app: Flask, admin: Admin) -> Admin:
    """An admin whose tenant has the results of `results_seed`."""
    admin.signup()
    seed_results(engine_of(app), admin.tenant_id)
    return admin


def html(person: Admin, path: str) -> str:
    response = person.client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return str(response.get_data(as_text=True))


def deal_names(page: str) -> set[str]:
    return set(re.findall(r"Deal of [A-Z][a-z]+ [A-Z][a-z]+", page))


def csv_rows(person: Admin, path: str) -> list[dict[str, str]]:
    response = person.client.get(path)
    assert response.status_code == 200, path
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    assert response.headers["Cache-Control"] == "no-store"
    return list(csv.DictReader(io.StringIO(response.get_data().decode("utf-8-sig"))))


def with_curve(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until price_recommendation.win_curve is stored, give every curve deal one."""
    original = queries.deal

    def deal(*args: Any, **kwargs: Any) -> dict[str, Any] | None:
        row = original(*args, **kwargs)
        if row is not None and row["method"] in ("model", "tenant_curve"):
            row["win_curve"] = [[600 + 20 * i, 0.9 - 0.02 * i] for i in range(21)]
        return row

    monkeypatch.setattr(queries, "deal", deal)


# -- what the pages say ----------------------------------------------------------------


def test_deals_page_shows_prices_bands_and_the_honesty_state(seeded: Admin) -> None:
    page = html(seeded, "/deals")
    assert deal_names(page) == ALL_DEALS
    for label in ("Curve fitted", "Tenant-wide curve", "Band fallback", "Excluded"):
        assert label in page
    assert "700 · 800 · 900" in re.sub(r"<[^>]+>", "", page)  # the band: ratio × list value
    assert 'title="Floor: 700"' in page
    assert "30% · 20% · 10%" in page  # and as discounts off list
    assert "41% → 57%" in page and "+400" in page and "10% off list" in page
    # Highest uplift first; a deal without an uplift last.
    assert page.index("Deal of Lee Lead") < page.index("Deal of Kim Junior") \
        < page.index("Deal of Maya Manager") < page.index("Deal of Sam Seller")


def test_deals_filter_sort_and_pages(seeded: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    assert deal_names(html(seeded, "/deals?seller=u-kim")) == {"Deal of Kim Junior"}
    assert deal_names(html(seeded, "/deals?stage=Negotiation")) == {
        "Deal of Lee Lead", "Deal of Maya Manager"}
    assert deal_names(html(seeded, "/deals?min_uplift=100")) == {
        "Deal of Lee Lead", "Deal of Kim Junior"}
    assert "No open deal matches" in html(seeded, "/deals?min_uplift=1e9")
    by_name = html(seeded, "/deals?sort=name")
    assert by_name.index("Deal of Kim") < by_name.index("Deal of Lee") < by_name.index(
        "Deal of Olga")
    assert deal_names(html(seeded, "/deals?min_uplift=nonsense&sort=drop")) == ALL_DEALS
    monkeypatch.setattr(views, "DEALS_PER_PAGE", 2)
    first = html(seeded, "/deals?min_uplift=0")
    assert "Showing 1–2 of 4" in first and "page=2" in first and "min_uplift=0" in first
    second = html(seeded, "/deals?min_uplift=0&page=2")
    assert deal_names(second) == {"Deal of Maya Manager"} and "Showing 3–4 of 4" in second


def test_deal_page_says_why_and_splits_the_price_by_line(seeded: Admin) -> None:
    page = html(seeded, "/deals/o-u-sam")
    assert "Band fallback" in page and "No lost deal has a quoted price." in page
    assert "priced on its segment band" in page  # no curve for a band deal, and why
    assert "Widget Pro" in page and "480.00" in page and "160.00" in page  # the lines
    assert "800.00" in page and "1,000.00" in page  # the deal's total and list value
    lee = html(seeded, "/deals/o-u-lee")
    assert "Guardrail: Raised from the model&#39;s optimum" in lee
    assert "<li>5 points more discount moves the win chance from 41% to 52%.</li>" in lee
    assert "Lost at 9% off list" in lee
    assert "The chart appears after the next analytics run." in lee  # no win_curve yet
    assert "curve.svg" not in lee
    assert seeded.client.get("/deals/o-u-lee/curve.svg").status_code == 404
    olga = html(seeded, "/deals/o-u-olga")
    assert "Not priced. Not priced: no line items" in olga


def test_the_win_curve_is_an_svg_image_under_the_csp(seeded: Admin,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with_curve(monkeypatch)
    page = html(seeded, "/deals/o-u-lee")
    assert '<img src="/deals/o-u-lee/curve.svg"' in page
    assert "41% at the current quote of 900, 57% at the recommended 820" in page  # the alt
    response = seeded.client.get("/deals/o-u-lee/curve.svg")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    assert response.headers["Content-Security-Policy"] == views.SVG_POLICY
    svg = response.get_data(as_text=True)
    root = ET.fromstring(svg.encode())
    assert root.tag.endswith("svg")
    assert not re.search(r'(href|src)="(?!#)', svg)  # nothing loaded from anywhere
    # The page itself keeps the strict policy: no inline style or script anywhere.
    assert "default-src 'self'" in seeded.client.get("/deals/o-u-lee").headers[
        "Content-Security-Policy"]
    assert not re.search(r"<[^>]+\sstyle=|<style|<script(?! src)", page)


def test_opportunities_are_grouped_by_account_with_totals(seeded: Admin) -> None:
    page = html(seeded, "/opportunities")
    assert "4 opportunities worth <strong>15,000</strong>" in page
    # Olga's account first (9,000), then Sam's (5,000 + 700), then Kim's (300).
    assert page.index("Olga&#39;s Account") < page.index("Sam&#39;s Account") \
        < page.index("Kim&#39;s Account")
    assert "5,700" in page and "Cross-sell" in page and "Win-back" in page
    assert 'href="/deals/o-u-kim"' in page  # a stalled deal links to its page
    only = html(seeded, "/opportunities?kind=upsell")
    assert "Olga&#39;s Account" in only and "Sam&#39;s Account" not in only
    assert "Sam&#39;s Account" in html(seeded, "/opportunities?kind=bogus")  # ignored


def test_team_page_flags_in_words_and_says_when_it_cannot_tell(seeded: Admin) -> None:
    page = html(seeded, "/team")
    assert f'<option value="{MONTH}" selected' in page
    assert "Wins more often than the rest of the team: 80% of closed deals won against 30%. " \
           "Too large a gap to be luck (p = 0.0012)." in page
    assert "Not enough deals to tell (3 closed this month; it takes 5)." in page  # Lee
    assert "No clear difference from the rest of the team." in page  # Kim, Olga
    assert "The team won <strong>45%</strong> of 31 deals closed." in page
    assert f'<img src="/team/chart.svg?month={MONTH}"' in page
    assert "Sam Seller 80% (49% to 94%)" in page  # the chart's alt text
    chart = seeded.client.get(f"/team/chart.svg?month={MONTH}")
    assert chart.status_code == 200 and chart.mimetype == "image/svg+xml"
    ET.fromstring(chart.get_data())
    assert "Pick a seller" in page and 'seller=u-sam#history"' in page
    assert f'href="/team.csv?month={MONTH}"' in page and 'href="/team.csv?month=all"' in page


def test_a_sellers_months_next_to_the_team(app: Flask, seeded: Admin) -> None:
    page = html(seeded, "/team?seller=u-sam")
    assert "Sam Seller, month by month, next to the team" in page
    assert "Sam Seller&#39;s win rate by month: 2026-10 80%" in page
    assert '<img src="/team/history.svg?seller=u-sam"' in page
    history = seeded.client.get("/team/history.svg?seller=u-sam")
    assert history.status_code == 200 and history.mimetype == "image/svg+xml"
    assert seeded.client.get("/team/history.svg?seller=u-maya").status_code == 404  # 0 closed
    assert [r["Month"] for r in csv_rows(seeded, "/team.csv?seller=u-sam")] == [MONTH]
    seller = _accept(app, _invite(seeded, "u-sam", "seller"))
    assert "Your months, next to the team" in html(seller, "/team")  # by default


def test_home_shows_the_persons_figures_and_no_setup_prompt_to_a_seller(
    app: Flask, seeded: Admin
) -> None:
    home = html(seeded, "/home")
    assert "5 <span class=\"small muted\">of 6 open deals priced" in home
    assert "585" in home  # 400 + 120 + 55 + 10 expected uplift
    assert home.index("Deal of Lee Lead") < home.index("Deal of Kim Junior")
    assert "15,000" in home and "45%" in home
    assert "Start Now" in home or "Continue setup" in home  # the admin has not set up yet
    seller = _accept(app, _invite(seeded, "u-sam", "seller"))
    mine = html(seller, "/home")
    assert "Start Now" not in mine and "Continue setup" not in mine and "CRM setup" not in mine
    assert "80%" in mine and "your win rate" in mine and "Team: 45%" in mine
    assert "Deal of Lee Lead" not in mine and "5,700" in mine


def test_every_page_says_how_fresh_it_is_and_what_is_pending(app: Flask, seeded: Admin
                                                             ) -> None:
    now = utcnow()
    with engine_of(app).begin() as conn:
        conn.execute(sa.insert(sync_run), [
            {"tenant_id": seeded.tenant_id, "object_name": "opportunity", "status": "failed",
             "started_at": now - timedelta(minutes=9), "finished_at": now - timedelta(minutes=8),
             "error_kind": "outage"},
            {"tenant_id": seeded.tenant_id, "object_name": "opportunity", "status": "running",
             "started_at": now - timedelta(minutes=1), "finished_at": None,
             "error_kind": None}])
    seller = _accept(app, _invite(seeded, "u-sam", "seller"))
    for path in ("/deals", "/deals/o-u-sam", "/opportunities", "/team"):
        admin_page, seller_page = html(seeded, path), html(seller, path)
        for page in (" ".join(admin_page.split()), " ".join(seller_page.split())):
            assert "No data synced yet; these results last computed" in page
            assert "A sync of your deals is in progress" in page
            assert "The last sync (of opportunities (deals), at" in page
            assert "did not finish" in page
        assert 'href="/status"' in admin_page  # the admin's way to the details
        assert 'href="/status"' not in seller_page
        assert "Your Accrue admin can see the details" in seller_page


# -- CSV -------------------------------------------------------------------------------


def test_csv_downloads_keep_the_filters_and_defuse_formulas(seeded: Admin) -> None:
    rows = csv_rows(seeded, "/deals.csv")
    assert {r["Deal"] for r in rows} == ALL_DEALS | {"'" + INJECTION}
    lee = next(r for r in rows if r["Deal ID"] == "o-u-lee")
    assert (lee["Floor"], lee["Target"], lee["Start"]) == ("700.0", "800.0", "900.0")
    assert lee["Basis"] == "Curve fitted" and lee["Expected uplift"] == "400.0"
    assert [r["Deal ID"] for r in csv_rows(seeded, "/deals.csv?stage=Negotiation&sort=name")
            ] == ["o-u-lee", "o-u-maya"]
    assert "csv?" in html(seeded, "/deals?stage=Negotiation")  # the page links its filters
    opportunities = csv_rows(seeded, "/opportunities.csv?kind=cross_sell")
    assert [(o["Account"], o["Kind"], o["Expected value"]) for o in opportunities] == [
        ("Sam's Account", "Cross-sell", "5000.0")]
    team = csv_rows(seeded, f"/team.csv?month={MONTH}")
    assert len(team) == 5
    assert next(r for r in team if r["Seller"] == "Lee Lead")["Comparison"].startswith(
        "Not enough deals to tell")
    assert len(csv_rows(seeded, "/team.csv?month=all")) == 5


@pytest.mark.parametrize(("value", "expected"), [
    ("=1+1", "'=1+1"), ("+SUM(A1)", "'+SUM(A1)"), ("-2+3", "'-2+3"), ("@cmd", "'@cmd"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("plain, \"quoted\"", "plain, \"quoted\""),
    (-40.5, -40.5), (3, 3), (None, ""), (float("nan"), ""), (True, "yes"),
])
def test_a_csv_cell_never_starts_a_formula(value: object, expected: object) -> None:
    assert downloads.safe_cell(value) == expected


# -- scope: every route, negatively ------------------------------------------------------

LISTS = ("/deals", "/deals.csv", "/opportunities", "/opportunities.csv", "/team",
         f"/team.csv?month={MONTH}", "/team.csv?month=all", "/team.csv?seller=u-sam",
         "/team?seller=u-sam", "/home")


def test_another_tenant_sees_nothing_of_this_one(app: Flask, seeded: Admin) -> None:
    other = Admin(app.test_client())
    other.signup(company="Other Corp")
    for path in ("/deals/o-u-sam", "/deals/o-u-sam/curve.svg", "/team/chart.svg",
                 f"/team/chart.svg?month={MONTH}", "/team/history.svg?seller=u-sam"):
        assert other.client.get(path).status_code == 404, path
    for path in LISTS:
        text = other.client.get(path).get_data().decode("utf-8-sig")
        for secret in ("Sam Seller", "Deal of", "'s Account", "&#39;s Account", "Widget Pro",
                       "HYPERLINK"):
            assert secret not in text, (path, secret)


def test_a_seller_sees_only_their_own_deals_rows_and_downloads(
    app: Flask, seeded: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_curve(monkeypatch)
    seller = _accept(app, _invite(seeded, "u-sam", "seller"))
    assert deal_names(html(seller, "/deals")) == {"Deal of Sam Seller"}
    assert deal_names(html(seller, "/deals?seller=u-kim")) == set()  # a teammate, asked for
    assert seller.client.get("/deals/o-u-kim").status_code == 404
    assert seller.client.get("/deals/o-u-kim/curve.svg").status_code == 404
    assert seller.client.get("/deals/o-inject/curve.svg").status_code == 200  # their own
    assert {r["Deal ID"] for r in csv_rows(seller, "/deals.csv")} == {"o-u-sam", "o-inject"}
    assert csv_rows(seller, "/deals.csv?seller=u-kim") == []
    opportunities = html(seller, "/opportunities")
    assert "Sam&#39;s Account" in opportunities and "Olga" not in opportunities \
        and "Kim" not in opportunities
    assert {o["Account"] for o in csv_rows(seller, "/opportunities.csv")} == {"Sam's Account"}
    team = html(seller, "/team")
    assert "Sam Seller" in team and "Lee Lead" not in team and "Kim Junior" not in team
    assert "The team won <strong>45%</strong>" in team  # the team's figure, not its rows
    assert [r["Seller"] for r in csv_rows(seller, "/team.csv?month=all")] == ["Sam Seller"]
    assert csv_rows(seller, "/team.csv?seller=u-kim") == []
    assert seller.client.get("/team/history.svg?seller=u-kim").status_code == 404
    assert "Kim Junior" not in html(seller, "/team?seller=u-kim")
    assert "Seller</label>" not in html(seller, "/deals")  # no seller filter for one seller


def test_a_manager_sees_their_team_and_nobody_outside_it(app: Flask, seeded: Admin) -> None:
    lead = _accept(app, _invite(seeded, "u-lee", "manager"))
    assert deal_names(html(lead, "/deals")) == {"Deal of Lee Lead", "Deal of Kim Junior"}
    for outside in ("o-u-sam", "o-u-maya", "o-u-olga"):
        assert lead.client.get(f"/deals/{outside}").status_code == 404
        assert lead.client.get(f"/deals/{outside}/curve.svg").status_code == 404
    assert csv_rows(lead, "/deals.csv?seller=u-olga") == []
    assert {r["Deal ID"] for r in csv_rows(lead, "/deals.csv")} == {"o-u-lee", "o-u-kim"}
    assert {o["Account"] for o in csv_rows(lead, "/opportunities.csv")} == {"Kim's Account"}
    assert {r["Seller"] for r in csv_rows(lead, "/team.csv?month=all")} == {
        "Lee Lead", "Kim Junior"}
    team = html(lead, "/team")
    assert "Sam Seller" not in team and "Olga Other" not in team and "Kim Junior" in team
    assert lead.client.get("/team/history.svg?seller=u-sam").status_code == 404
    assert lead.client.get("/team/history.svg?seller=u-kim").status_code == 200
    assert "Sam Seller" not in html(lead, "/team?seller=u-sam")
    maya = _accept(app, _invite(seeded, "u-maya", "manager"))
    assert "Olga" not in html(maya, "/opportunities")
    assert "Olga" not in html(maya, "/home") and "Deal of Lee Lead" in html(maya, "/home")


@pytest.mark.parametrize("path", [*LISTS, "/deals/o-u-sam", "/deals/o-u-sam/curve.svg",
                                  "/team/chart.svg", "/team/history.svg?seller=u-sam"])
def test_every_results_route_needs_a_login(app: Flask, path: str) -> None:
    response = app.test_client().get(path)
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


# -- the words and the charts, without the app -------------------------------------------


def test_the_flags_the_analytics_write_read_as_words() -> None:
    """The page words what sellers._flags writes: pinned to the real producer."""
    rows = []
    for i in range(60):
        owner = "star" if i < 20 else f"s{i % 4}"
        won = i < 18 if owner == "star" else i % 5 == 0
        rows.append({"opportunity_id": f"o{i}", "owner_id": owner, "is_closed": True,
                     "is_won": won, "close_date": "2026-10-15", "amount": 100.0,
                     "ratio": 0.8 + 0.03 * (i % 5), "created_at": "2026-09-01"})
    metrics = monthly_metrics(pd.DataFrame(rows), MONTH).set_index("seller_id")
    flag = metrics.at["star", "flag"]
    assert flag and flag.startswith("win rate above")
    [words] = present.verdict(dict(metrics.loc["star"]), 60).words  # one test fired
    assert words.startswith("Wins more often than the rest of the team: 90% of closed deals")
    assert present.flag_words("something new") == "Something new."


def test_charts_are_self_contained_svg() -> None:
    curve = charts.curve_points([[900, 0.4], ["x", 1], [600, 0.8], [750, float("nan")]])
    assert curve == [(600.0, 0.8), (900.0, 0.4)]
    band = present.band({"list_total": 1000, "band_floor": 0.6, "band_target": 0.7,
                         "band_start": 0.8})
    svg = charts.win_curve_svg(curve, current_price=900, recommended_price=700, band=band)
    assert svg == charts.win_curve_svg(curve, current_price=900, recommended_price=700,
                                       band=band)  # the same chart, the same bytes
    team = charts.team_svg([charts.RateBar("$x$ & <b>", 0.5, 0.3, 0.7, True)],
                           charts.RateBar("Team", 0.4, 0.35, 0.45))
    # 0 of 5 and 5 of 5: the interval holds the rate exactly, the error bars draw.
    assert summaries.wilson(0, 5)[0] == 0.0 and summaries.wilson(5, 5)[1] == 1.0
    edges = [summaries.rate_bar(m, won, 5) for m, won in (("2026-01", 0), ("2026-02", 5))]
    history = charts.history_svg([(bar.name, bar, 0.4) for bar in edges if bar] +
                                 [("2026-03", None, None)])
    for text in (svg, team, history):
        ET.fromstring(text.encode())
        assert "<script" not in text and "<b>" not in text
