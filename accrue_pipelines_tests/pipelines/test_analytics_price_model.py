"""Issue 10, "Also": recommendations per deal and per line, per unit, and one stored price
model per tenant and data version that every asset reuses.

The warehouse tests run on SQLite and, with ACCRUE_TEST_POSTGRES_URL, on PostgreSQL
(the parameters document is JSONB there: key order and number text are not kept).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from accrue.analytics import model_io, store
from accrue.analytics.lines import split_by_line
from accrue.analytics.pricing import PriceModel, PricingConfig, fit_price_model, recommend
from accrue.schema import price_recommendation, price_recommendation_line
from accrue.warehouse import Warehouse
from accrue_pipelines.analytics.assets import price_recommendations, revenue_opportunities
from accrue_pipelines_tests.core.test_pricing_control import confounded_deals
from accrue_pipelines_tests.pipelines.test_analytics_customer_data import (
    LIST_PRICES,
    SELLERS,
    Tenant,
    _materialize,
    base_tenant,
    curve_tenant,
)
from connectors.base import Upsert


def cents(value: float) -> int:
    return int(round(value * 100))


# --------------------------------------------------------------------------- per line, per unit


def _line_frames(rng: np.random.Generator, n_deals: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deals of 1–5 lines with odd quantities and unit prices, at awkward recommended prices."""
    recs, lines = [], []
    for d in range(n_deals):
        oid = f"O{d}"
        n = int(rng.integers(1, 6))
        qty = rng.choice([1, 3, 7, 11, 13, 2.5], n)
        price = np.round(rng.uniform(0.99, 999.99, n), 2)
        lines += [{"source_id": f"{oid}-L{i}", "opportunity_id": oid, "product_id": f"P{i}",
                   "quantity": float(qty[i]), "list_price": float(price[i])} for i in range(n)]
        list_total = float((qty * price).sum())
        recs.append({"opportunity_id": oid,
                     "recommended_price": list_total * float(rng.uniform(0.55, 0.97))})
    return pd.DataFrame(recs), pd.DataFrame(lines)


@pytest.mark.parametrize("seed", range(5))
def test_lines_add_up_to_the_deal_to_the_cent(seed: int) -> None:
    recs, lines = _line_frames(np.random.default_rng(seed), 200)
    deals, rows = split_by_line(recs, lines)
    assert len(rows) == len(lines)
    by_deal = rows.groupby("opportunity_id")
    for _, deal in deals.iterrows():
        group = by_deal.get_group(deal["opportunity_id"])
        # The deal's price is to the cent, and its lines add up to it exactly (in cents).
        assert sum(cents(v) for v in group["recommended_line_total"]) == cents(
            deal["recommended_price"])
        assert abs(deal["recommended_price"] - recs.set_index("opportunity_id").loc[
            deal["opportunity_id"], "recommended_price"]) <= 0.005
        assert all(cents(v) / 100 == pytest.approx(v, abs=1e-9)
                   for v in group["recommended_line_total"])
        # Unit × quantity gives the line back; the deal's discount on every line (± a cent).
        np.testing.assert_allclose(group["recommended_unit_price"] * group["quantity"],
                                   group["recommended_line_total"], atol=1e-6)
        ratio = deal["recommended_price"] / group["list_total"].sum()
        np.testing.assert_allclose(group["recommended_line_total"], ratio * group["list_total"],
                                   atol=0.01 * len(group))
        if deal["n_lines"] == 1:
            assert cents(deal["recommended_unit_price"] * group["quantity"].iloc[0]) == cents(
                deal["recommended_price"])
        else:
            assert np.isnan(deal["recommended_unit_price"])


def test_rounding_remainder_goes_to_the_largest_line() -> None:
    recs = pd.DataFrame({"opportunity_id": ["A", "B"], "recommended_price": [100.0, 200.0]})
    lines = pd.DataFrame({
        "source_id": ["A2", "A1", "A3", "B1", "B2", "B3"],
        "opportunity_id": ["A", "A", "A", "B", "B", "B"],
        "product_id": "P", "quantity": [3.0, 3.0, 3.0, 1.0, 1.0, 2.0],
        "list_price": [50.0, 50.0, 50.0, 100.0, 100.0, 100.0]})
    _, rows = split_by_line(recs, lines)
    got = dict(zip(rows["line_id"], rows["recommended_line_total"], strict=True))
    # Three equal lines of 100.00: 33.33 each and the cent left over to the first by id.
    assert got == {"A1": 33.34, "A2": 33.33, "A3": 33.33, "B1": 50.0, "B2": 50.0, "B3": 100.0}
    assert got["A1"] / 3 == rows.set_index("line_id").loc["A1", "recommended_unit_price"]


def test_no_line_goes_below_its_own_cost_while_the_deal_can_carry_it() -> None:
    """A deal at 60 % of list with one line costing 90 % of its list: that line is at its
    cost and the other lines give the difference; the deal's total does not move."""
    recs = pd.DataFrame({"opportunity_id": ["D"], "recommended_price": [600.0]})
    lines = pd.DataFrame({"source_id": ["L1", "L2", "L3"], "opportunity_id": "D",
                          "product_id": ["HW", "SW", "SV"], "quantity": [2.0, 1.0, 4.0],
                          "list_price": [100.0, 400.0, 100.0]})
    products = pd.DataFrame({"source_id": ["HW", "SW", "SV"], "unit_cost": [90.0, 40.0, None],
                             "min_price": [None, None, 20.0]})
    deal, rows = split_by_line(recs, lines, products)
    got = rows.set_index("line_id")["recommended_line_total"]
    assert got["L1"] == 180.0  # 2 × 90 cost, not 2 × 60
    assert got.sum() == pytest.approx(600.0) and deal["recommended_price"].iloc[0] == 600.0
    # The other two share the remaining 420 by list value (400 : 400), above their floors.
    assert got["L2"] == got["L3"] == 210.0
    # Without the cost the same deal is split at its own ratio, 60 % on every line.
    _, plain = split_by_line(recs, lines)
    assert plain.set_index("line_id")["recommended_line_total"].to_dict() == {
        "L1": 120.0, "L2": 240.0, "L3": 240.0}


def test_deals_without_a_price_have_no_line_rows() -> None:
    recs = pd.DataFrame({"opportunity_id": ["X", "Y"], "recommended_price": [np.nan, 10.0]})
    lines = pd.DataFrame({"source_id": ["X1", "Y1"], "opportunity_id": ["X", "Y"],
                          "product_id": "P", "quantity": [1.0, 4.0], "list_price": [5.0, 5.0]})
    deals, rows = split_by_line(recs, lines)
    assert list(rows["opportunity_id"]) == ["Y"]
    assert np.isnan(deals["recommended_price"].iloc[0]) and deals["n_lines"].tolist() == [1, 1]
    assert deals["recommended_unit_price"].iloc[1] == 2.5


# --------------------------------------------------------------------------- the stored model


def _segmented_deals(seed: int) -> pd.DataFrame:
    """Confounded deals over several segment levels: hierarchical fit, control function,
    tenant-wide curve; the last 30 are open."""
    deals = confounded_deals(4000, seed, habit_spread=0.12)
    rng = np.random.default_rng(seed)
    deals["industry"] = rng.choice(["Retail", "Energy", "Media"], len(deals))
    deals["region"] = rng.choice(["EMEA", "APAC"], len(deals))
    deals.loc[deals.index[-30:], ["is_closed", "is_won"]] = False
    return deals


def _assert_same_recommendations(a: PriceModel, b: PriceModel, open_deals: pd.DataFrame
                                 ) -> None:
    pd.testing.assert_frame_equal(recommend(a, open_deals), recommend(b, open_deals),
                                  check_exact=True)


def test_a_stored_model_round_trips_exactly(engine, tenant_id: str) -> None:
    """Saved to the warehouse and read back, the model gives identical recommendations
    (every float, the explanations and comparables), on both backends."""
    deals = _segmented_deals(1)
    model = fit_price_model(deals)
    assert model.usable and model.first_stage is not None and model.tenant_curve is not None
    assert model.design is not None and len(model.design.levels["industry"]) == 3
    data_hash = model_io.training_hash(deals, model.config)
    store.save_price_model(engine, tenant_id, model, data_hash)
    stored = store.read_price_model(engine, tenant_id)
    assert stored is not None and stored["data_hash"] == data_hash
    assert stored["decision"] == "curve" and stored["decision_reason"] is None
    assert stored["model_version"] == model_io.model_version(model, data_hash)
    assert (stored["n_closed"], stored["n_won"], stored["n_lost"]) == (
        model.n_closed, model.n_won, model.n_lost)
    reloaded = model_io.restore(stored["parameters"], deals)
    assert reloaded.theta is not None and model.theta is not None
    assert reloaded.theta.tolist() == model.theta.tolist()
    assert reloaded.design == model.design  # levels in the model's column order
    assert reloaded.explain() == model.explain()
    _assert_same_recommendations(model, reloaded, deals[~deals["is_closed"]])


def test_a_model_without_a_curve_round_trips_with_its_reasons() -> None:
    """Bands only (NaN mean ratio and prior precisions) survive strict JSON as well."""
    deals = _segmented_deals(2).head(30)
    model = fit_price_model(deals)
    assert not model.usable and model.reasons and np.isnan(model.x_mean)
    doc = json.loads(json.dumps(model_io.to_document(model), allow_nan=False))
    reloaded = model_io.restore(doc, deals)
    assert reloaded.reasons == model.reasons and reloaded.bands == model.bands
    _assert_same_recommendations(model, reloaded, _segmented_deals(2).tail(30))


def test_the_hash_follows_the_training_data_only() -> None:
    deals = _segmented_deals(3)
    config = PricingConfig()
    before = model_io.training_hash(deals, config)
    assert model_io.training_hash(deals.copy(), config) == before
    open_edit = deals.copy()
    open_edit.loc[open_edit.index[-1], "ratio"] = 0.5  # an open deal is not training data
    assert model_io.training_hash(open_edit, config) == before
    closed_edit = deals.copy()
    closed_edit.loc[closed_edit.index[0], "ratio"] += 0.01
    assert model_io.training_hash(closed_edit, config) != before
    outcome = deals.copy()
    outcome.loc[outcome.index[0], "is_won"] = not bool(outcome["is_won"].iloc[0])
    assert model_io.training_hash(outcome, config) != before


class FitSpy:
    """Counts the fits the store makes (the tenant-wide curve inside a fit is not one)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        monkeypatch.setattr(store, "fit_price_model", self)

    def __call__(self, *args: Any, **kwargs: Any) -> PriceModel:
        self.calls += 1
        return fit_price_model(*args, **kwargs)


def test_tenants_never_read_each_others_model(engine, make_tenant_id,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Two tenants with identical data: each gets its own fit and row; neither reuses the
    other's, and writing one leaves the other's row as it was."""
    spy = FitSpy(monkeypatch)
    first, second = make_tenant_id(), make_tenant_id()
    deals = _segmented_deals(1)
    fit_a = store.fitted_price_model(engine, first, deals)
    assert not fit_a.reused and fit_a.why.startswith("fitted: no stored model") and spy.calls == 1
    row_a = store.read_price_model(engine, first)
    assert store.read_price_model(engine, second) is None
    fit_b = store.fitted_price_model(engine, second, deals)
    assert not fit_b.reused and spy.calls == 2  # same hash, other tenant: never reused
    assert store.read_price_model(engine, first) == row_a
    other = deals.copy()
    other.loc[other.index[0], "ratio"] += 0.02
    store.fitted_price_model(engine, second, other)  # the second tenant's data changes
    assert spy.calls == 3 and store.read_price_model(engine, first) == row_a
    assert store.fitted_price_model(engine, first, deals).reused and spy.calls == 3


# --------------------------------------------------------------------------- through the assets


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def _lined_tenant() -> Tenant:
    """The curve tenant, its open deals given two more lines each (odd quantities)."""
    tenant = curve_tenant(seed=5, n_closed=300, n_open=8)
    for j in range(0, 8, 2):
        oid = f"O{300 + j:05d}"
        for k, (product, qty) in enumerate((("P2", 3.0), ("P3", 7.0))):
            list_price = LIST_PRICES[product]
            tenant.add("opportunity_line", f"X{j}-{k}", opportunity_id=oid, product_id=product,
                       quantity=qty, list_price=list_price, unit_price=list_price * 0.9,
                       total_price=qty * list_price * 0.9)
    return tenant


def _meta(result: dg.ExecuteInJobResult, node: str) -> dict[str, Any]:
    metadata = result.asset_materializations_for_node(node)[0].metadata
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_assets_fit_once_and_store_lines(warehouse: Warehouse, engine, database_url: str,
                                         tenant_id: str, instance: dg.DagsterInstance,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """price_recommendations fits and stores the model; revenue_opportunities reuses it; a
    changed closed deal (training data) refits, a changed open deal does not. The per-line
    rows add up to each deal's price to the cent; a one-line deal's unit price × quantity
    is its price."""
    spy = FitSpy(monkeypatch)
    tenant = _lined_tenant()
    tenant.write(warehouse, tenant_id)
    meta = _meta(_materialize(price_recommendations, instance, database_url, tenant_id),
                 "price_recommendations")
    assert spy.calls == 1 and meta["model_reused"] is False
    assert meta["model_decision"] == "curve"
    stored = store.read_price_model(engine, tenant_id)
    assert stored is not None and stored["decision"] == "curve"
    assert stored["model_version"] == meta["model_version"]

    deals = {r["opportunity_id"]: r for r in
             store.read_rows(engine, price_recommendation, tenant_id)}
    lines = store.read_rows(engine, price_recommendation_line, tenant_id)
    assert len(deals) == 8 and len(lines) == 8 + 2 * 4 == meta["line_rows"]
    for oid, deal in deals.items():
        mine = [r for r in lines if r["opportunity_id"] == oid]
        assert deal["recommended_price"] > 0 and deal["n_lines"] == len(mine)
        assert sum(cents(r["recommended_line_total"]) for r in mine) == cents(
            deal["recommended_price"])
        assert all(r["model_version"] == stored["model_version"] for r in mine)
        if len(mine) == 1:
            assert cents(deal["recommended_unit_price"] * mine[0]["quantity"]) == cents(
                deal["recommended_price"])
        else:
            assert len(mine) == 3 and deal["recommended_unit_price"] is None
            assert sorted(r["quantity"] for r in mine) == [3.0, 7.0, 10.0]

    meta = _meta(_materialize(revenue_opportunities, instance, database_url, tenant_id),
                 "revenue_opportunities")
    assert spy.calls == 1 and meta["model_reused"] is True
    assert meta["model_fit"].startswith("reused the model fitted at")

    # An open deal's new quote is not training data: the stored model still serves.
    _requote(warehouse, tenant_id, 0.7)
    meta = _meta(_materialize(price_recommendations, instance, database_url, tenant_id),
                 "price_recommendations")
    assert spy.calls == 1 and meta["model_reused"] is True
    # A closed deal's outcome is: the hash changes and the model is refitted, and said so.
    deal = dict(tenant.records["opportunity"][0])
    deal["is_won"] = not deal["is_won"]
    _upsert(warehouse, tenant_id, "opportunity", deal)
    meta = _meta(_materialize(revenue_opportunities, instance, database_url, tenant_id),
                 "revenue_opportunities")
    assert spy.calls == 2 and meta["model_reused"] is False
    assert meta["model_fit"].startswith("refitted: the training data changed")
    after = store.read_price_model(engine, tenant_id)
    assert after is not None and after["data_hash"] != stored["data_hash"]
    # The rerun replaced the rows: no line of a previous run is left over.
    assert len(store.read_rows(engine, price_recommendation_line, tenant_id)) == 16


def _requote(warehouse: Warehouse, tenant_id: str, ratio: float) -> None:
    """The first open deal's line (10 × P1) requoted at `ratio` of list by a later sync."""
    price = LIST_PRICES["P1"]
    _upsert(warehouse, tenant_id, "opportunity_line", {
        "source_id": "L00300", "opportunity_id": "O00300", "product_id": "P1",
        "quantity": 10.0, "list_price": price, "unit_price": price * ratio,
        "total_price": 10 * price * ratio})


def _upsert(warehouse: Warehouse, tenant_id: str, object_name: str, record: dict[str, Any]
            ) -> None:
    fields = {k: v for k, v in record.items() if k != "source_id"}
    warehouse.apply(tenant_id, object_name, [
        Upsert(record["source_id"], datetime.now(UTC), fields, {"Id": record["source_id"]})])


def test_a_tenant_without_a_curve_records_bands_and_why(warehouse: Warehouse, engine,
                                                        tenant_id: str) -> None:
    """The tenant-level decision is a column: 'bands', with the reasons."""
    tenant = base_tenant()
    rng = np.random.default_rng(11)
    for i in range(60):
        won = bool(rng.random() < 0.5)
        tenant.deal(i, closed=True, won=won, close=date(2025, 1 + i % 12, 3),
                    ratio=float(rng.uniform(0.7, 0.95)) if won else None, owner=SELLERS[i % 4])
    tenant.write(warehouse, tenant_id)
    fit = store.fitted_price_model(engine, tenant_id, store.load_tenant(engine, tenant_id).deals)
    stored = store.read_price_model(engine, tenant_id)
    assert stored is not None and stored["decision"] == "bands" and not fit.model.usable
    assert "no lost deal has a quoted price" in stored["decision_reason"]
    assert fit.version.startswith("bands-") and stored["model_version"] == fit.version
