"""A small tenant with every kind of result, for the results pages' tests.

The people are those of test_results_access (Maya manages Sam and Lee, Lee manages Kim,
Olga is outside Maya's team). Each owns one open deal with one honesty state, Sam also
a deal whose name is a spreadsheet formula; there are revenue opportunities on their
accounts and one month of seller metrics, Sam's win rate flagged.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import sqlalchemy as sa

from accrue.analytics import store as analytics_store
from accrue.warehouse import Warehouse
from accrue_pipelines_tests.concierge.test_results_access import HIERARCHY, STAMP
from connectors.base import Upsert

MONTH = "2026-10"
INJECTION = '=HYPERLINK("http://evil.example/","Click")'
SAM_FLAG = "win rate above the rest of the team (80% vs 30%, p = 0.0012)"

# deal id: owner, stage, method, uplift
DEALS = {
    "o-u-sam": ("u-sam", "Proposal", "segment band", None),
    "o-u-lee": ("u-lee", "Negotiation", "model", 400.0),
    "o-u-kim": ("u-kim", "Proposal", "tenant_curve", 120.0),
    "o-u-maya": ("u-maya", "Negotiation", "model", 10.0),
    "o-u-olga": ("u-olga", "Proposal", "excluded", None),
    "o-inject": ("u-sam", "Proposal", "model", 55.0),
}


def _apply(engine: sa.Engine, tenant_id: str, object_name: str,
           rows: dict[str, dict[str, object]]) -> None:
    Warehouse(engine).apply(tenant_id, object_name, [
        Upsert(key, STAMP, fields, {}) for key, fields in rows.items()])


def _recommendation(deal_id: str, method: str, uplift: float | None) -> dict[str, object]:
    row: dict[str, object] = {"opportunity_id": deal_id, "method": method,
                              "list_total": 1000.0, "current_price": 900.0,
                              "current_discount": 0.1, "band_segment": "Retail · MM",
                              "band_floor": 0.7, "band_target": 0.8, "band_start": 0.9,
                              "objective": "expected revenue", "expected_uplift": uplift}
    if method in ("model", "tenant_curve"):
        row.update(recommended_price=820.0, recommended_discount=0.18,
                   win_probability_current=0.41, win_probability_recommended=0.57,
                   drivers="5 points more discount moves the win chance from 41% to 52%; "
                           "Retail (industry) deals win less often than average",
                   comparables="Won at 14% off list (950 list; Retail, MM; closed 2025-10-04)"
                               " | Lost at 9% off list (1,020 list; Retail, MM; closed "
                               "2026-09-19)")
    if method == "tenant_curve":
        row["fallback_reason"] = ("price sensitivity in this segment is not distinguishable "
                                  "from zero (b = 0.40 ± 0.90)")
    if method == "segment band":
        row.update(recommended_price=800.0, recommended_discount=0.2,
                   fallback_reason="no lost deal has a quoted price")
    if method == "excluded":
        row.update(current_price=None, current_discount=None, list_total=None,
                   fallback_reason="not priced: no line items (no quoted price)")
    if deal_id == "o-u-lee":
        row["clamp_reason"] = "raised from the model's optimum (59 % of list) to 72 %"
    return row


def seed_results(engine: sa.Engine, tenant_id: str) -> None:
    """CRM users, accounts, a product, open deals and every analytics table."""
    _apply(engine, tenant_id, "user", {
        uid: {"name": name, "email": f"{uid}@{tenant_id}.example.com", "manager_id": manager,
              "is_active": True} for uid, (name, manager) in HIERARCHY.items()})
    _apply(engine, tenant_id, "account", {
        f"a-{uid}": {"name": f"{name.split()[0]}'s Account", "owner_id": uid}
        for uid, (name, _) in HIERARCHY.items()})
    _apply(engine, tenant_id, "product", {"p-1": {"name": "Widget Pro", "is_active": True}})
    _apply(engine, tenant_id, "opportunity", {
        deal_id: {"name": INJECTION if deal_id == "o-inject" else
                  f"Deal of {HIERARCHY[owner][0]}", "owner_id": owner, "stage": stage,
                  "account_id": f"a-{owner}", "amount": 1000.0, "is_closed": False,
                  "is_won": False, "close_date": date(2026, 12, 1)}
        for deal_id, (owner, stage, _, _) in DEALS.items()})
    recs = pd.DataFrame([_recommendation(d, method, uplift)
                         for d, (_, _, method, uplift) in DEALS.items()])
    lines = pd.DataFrame([
        {"opportunity_id": "o-u-sam", "line_id": "l-1", "product_id": "p-1", "quantity": 3.0,
         "list_price": 200.0, "list_total": 600.0, "recommended_line_total": 480.0,
         "recommended_unit_price": 160.0, "recommended_discount": 0.2},
        {"opportunity_id": "o-u-sam", "line_id": "l-2", "product_id": None, "quantity": 1.0,
         "list_price": 400.0, "list_total": 400.0, "recommended_line_total": 320.0,
         "recommended_unit_price": 320.0, "recommended_discount": 0.2}])
    analytics_store.replace_price_recommendations(engine, tenant_id, recs, "curve-test",
                                                  lines=lines)
    analytics_store.replace_revenue_opportunities(engine, tenant_id, pd.DataFrame([
        {"kind": "cross_sell", "account_id": "a-u-sam", "product_id": "p-1",
         "expected_value": 5000.0, "score": 2.5,
         "reason": "80% of similar accounts bought Widget Pro; this one has not"},
        {"kind": "win_back", "account_id": "a-u-sam", "expected_value": 700.0, "score": 0.4,
         "reason": "lost in March at 5% above the recommendation"},
        {"kind": "stalled", "opportunity_id": "o-u-kim", "expected_value": 300.0,
         "score": 3.0, "reason": "unchanged for 90 days; deals like it close in 30"},
        {"kind": "upsell", "account_id": "a-u-olga", "expected_value": 9000.0, "score": 0.3,
         "reason": "bought 30% of what the top quarter of its segment buys"},
    ]))
    months = pd.DataFrame([
        _month_row("u-sam", 10, 8, SAM_FLAG), _month_row("u-lee", 3, 1),
        _month_row("u-kim", 6, 2), _month_row("u-olga", 12, 3), _month_row("u-maya", 0, 0)])
    analytics_store.replace_seller_months(engine, tenant_id, {MONTH: months},
                                          last_change_id=0, full=True)


def _month_row(uid: str, closed: int, won: int, flag: str | None = None) -> dict[str, object]:
    from accrue.analytics.sellers import wilson_interval

    low, high = wilson_interval(won, closed)
    return {"seller_id": uid, "seller_name": HIERARCHY[uid][0],
            "manager_id": HIERARCHY[uid][1], "deals_closed": closed, "won": won,
            "win_rate": won / closed if closed else None,
            "win_rate_ci_low": float(low) if closed else None,
            "win_rate_ci_high": float(high) if closed else None,
            "team_win_rate": 14 / 31, "revenue_won": 1000.0 * won, "open_pipeline": 0.0,
            "avg_discount": 0.12, "team_avg_discount": 0.11, "cycle_days": 40.0, "flag": flag}
