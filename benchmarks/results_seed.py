"""A large tenant for `benchmarks.results_pages`: 20,000 opportunities with their results.

Written through the pipelines' own write paths (`Warehouse.apply` for the CRM objects,
`accrue.analytics.store.replace_*` for the results), so the tables, indexes and change log
look as they do after real syncs and analytics runs. The values are synthetic (a seeded
random generator): page time depends on how many rows there are and how they are spread
over sellers, not on what the model would have said.

The hierarchy: a VP, `managers` managers under them, `sellers_per_manager` sellers under
each manager. Deals and accounts belong to sellers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from accrue.analytics import store
from accrue.warehouse import Warehouse
from connectors.base import Upsert

STAMP = datetime(2026, 11, 1, tzinfo=UTC)
STAGES_OPEN = ("Prospecting", "Qualification", "Proposal", "Negotiation")
KINDS = ("cross_sell", "upsell", "win_back", "stalled")


@dataclass(frozen=True)
class SeededTenant:
    tenant_id: str
    manager_id: str  # a manager with a team, for the manager's view
    seller_id: str  # one of that manager's sellers
    open_deals: dict[str, list[str]]  # CRM user id -> their open deal ids
    team: dict[str, list[str]]  # manager id -> the sellers below them
    counts: dict[str, int]


def _chunks(items: list[Upsert], size: int = 5000) -> list[list[Upsert]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def seed_tenant(engine: Engine, tenant_id: str, *, opportunities: int = 20_000,
                open_share: float = 0.5, managers: int = 8, sellers_per_manager: int = 25,
                accounts: int = 2_000, products: int = 200, months: int = 24,
                seed: int = 11) -> SeededTenant:
    """Write the tenant's CRM objects and results; what was written, for the requests."""
    rng = random.Random(seed)
    warehouse = Warehouse(engine)
    users = [Upsert("u-vp", STAMP, {"name": "Vera VP", "email": "vp@bench.example",
                                    "is_active": True}, {})]
    team: dict[str, list[str]] = {}
    for m in range(managers):
        manager = f"u-m{m:02d}"
        users.append(Upsert(manager, STAMP, {"name": f"Manager {m:02d}", "manager_id": "u-vp",
                                             "email": f"{manager}@bench.example",
                                             "is_active": True}, {}))
        team[manager] = [f"u-s{m:02d}-{s:02d}" for s in range(sellers_per_manager)]
        users += [Upsert(s, STAMP, {"name": f"Seller {s[3:]}", "manager_id": manager,
                                    "email": f"{s}@bench.example", "is_active": True}, {})
                  for s in team[manager]]
    sellers = [s for members in team.values() for s in members]
    warehouse.apply(tenant_id, "user", users)

    warehouse.apply(tenant_id, "product", [Upsert(f"p-{p:04d}", STAMP, {
        "name": f"Product {p:04d}", "family": f"Family {p % 12}", "is_active": True,
        "unit_cost": float(rng.randint(20, 400))}, {}) for p in range(products)])
    account_owner = {f"a-{a:05d}": rng.choice(sellers) for a in range(accounts)}
    warehouse.apply(tenant_id, "account", [Upsert(a, STAMP, {
        "name": f"Account {a[2:]} Ltd", "industry": f"Industry {int(a[2:]) % 9}",
        "employee_count": rng.randint(10, 5000), "owner_id": owner}, {})
        for a, owner in account_owner.items()])

    deals: list[Upsert] = []
    lines: list[Upsert] = []
    open_deals: dict[str, list[str]] = {s: [] for s in sellers}
    line_rows: list[dict[str, Any]] = []
    rec_rows: list[dict[str, Any]] = []
    for i in range(opportunities):
        deal_id, account = f"o-{i:06d}", rng.choice(list(account_owner))
        owner = account_owner[account] if rng.random() < 0.8 else rng.choice(sellers)
        is_open = rng.random() < open_share
        close = date(2025, 1, 1) + timedelta(days=rng.randint(0, 760))
        n_lines = rng.randint(1, 3)
        picked = [(f"p-{rng.randrange(products):04d}", rng.randint(1, 20),
                   float(rng.randint(50, 2000))) for _ in range(n_lines)]
        list_total = sum(q * price for _, q, price in picked)
        discount = rng.uniform(0, 0.35)
        deals.append(Upsert(deal_id, STAMP, {
            "name": f"Deal {i:06d} for {account}", "account_id": account, "owner_id": owner,
            "amount": round(list_total * (1 - discount), 2),
            "stage": rng.choice(STAGES_OPEN) if is_open else rng.choice(("Closed Won",
                                                                         "Closed Lost")),
            "is_closed": not is_open, "is_won": (not is_open) and rng.random() < 0.4,
            "close_date": close.isoformat(), "probability": rng.uniform(0.1, 0.9)}, {}))
        for n, (product, qty, price) in enumerate(picked):
            lines.append(Upsert(f"{deal_id}-l{n}", STAMP, {
                "opportunity_id": deal_id, "product_id": product, "quantity": float(qty),
                "list_price": price, "unit_price": round(price * (1 - discount), 2),
                "total_price": round(qty * price * (1 - discount), 2)}, {}))
        if not is_open:
            continue
        open_deals[owner].append(deal_id)
        recommended_ratio = max(0.5, 1 - discount + rng.uniform(-0.08, 0.1))
        recommended = round(list_total * recommended_ratio, 2)
        rec_rows.append({
            "opportunity_id": deal_id, "method": rng.choice(("model", "tenant_curve",
                                                              "segment band")),
            "objective": "expected_revenue", "list_total": list_total,
            "current_price": round(list_total * (1 - discount), 2),
            "current_discount": discount, "recommended_price": recommended,
            "recommended_discount": 1 - recommended_ratio, "n_lines": n_lines,
            "win_probability_current": rng.uniform(0.1, 0.8),
            "win_probability_recommended": rng.uniform(0.1, 0.8),
            "expected_uplift": rng.uniform(-500, 5000),
            "curve_a": -2.0, "curve_b": 2.5,  # a win curve to draw (where the column exists)
            "band_segment": f"Industry {rng.randrange(9)} × mid", "band_floor": recommended * 0.8,
            "band_target": recommended, "band_start": recommended * 1.15,
            "drivers": "segment discount 12% | seller discounts 4 pts above team | "
                       "stage Proposal",
            "comparables": " | ".join(f"o-{rng.randrange(opportunities):06d} won at "
                                      f"{rng.randint(5, 30)}% off" for _ in range(3))})
        for n, (product, qty, price) in enumerate(picked):
            total = round(qty * price * recommended_ratio, 2)
            line_rows.append({"opportunity_id": deal_id, "line_id": f"{deal_id}-l{n}",
                              "product_id": product, "quantity": float(qty),
                              "list_price": price, "list_total": qty * price,
                              "recommended_line_total": total,
                              "recommended_unit_price": total / qty,
                              "recommended_discount": 1 - recommended_ratio})
    for batch in _chunks(deals):
        warehouse.apply(tenant_id, "opportunity", batch)
    for batch in _chunks(lines):
        warehouse.apply(tenant_id, "opportunity_line", batch)
    store.replace_price_recommendations(engine, tenant_id, pd.DataFrame(rec_rows), "bench",
                                        lines=pd.DataFrame(line_rows))

    all_open = [d for ids in open_deals.values() for d in ids]
    items = []
    for account in list(account_owner)[:accounts // 2]:
        items.append({"kind": rng.choice(("cross_sell", "upsell")), "account_id": account,
                      "product_id": f"p-{rng.randrange(products):04d}",
                      "expected_value": rng.uniform(100, 20000), "score": rng.uniform(1, 4),
                      "reason": f"Accounts like {account} buy this product 3.1× as often"})
    for deal_id in rng.sample(all_open, min(len(all_open), 2_000)):
        items.append({"kind": rng.choice(("win_back", "stalled")), "opportunity_id": deal_id,
                      "expected_value": rng.uniform(100, 20000), "score": rng.uniform(0, 3),
                      "reason": "No change for 94 days; deals like it close in 31"})
    store.replace_revenue_opportunities(engine, tenant_id, pd.DataFrame(items))

    manager_of = {s: m for m, members in team.items() for s in members}
    month_frames = {}
    for k in range(months):
        month = f"{2025 + (k // 12)}-{k % 12 + 1:02d}"
        rows = []
        for s in sellers:
            closed = rng.randint(0, 12)
            won = rng.randint(0, closed)
            rows.append({"seller_id": s, "seller_name": f"Seller {s[3:]}",
                         "manager_id": manager_of[s], "deals_closed": closed, "won": won,
                         "win_rate": won / closed if closed else None,
                         "win_rate_ci_low": 0.1, "win_rate_ci_high": 0.7,
                         "win_rate_shrunk": 0.4, "team_win_rate": 0.42,
                         "win_rate_percentile": rng.uniform(0, 100),
                         "revenue_won": won * rng.uniform(1000, 9000),
                         "revenue_percentile": rng.uniform(0, 100),
                         "avg_discount": rng.uniform(0, 0.3), "team_avg_discount": 0.14,
                         "cycle_days": rng.uniform(20, 90),
                         "open_pipeline": rng.uniform(0, 90000),
                         "flag": "win rate below the team (p = 0.01)" if rng.random() < 0.03
                         else None})
        month_frames[month] = pd.DataFrame(rows)
    store.replace_seller_months(engine, tenant_id, month_frames, last_change_id=0, full=True)

    run = warehouse.start_run(tenant_id, "opportunity")
    warehouse.finish_run(run, "succeeded", {"records_read": opportunities})
    manager = next(iter(team))
    return SeededTenant(
        tenant_id=tenant_id, manager_id=manager, seller_id=team[manager][0],
        open_deals=open_deals, team=team,
        counts={"opportunities": opportunities, "open_deals": len(rec_rows),
                "opportunity_lines": len(lines), "recommendation_lines": len(line_rows),
                "revenue_opportunities": len(items), "users": len(users),
                "seller_months": months * len(sellers)})
