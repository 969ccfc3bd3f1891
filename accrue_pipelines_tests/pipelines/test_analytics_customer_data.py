"""Analytics on data shaped like a real customer's (issue 10): written to the warehouse as a
sync would, read back through `store.load_tenant` and the assets.

One standard price book (every entry is the list price), history going back to 2017, lost
deals recorded with a $0 quote, and tenants whose lost deals carry no price at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from scipy import special

from accrue.analytics import fit_price_model, optimal_ratio, recommend, store
from accrue.analytics.opportunities import upsell
from accrue.schema import price_recommendation, seller_month_metric
from accrue.warehouse import Warehouse
from accrue_pipelines.analytics.assets import price_recommendations, seller_metrics
from accrue_pipelines.platform.partitions import TENANT_PARTITIONS_NAME
from accrue_pipelines.platform.resources import WarehouseResource
from connectors.base import Upsert

SYNCED_AT = datetime(2026, 11, 1, tzinfo=UTC)
LIST_PRICES = {"P1": 100.0, "P2": 250.0, "P3": 40.0}
SELLERS = ("U1", "U2", "U3", "U4")
# The true bid-response curve: P(win | x) = 1/(1 + exp(A + B·x)); its revenue optimum is 0.80.
A, B = -9.946, 10.0


@dataclass
class Tenant:
    """Common-model records of one tenant, written to the warehouse by `write`."""

    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)  # custom fields by source id

    def add(self, object_name: str, source_id: str, **fields: Any) -> None:
        self.records.setdefault(object_name, []).append({"source_id": source_id, **fields})

    def deal(self, i: int, *, closed: bool, won: bool, close: date, ratio: float | None,
             owner: str, product: str = "P1", quantity: float = 10.0) -> None:
        """A deal with one line at `ratio` of list (no line when ratio is None; 0 = $0 quote)."""
        oid = f"O{i:05d}"
        quote = None if ratio is None else quantity * LIST_PRICES[product] * ratio
        self.add("opportunity", oid, name=f"Deal {i}", account_id=f"A{i % 5}", owner_id=owner,
                 amount=quote if quote is not None else 0.0, is_closed=closed,
                 is_won=closed and won, close_date=close, stage="Closed" if closed else "Open",
                 source_created_at=datetime(close.year, close.month, 1, tzinfo=UTC))
        if ratio is not None:
            self.add("opportunity_line", f"L{i:05d}", opportunity_id=oid, product_id=product,
                     quantity=quantity, list_price=LIST_PRICES[product],
                     unit_price=LIST_PRICES[product] * ratio, total_price=quote)

    def write(self, warehouse: Warehouse, tenant_id: str) -> None:
        for object_name, rows in self.records.items():
            changes = [
                Upsert(r["source_id"], SYNCED_AT,
                       {k: v for k, v in r.items() if k != "source_id"},
                       {"Id": r["source_id"], **self.raw.get(r["source_id"], {})})
                for r in rows
            ]
            warehouse.apply(tenant_id, object_name, changes)


def base_tenant() -> Tenant:
    """Accounts, sellers, products without unit cost, and ONE price book at list price."""
    t = Tenant()
    for i in range(5):
        t.add("account", f"A{i}", name=f"Account {i}", industry="Retail",
              employee_count=500, billing_country="Germany")
    for s in SELLERS:
        t.add("user", s, name=f"Seller {s}", is_active=True)
    for p, price in LIST_PRICES.items():
        t.add("product", p, name=f"Product {p}", family="Platform", is_active=True)
        t.add("price_book_entry", f"E{p}", price_book_id="STD", product_id=p,
              unit_price=price, is_active=True, currency="USD")
    return t


def curve_tenant(seed: int, n_closed: int = 600, n_open: int = 20,
                 start: date = date(2024, 1, 1)) -> Tenant:
    """Closed deals priced below list (60–95 %) and won by the true curve, plus open deals."""
    rng = np.random.default_rng(seed)
    t = base_tenant()
    for i in range(n_closed):
        ratio = float(rng.uniform(0.60, 0.95))
        won = bool(rng.random() < special.expit(-(A + B * ratio)))
        close = date.fromordinal(start.toordinal() + int(rng.integers(0, 700)))
        t.deal(i, closed=True, won=won, close=close, ratio=ratio,
               owner=SELLERS[i % len(SELLERS)], product=list(LIST_PRICES)[i % 3])
    for j in range(n_open):
        t.deal(n_closed + j, closed=False, won=False, close=date(2027, 2, 1), ratio=0.9,
               owner=SELLERS[j % len(SELLERS)], product=list(LIST_PRICES)[j % 3])
    return t


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def _materialize(asset: dg.AssetsDefinition, instance: dg.DagsterInstance, database_url: str,
                 tenant_id: str) -> dg.ExecuteInJobResult:
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant_id])
    result = dg.materialize([asset], instance=instance, partition_key=tenant_id,
                            resources={"warehouse": WarehouseResource(database_url=database_url)})
    assert result.success
    return result


# --------------------------------------------------------------------------- 1: no list floor


def test_one_price_book_at_list_is_not_a_floor(warehouse: Warehouse, engine, tenant_id: str
                                               ) -> None:
    """Issue 10.1: with one price book (= list) and every won bid below list, the
    recommendations are below list, at the model's own optimum, not clamped up to list."""
    curve_tenant(seed=1).write(warehouse, tenant_id)
    deals = store.load_tenant(engine, tenant_id).deals
    model = fit_price_model(deals)
    assert model.usable, model.reasons
    recs = recommend(model, deals[~deals["is_closed"]])
    assert len(recs) == 20 and recs["method"].isin(["model", "tenant_curve"]).all()
    assert recs["clamp"].isna().all(), recs["clamp"].value_counts().to_dict()
    assert (recs["recommended_ratio"] == recs["unclamped_ratio"]).all()
    assert (recs["recommended_ratio"] < 0.9).all()  # well below list, and below the quote
    # The model's optimum is near the true one (0.80 of list), as it should be.
    true_x = float(optimal_ratio(A, B, 0.0)[0])
    assert recs["recommended_ratio"].to_numpy() == pytest.approx(true_x, abs=0.05)
    assert (recs["recommended_price"] < recs["list_total"]).all()


def test_customer_minimum_raises_the_floor_and_says_so(warehouse: Warehouse, engine,
                                                       tenant_id: str) -> None:
    """A minimum price on the product (a CRM custom field) may raise the floor, in words."""
    tenant = curve_tenant(seed=2)
    tenant.raw["P1"] = {"Custom Minimum Price": 95.0}  # 95 % of P1's list price
    tenant.write(warehouse, tenant_id)
    deals = store.load_tenant(engine, tenant_id).deals
    model = fit_price_model(deals)
    assert model.usable, model.reasons
    open_deals = deals[~deals["is_closed"]].reset_index(drop=True)
    recs = recommend(model, open_deals)
    on_p1 = np.isclose(open_deals["min_ratio"].to_numpy(float), 0.95)
    assert on_p1.sum() == 7 and open_deals.loc[~on_p1, "min_ratio"].isna().all()
    assert (recs.loc[on_p1, "clamp"] == "floor (customer minimum)").all()
    assert recs.loc[on_p1, "recommended_ratio"].to_numpy() == pytest.approx(0.95)
    assert recs.loc[on_p1, "drivers"].str.contains(
        "to 95 %: the minimum price set for these products").all()
    assert recs.loc[~on_p1, "clamp"].isna().all()
    # Stored with its sentence, where the status page and the results pages read it.
    store.replace_price_recommendations(engine, tenant_id, recs, "test")
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.select(
            price_recommendation.c.opportunity_id, price_recommendation.c.clamp_reason).where(
            price_recommendation.c.tenant_id == tenant_id)).all())
    for opportunity_id, clamped in zip(open_deals["opportunity_id"], on_p1, strict=True):
        sentence = stored[opportunity_id]
        assert ("minimum price set for these products" in sentence) if clamped \
            else sentence is None


# --------------------------------------------------------------------------- 2: all history


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_deals_closed_in_2017_count(warehouse: Warehouse, engine, database_url: str,
                                    tenant_id: str, instance: dg.DagsterInstance) -> None:
    """Issue 10.2: no calendar window. A tenant whose deals closed in 2017–2018 gets seller
    months for all of them (through the asset), and the price model learns from them."""
    tenant = curve_tenant(seed=3, n_closed=300, n_open=4, start=date(2017, 1, 1))
    tenant.write(warehouse, tenant_id)
    result = _materialize(seller_metrics, instance, database_url, tenant_id)
    closes = [r["close_date"] for r in tenant.records["opportunity"]]
    expected = {c.strftime("%Y-%m") for c in closes}
    assert min(expected) == "2017-01" and len(expected) > 20
    meta = result.asset_materializations_for_node("seller_metrics")[0].metadata
    assert meta["months_recomputed"].value == len(expected)
    rows = store.read_rows(engine, seller_month_metric, tenant_id)
    assert {r["month"] for r in rows} == expected
    closed_2017 = sum(1 for r in tenant.records["opportunity"]
                      if r["is_closed"] and r["close_date"].year == 2017)
    assert closed_2017 > 100
    assert sum(r["deals_closed"] for r in rows if r["month"].startswith("2017")) == closed_2017
    assert sum(r["deals_closed"] for r in rows) == 300
    # The price model uses all of it: every closed deal is priced and counted.
    model = fit_price_model(store.load_tenant(engine, tenant_id).deals)
    assert model.n_closed == 300


# --------------------------------------------------------------------------- 3: $0 is missing


def test_a_zero_amount_win_is_not_an_upsell_gap() -> None:
    """Issue 10.3 in revenue opportunities: an account whose only win was recorded at $0
    has an unknown spend, not a spend of 0 to be upsold from."""
    amounts = [10_000.0, 12_000.0, 11_000.0, 30_000.0, 9_000.0, 2_000.0, 0.0]
    deals = pd.DataFrame({
        "opportunity_id": [f"O{i}" for i in range(7)],
        "account_id": [f"A{i}" for i in range(7)], "amount": amounts,
        "is_closed": True, "is_won": True, "industry": "Retail", "size_band": "MM",
    })
    items = upsell(deals)
    assert set(items["account_id"]) == {"A5"}  # 2,000 of a 12,000 potential; A6 is unknown


# --------------------------------------------------------------------------- 4: every open deal


def test_every_open_deal_has_a_row_when_no_curve_can_be_fitted(
        warehouse: Warehouse, engine, database_url: str, tenant_id: str,
        instance: dg.DagsterInstance) -> None:
    """Issue 10.4: no lost deal carries a price, so no curve; open deals without line items
    or quoted at $0 are there too. price_recommendation has a row for every open deal."""
    rng = np.random.default_rng(4)
    tenant = base_tenant()
    for i in range(200):
        won = bool(rng.random() < 0.4)
        tenant.deal(i, closed=True, won=won, close=date(2025, 1 + i % 12, 10),
                    ratio=float(rng.uniform(0.7, 0.95)) if won else None, owner=SELLERS[i % 4])
    for j, ratio in enumerate([0.9] * 6 + [None] * 3 + [0.0] * 2):
        tenant.deal(200 + j, closed=False, won=False, close=date(2027, 3, 1), ratio=ratio,
                    owner=SELLERS[j % 4])
    tenant.write(warehouse, tenant_id)
    result = _materialize(price_recommendations, instance, database_url, tenant_id)
    rows = {r["opportunity_id"]: r for r in
            store.read_rows(engine, price_recommendation, tenant_id)}
    assert set(rows) == {f"O{200 + j:05d}" for j in range(11)}
    for j, row in enumerate(rows[f"O{200 + j:05d}"] for j in range(11)):
        assert row["fallback_reason"]
        if 6 <= j < 9:  # no line items: no list value to price against
            assert row["method"] == "excluded" and row["recommended_price"] is None
            assert row["fallback_reason"].startswith("not priced: no line items")
        else:  # the band, with the reason there is no curve
            assert row["method"] == "segment band" and row["recommended_price"] > 0
            assert "no lost deal has a quoted price" in row["fallback_reason"]
        if j >= 9:  # quoted at $0: no current price, not a 100 % discount
            assert row["current_price"] is None and row["current_discount"] is None
    meta = result.asset_materializations_for_node("price_recommendations")[0].metadata
    assert meta["recommendations"].value == 11 and meta["excluded"].value == 3
