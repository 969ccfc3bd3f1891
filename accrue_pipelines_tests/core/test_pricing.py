"""Price recommendations: closed-form optimum, recovery, honesty fall-backs, guardrails, pooling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special

from accrue.analytics.features import build_deal_frame, lines_at_close
from accrue.analytics.pricing import (
    PricingConfig,
    fit_price_model,
    numeric_optimum,
    optimal_ratio,
    recommend,
    win_probability,
)

# (a, b, c, x*, P*, margin*) from docs/pricing notes §2A (checked there by grid search).
REFERENCE = [
    (-8.0, 10.0, 0.6, 0.800000, 0.500000, 0.100000),
    (-5.0, 6.0, 0.5, 0.833333, 0.500000, 0.166667),
    (-2.0, 4.0, 0.25, 0.641786, 0.361896, 0.141786),
    (0.0, 1.0, 0.0, 1.278465, 0.217812, 0.278465),
]
MORE = [(a, b, c) for a in (-12.0, -6.5, -1.0, 2.0) for b in (0.5, 3.0, 8.0, 20.0)
        for c in (0.0, 0.45, 0.9)]


@pytest.mark.parametrize(("a", "b", "c", "x", "p", "m"), REFERENCE)
def test_closed_form_matches_reference_table(a, b, c, x, p, m):
    x_star, p_star, m_star = optimal_ratio(a, b, c)
    assert float(x_star) == pytest.approx(x, abs=1e-6)
    assert float(p_star) == pytest.approx(p, abs=1e-6)
    assert float(m_star) == pytest.approx(m, abs=1e-6)


@pytest.mark.parametrize(("a", "b", "c"), [r[:3] for r in REFERENCE] + MORE)
def test_closed_form_matches_bounded_numeric_search(a, b, c):
    x_star, p_star, m_star = (float(v) for v in optimal_ratio(a, b, c))
    hi = c + 60.0 / b  # far beyond the optimum: the margin is ~0 there
    assert numeric_optimum(a, b, c, lo=c, hi=hi) == pytest.approx(x_star, abs=1e-5)
    assert p_star == pytest.approx(float(win_probability(a, b, x_star)), abs=1e-9)
    assert m_star == pytest.approx((x_star - c) * p_star, abs=1e-9)
    # First-order condition and the cost pass-through dp*/dc = 1 - P*.
    assert (x_star - c) * b * (1 - p_star) == pytest.approx(1.0, abs=1e-9)
    h = 1e-6
    slope = (float(optimal_ratio(a, b, c + h)[0]) - float(optimal_ratio(a, b, c - h)[0])) / (2 * h)
    assert slope == pytest.approx(1 - p_star, abs=1e-5)


def test_closed_form_survives_extreme_arguments():
    x, p, _ = optimal_ratio(-900.0, 1.0, 0.0)  # exp(899) overflows a float
    assert np.isfinite(x) and float(x) == pytest.approx(numeric_optimum(-900.0, 1.0, 0, 0, 2000),
                                                        abs=1e-4)
    with pytest.raises(ValueError):
        optimal_ratio(0.0, -1.0, 0.0)


# --------------------------------------------------------------------------- synthetic data


def deals(n: int, seed: int, *, a: dict[str, float], b: dict[str, float],
          shares: dict[str, float] | None = None, noise: bool = False,
          spread: float = 0.08) -> pd.DataFrame:
    """Closed deals whose industry sets the true curve (or pure noise if `noise`)."""
    rng = np.random.default_rng(seed)
    names = list(a)
    weights = np.array([(shares or {}).get(k, 1.0) for k in names])
    industry = rng.choice(names, size=n, p=weights / weights.sum())
    ratio = np.clip(0.85 + rng.normal(0, spread, n), 0.55, 1.0)
    eta = np.array([a[k] for k in industry]) + np.array([b[k] for k in industry]) * ratio
    p_win = np.full(n, 0.4) if noise else special.expit(-eta)
    list_total = 20_000 * rng.lognormal(0, 0.5, n)
    return pd.DataFrame({
        "opportunity_id": [f"O{seed}-{i}" for i in range(n)],
        "account_id": "A", "owner_id": "U",
        "close_date": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) % 700, "D"),
        "is_closed": True, "is_won": rng.random(n) < p_win,
        "list_total": list_total, "quote_total": list_total * ratio, "ratio": ratio,
        "cost_ratio": 0.5, "min_ratio": np.nan,
        "industry": industry, "size_band": "MM", "family": "Platform", "region": "EMEA",
        "exclusion": None,
    })


def test_pooled_fit_recovers_known_parameters():
    data = deals(6000, 1, a={"X": -6.0}, b={"X": 8.0})
    model = fit_price_model(data, PricingConfig(hierarchical=False))
    assert model.usable, model.reasons
    curve = model.curve(data.head(1)).iloc[0]
    # SE of b is ~0.6 here: a 20 % band around 8 fails if the fit is biased or mis-signed.
    assert curve["b"] == pytest.approx(8.0, rel=0.2)
    assert curve["a"] == pytest.approx(-6.0, abs=1.2)
    assert curve["b_se"] == pytest.approx(model.price_test["se"], rel=0.3)


def test_hierarchical_fit_recovers_segment_sensitivities():
    a = {"Retail": -8.5, "Energy": -3.5}
    b = {"Retail": 12.0, "Energy": 4.0}
    data = deals(8000, 2, a=a, b=b)
    model = fit_price_model(data, PricingConfig(dimensions=("industry",)))
    assert model.usable, model.reasons
    probe = data.drop_duplicates("industry")
    fitted = model.curve(probe).set_axis(probe["industry"])
    assert fitted.loc["Retail", "b"] == pytest.approx(12.0, rel=0.25)
    assert fitted.loc["Energy", "b"] == pytest.approx(4.0, rel=0.35)
    assert fitted.loc["Retail", "b"] > fitted.loc["Energy", "b"] + 4
    # Win probability at a typical price is right to a few points in both segments.
    for name in a:
        truth = float(win_probability(a[name], b[name], 0.85))
        got = float(win_probability(fitted.loc[name, "a"], fitted.loc[name, "b"], 0.85))
        assert got == pytest.approx(truth, abs=0.04)


def test_pooling_shrinks_a_tiny_segment_toward_the_tenant_fit():
    common = {k: -6.0 for k in ("Tech", "Retail", "Energy", "Media", "Banking")}
    big = deals(3000, 3, a=common, b=dict.fromkeys(common, 8.0))
    tiny = deals(8, 4, a={"Tiny": -6.0}, b={"Tiny": 8.0})
    tiny["is_won"] = [True] + [False] * 7  # 1 of 8 won: a large but finite unpooled shift
    data = pd.concat([big, tiny], ignore_index=True)

    def shifts(config: PricingConfig) -> pd.DataFrame:
        model = fit_price_model(data, config)
        assert model.usable, model.reasons
        return model.segment_effects().set_index("level")

    pooled = shifts(PricingConfig(dimensions=("industry",)))
    unpooled = shifts(PricingConfig(dimensions=("industry",), log10_lambda_grid=(-3.0,),
                                    log10_lambda_bounds=(-3.0, -3.0)))
    assert unpooled.loc["Tiny", "logit_shift"] < -1.0  # what the 8 deals alone say
    assert pooled.loc["Tiny", "logit_shift"] < 0  # pooled: same direction...
    assert abs(pooled.loc["Tiny", "logit_shift"]) < 0.5 * abs(unpooled.loc["Tiny", "logit_shift"])
    assert abs(pooled.loc["Tiny", "b_shift"]) < 0.5 * abs(unpooled.loc["Tiny", "b_shift"]) + 0.5
    # Segments with 600 deals each are left where their data put them (near zero).
    assert (pooled.drop("Tiny")["logit_shift"].abs() < 0.2).all()


# --------------------------------------------------------------------------- honesty


def warehouse_frames(lost_have_lines: bool) -> tuple[pd.DataFrame, ...]:
    """Common-model tables for 120 closed deals and 2 open ones."""
    rng = np.random.default_rng(5)
    n = 122
    opps = pd.DataFrame({
        "source_id": [f"006{i:05d}" for i in range(n)],
        "account_id": [f"001{i % 7:05d}" for i in range(n)],
        "owner_id": "005A", "amount": 0.0,
        "is_closed": [i < 120 for i in range(n)],
        "is_won": [i < 120 and rng.random() < 0.4 for i in range(n)],
        "close_date": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), "D"),
        "is_deleted": False,
    })
    lines = []
    for i, row in opps.iterrows():
        if not lost_have_lines and row["is_closed"] and not row["is_won"]:
            continue
        unit = 100.0 * (1 - rng.uniform(0, 0.3))
        lines.append({"source_id": f"00k{i:05d}", "opportunity_id": row["source_id"],
                      "product_id": "01tA", "quantity": 10.0, "unit_price": unit,
                      "list_price": 100.0, "discount": None, "total_price": 10 * unit,
                      "is_deleted": False})
    products = pd.DataFrame({"source_id": ["01tA"], "family": ["Platform"], "unit_cost": [45.0]})
    accounts = pd.DataFrame({
        "source_id": [f"001{i:05d}" for i in range(7)], "industry": "Retail",
        "employee_count": [50, 500, 5000, 80, 900, 12000, None],
        "billing_country": ["Germany", "United States", "Japan", "Brazil", "Mars", None, "France"],
    })
    return opps, pd.DataFrame(lines), products, accounts


def test_no_lost_prices_falls_back_to_the_band_with_the_reason():
    frame = build_deal_frame(*warehouse_frames(lost_have_lines=False))
    lost = frame[frame["is_closed"] & ~frame["is_won"]]
    assert (lost["exclusion"] == "no line items (no quoted price)").all()
    model = fit_price_model(frame)
    assert not model.usable
    assert any("no lost deal has a quoted price" in r for r in model.reasons)
    recs = recommend(model, frame[~frame["is_closed"]])
    assert (recs["method"] == "segment band").all()
    assert recs["fallback_reason"].str.contains("no lost deal").all()
    assert recs["win_probability_current"].isna().all()  # no curve, no probability claimed
    assert recs["recommended_ratio"].notna().all()
    assert "No price curve" in model.explain()


def test_every_open_deal_gets_a_row_priced_banded_or_excluded_with_the_reason():
    """Issue 10.4: no curve (no lost deal has a price), and open deals without lines, with a
    $0 quote or a line without list price: each still gets its row and, if unpriced, why."""
    opps, lines, products, accounts = warehouse_frames(lost_have_lines=False)
    extra = opps.iloc[[-1, -1, -1]].assign(source_id=["006N", "006Z", "006L"])  # open
    bad_lines = pd.DataFrame([
        {**lines.iloc[-1].to_dict(), "source_id": "00kZ", "opportunity_id": "006Z",
         "unit_price": 0.0, "total_price": 0.0},
        {**lines.iloc[-1].to_dict(), "source_id": "00kL", "opportunity_id": "006L",
         "list_price": None},
    ])
    frame = build_deal_frame(pd.concat([opps, extra], ignore_index=True),
                             pd.concat([lines, bad_lines], ignore_index=True), products, accounts)
    model = fit_price_model(frame)
    assert not model.usable
    open_deals = frame[~frame["is_closed"]]
    recs = recommend(model, open_deals).set_index("opportunity_id")
    assert set(recs.index) == set(open_deals["opportunity_id"]) and len(recs) == 5
    banded = recs.drop(index=["006N", "006L"])
    assert (banded["method"] == "segment band").all()
    assert banded["fallback_reason"].str.contains("no lost deal has a quoted price").all()
    assert banded["recommended_price"].notna().all()
    assert np.isnan(recs.loc["006Z", "current_price"])  # a $0 quote is missing, not 100 % off
    for oid, why in (("006N", "no line items"), ("006L", "a line item without list")):
        row = recs.loc[oid]
        assert row["method"] == "excluded" and np.isnan(row["recommended_price"])
        assert row["fallback_reason"].startswith(f"not priced: {why}")

    # No won deal with a price either: no band, so every open deal is excluded, with why.
    lost_only = frame.assign(is_won=False)
    recs = recommend(fit_price_model(lost_only), lost_only[~lost_only["is_closed"]])
    assert len(recs) == 5 and (recs["method"] == "excluded").all()
    priced = recs[~recs["opportunity_id"].isin(["006N", "006L"])]
    assert priced["fallback_reason"].str.contains("no won deal with a price to give a band").all()


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_pure_noise_gives_no_curve(seed):
    data = deals(1500, seed, a={"A": 0.0, "B": 0.0, "C": 0.0}, b={"A": 0.0, "B": 0.0, "C": 0.0},
                 noise=True)
    model = fit_price_model(data)
    assert not model.usable
    assert any("no significant price effect" in r or "wrong sign" in r for r in model.reasons)
    recs = recommend(model, data.head(5).assign(is_closed=False))
    assert (recs["method"] == "segment band").all()
    assert recs["win_probability_recommended"].isna().all()


@pytest.mark.parametrize("seed", [0, 1])
def test_unsupported_segment_gets_the_tenant_curve_but_noise_gets_the_band(seed):
    # Two big segments with a strong price effect, and a small one whose own 40 deals say
    # nothing about price: its segment slope fails the posterior check, the tenant's does not.
    big = deals(2000, 20 + seed, a={"Retail": -9.0, "Energy": -3.0},
                b={"Retail": 12.0, "Energy": 4.0})
    tiny = deals(40, 40 + seed, a={"Tiny": 0.0}, b={"Tiny": 0.0}, noise=True)
    data = pd.concat([big, tiny], ignore_index=True)
    model = fit_price_model(data, PricingConfig(dimensions=("industry",)))
    assert model.usable, model.reasons
    assert model.tenant_curve is not None and model.tenant_curve.usable
    probe = data.drop_duplicates("industry").assign(is_closed=False)
    recs = recommend(model, probe).set_axis(probe["industry"])
    assert (recs.loc[["Retail", "Energy"], "method"] == "model").all()
    tiny_rec = recs.loc["Tiny"]
    assert tiny_rec["method"] == "tenant_curve"
    assert "not distinguishable from zero" in tiny_rec["fallback_reason"]
    assert "tenant-wide curve" in tiny_rec["fallback_reason"]
    # Priced on the pooled curve: its b, a win probability, and the model optimum.
    tenant = model.tenant_curve.curve(probe.tail(1)).iloc[0]
    assert tiny_rec["b"] == pytest.approx(tenant["b"])
    assert 4.0 < tiny_rec["b"] < 12.0
    assert 0 < tiny_rec["win_probability_recommended"] < 1
    assert tiny_rec["identification"]

    # Pure noise: neither curve is supported, so every deal still gets the band.
    noise = deals(1500, 11 + seed, a=dict.fromkeys("ABC", 0.0), b=dict.fromkeys("ABC", 0.0),
                  noise=True)
    model = fit_price_model(noise)
    assert not model.usable
    assert model.tenant_curve is None or not model.tenant_curve.usable
    recs = recommend(model, noise.head(5).assign(is_closed=False))
    assert (recs["method"] == "segment band").all()
    assert recs["win_probability_recommended"].isna().all()


def test_too_few_deals_gives_no_curve():
    model = fit_price_model(deals(25, 6, a={"X": -6.0}, b={"X": 8.0}))
    assert not model.usable
    assert any("priced closed deals" in r for r in model.reasons)


# --------------------------------------------------------------------------- guardrails


def test_guardrail_clamps_are_reported():
    data = deals(4000, 7, a={"X": -6.0}, b={"X": 8.0}, spread=0.05)
    model = fit_price_model(data, PricingConfig(hierarchical=False))
    assert model.usable, model.reasons
    open_deals = data.head(3).assign(is_closed=False).reset_index(drop=True)
    open_deals["cost_ratio"] = [0.95, np.nan, 0.5]  # optimum above the range; revenue; interior
    open_deals.loc[2, "min_ratio"] = 0.99  # a customer minimum above everything observed
    recs = recommend(model, open_deals)
    hi = model.ratio_range[1] + model.config.range_margin
    assert recs.loc[0, "clamp"] == "ceiling (observed range)"
    assert recs.loc[0, "recommended_ratio"] == pytest.approx(hi)
    assert recs.loc[0, "unclamped_ratio"] > hi
    assert "high end of the observed quotes" in recs.loc[0, "clamp_reason"]
    assert recs.loc[1, "objective"] == "expected revenue"
    # The revenue optimum is far below the data: raised to the low end of won prices.
    assert recs.loc[1, "clamp"] == "floor (won prices)"
    won = data.loc[data["is_won"], "ratio"]
    assert recs.loc[1, "recommended_ratio"] == pytest.approx(
        np.quantile(won, 0.02) - model.config.range_margin)
    assert "low end of the prices won in X · MM · Platform" in recs.loc[1, "clamp_reason"]
    assert "Guardrail: raised from the model's optimum" in recs.loc[1, "drivers"]
    assert recs.loc[2, "clamp"] == "floor (customer minimum)"
    assert recs.loc[2, "recommended_ratio"] == pytest.approx(0.99)
    assert "minimum price set for these products" in recs.loc[2, "clamp_reason"]
    # With a unit cost the floor is the cost: a margin optimum below the won range stands.
    low_cost = recommend(model, open_deals.assign(cost_ratio=0.3, min_ratio=np.nan)).iloc[0]
    assert low_cost["clamp"] is None
    assert low_cost["recommended_ratio"] < np.quantile(won, 0.02) - model.config.range_margin
    interior = recommend(model, open_deals.assign(cost_ratio=0.5, min_ratio=np.nan)).iloc[0]
    assert interior["clamp"] is None
    x_star = float(optimal_ratio(interior["b"] * 0 + model.curve(open_deals.head(1))["a"].iloc[0],
                                 interior["b"], 0.5)[0])
    assert interior["recommended_ratio"] == pytest.approx(x_star)


def test_recommendation_output_reads_for_a_seller():
    data = deals(3000, 8, a={"Retail": -6.0, "Energy": -5.0}, b={"Retail": 8.0, "Energy": 6.0})
    model = fit_price_model(data)
    recs = recommend(model, data.head(2).assign(is_closed=False))
    row = recs.iloc[0]
    assert row["method"] == "model"
    assert 0 < row["win_probability_current"] < 1 and 0 < row["win_probability_recommended"] < 1
    assert row["band_floor"] <= row["band_target"] <= row["band_start"]
    assert row["recommended_price"] == pytest.approx(row["list_total"] * row["recommended_ratio"])
    assert row["recommended_discount"] == pytest.approx(1 - row["recommended_ratio"])
    assert "win chance" in row["drivers"]
    assert row["comparables"].count("off list") == 3
    # The expected-margin uplift is consistent with the stated probabilities.
    margin = row["list_total"] * (row["recommended_ratio"] - 0.5) * row[
        "win_probability_recommended"]
    assert row["expected_value_recommended"] == pytest.approx(margin)
    assert row["expected_uplift"] >= -1e-9  # the optimum is never worse than the quote
    assert "Price effect" in model.explain()


# --------------------------------------------------------------------------- features


def test_deal_frame_prices_deals_from_their_lines():
    opps, lines, products, accounts = warehouse_frames(lost_have_lines=True)
    frame = build_deal_frame(opps, lines, products, accounts).set_index("opportunity_id")
    first = lines.iloc[0]
    row = frame.loc[first["opportunity_id"]]
    assert row["ratio"] == pytest.approx(first["total_price"] / 1000.0)
    assert row["cost_ratio"] == pytest.approx(0.45)
    assert row["family"] == "Platform"
    assert set(frame["size_band"]) <= {"SMB", "MM", "ENT", "Unknown"}
    assert {"EMEA", "North America", "APAC", "LATAM", "Other", "Unknown"} >= set(frame["region"])
    assert frame["exclusion"].isna().all()


def test_lines_at_close_use_the_price_the_deal_was_lost_at():
    t = pd.Timestamp
    opp_versions = pd.DataFrame([
        {"source_id": "O1", "valid_from": t("2024-01-01", tz="UTC"),
         "valid_to": t("2024-02-01", tz="UTC"), "is_deleted": False, "is_closed": False},
        {"source_id": "O1", "valid_from": t("2024-02-01", tz="UTC"), "valid_to": None,
         "is_deleted": False, "is_closed": True},
    ])
    line_versions = pd.DataFrame([
        {"source_id": "L1", "opportunity_id": "O1", "valid_from": t("2024-01-05", tz="UTC"),
         "valid_to": t("2024-03-01", tz="UTC"), "is_deleted": False, "unit_price": 90.0},
        # After the loss someone re-quoted the line at a deeper discount: not the lost price.
        {"source_id": "L1", "opportunity_id": "O1", "valid_from": t("2024-03-01", tz="UTC"),
         "valid_to": None, "is_deleted": False, "unit_price": 70.0},
        {"source_id": "L2", "opportunity_id": "O1", "valid_from": t("2024-03-02", tz="UTC"),
         "valid_to": None, "is_deleted": False, "unit_price": 10.0},  # added after closing
    ])
    at_close = lines_at_close(opp_versions, line_versions)
    assert list(at_close["source_id"]) == ["L1"]
    assert at_close["unit_price"].tolist() == [90.0]


def test_the_stored_curve_reproduces_the_stated_win_probabilities():
    """Issue 11: the deal page draws the curve from `curve_a`/`curve_b`; it must pass
    through the two probabilities the row states, and exist only where a curve was used."""
    from accrue.analytics.optimum import win_probability

    data = deals(4000, 7, a={"X": -6.0}, b={"X": 8.0}, spread=0.05)
    model = fit_price_model(data, PricingConfig(hierarchical=False))
    open_deals = data.head(20).assign(is_closed=False).reset_index(drop=True)
    open_deals.loc[0, "list_total"] = 0.0  # excluded: no list value to price against
    recs = recommend(model, open_deals, explain=False)
    curved = recs[recs["method"].isin(["model", "tenant_curve"])]
    assert len(curved)
    ratio_now = curved["current_price"] / curved["list_total"]
    for ratio, stated in ((ratio_now, "win_probability_current"),
                          (curved["recommended_ratio"], "win_probability_recommended")):
        drawn = win_probability(curved["curve_a"], curved["curve_b"], ratio)
        assert np.allclose(drawn, curved[stated], equal_nan=True)
    others = recs[~recs["method"].isin(["model", "tenant_curve"])]
    assert list(others["method"]) == ["excluded"]
    assert others["curve_a"].isna().all() and others["curve_b"].isna().all()


def test_a_deal_without_lines_is_priced_from_the_list_value_kept_on_the_deal():
    """Close keeps no line items: a deal's list value on the deal itself (`list_amount`) and
    its amount are its list and quote. Lines, where a deal has them, still come first; a
    list value without an amount is excluded with the reason, never guessed."""
    opps, lines, products, accounts = warehouse_frames(lost_have_lines=True)
    on_deal = opps.iloc[[-1, -1, -1]].assign(
        source_id=["006D", "006E", "006F"], amount=[8000.0, None, 5000.0],
        list_amount=[10000.0, 10000.0, None])
    lined = opps.iloc[0]["source_id"]
    opps = pd.concat([opps.assign(list_amount=None), on_deal], ignore_index=True)
    opps.loc[opps["source_id"] == lined, "list_amount"] = 1.0  # ignored: it has lines
    frame = build_deal_frame(opps, lines, products, accounts).set_index("opportunity_id")
    priced = frame.loc["006D"]
    assert (priced["list_total"], priced["quote_total"]) == (10000.0, 8000.0)
    assert priced["ratio"] == pytest.approx(0.8) and not isinstance(priced["exclusion"], str)
    assert priced["n_lines"] == 0
    assert frame.loc["006E", "exclusion"] == "no amount on a deal priced at list value"
    assert frame.loc["006F", "exclusion"] == "no line items (no quoted price)"
    assert frame.loc[lined, "list_total"] != 1.0 and frame.loc[lined, "n_lines"] > 0
