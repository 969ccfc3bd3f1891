"""Lost deals recorded without a quote: the fit corrects for outcome-dependent missingness.

CRMs lose quotes on lost deals, so the priced deals over-represent wins. When the sellers
who discount most also leave most losses unquoted, their priced deals look like cheap
wins and the slope is over-stated; the per-seller offset log(r_won / r_lost) on the win
log-odds undoes it. With every quote recorded the offset is exactly 0 and nothing changes.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import special

from accrue.analytics import model_io
from accrue.analytics.features import ZERO_QUOTE
from accrue.analytics.pricing import (
    OFFSET,
    PricingConfig,
    _newton,
    fit_price_model,
    recommend,
    training_frame,
)
from accrue.analytics.quote_sampling import FEW_DEALS, TENANT, quote_sampling
from accrue.analytics.scenarios import BY_NAME, simulate_crm

TRUE_A, TRUE_B = -6.0, 8.0  # P(win | x) = 1 / (1 + exp(a + b·x))
POOLED = PricingConfig(hierarchical=False, control_function=False)
POOLED_CF = PricingConfig(hierarchical=False)


def uncorrected(config: PricingConfig) -> PricingConfig:
    """The same model with the missing-quote offset switched off."""
    return replace(config, sampling_correction=False)


def closed_deals(n: int = 6000, seed: int = 3, careless: float = 0.8, rest: float = 0.1
                 ) -> pd.DataFrame:
    """Closed deals of 10 sellers; the 3 deepest discounters leave `careless` of their losses
    unquoted (no line items), the others `rest`. Outcomes come first: whether a quote is
    missing depends on the outcome and the seller, never on the price."""
    rng = np.random.default_rng(seed)
    seller = rng.integers(0, 10, n)
    habits = np.linspace(0.02, 0.18, 10)
    ratio = 1 - np.clip(habits[seller] + rng.normal(0, 0.035, n), 0, 0.4)
    won = rng.random(n) < special.expit(-(TRUE_A + TRUE_B * ratio))
    unquoted = ~won & (rng.random(n) < np.where(seller >= 7, careless, rest))
    list_total = 20_000 * rng.lognormal(0, 0.5, n)
    exclusion = np.full(n, None, dtype=object)
    exclusion[unquoted] = "no line items (no quoted price)"
    return pd.DataFrame({
        "opportunity_id": [f"O{i:05d}" for i in range(n)], "account_id": "A",
        "owner_id": [f"U{s}" for s in seller],
        "close_date": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) % 700, "D"),
        "is_closed": True, "is_won": won, "list_total": list_total,
        "quote_total": np.where(unquoted, np.nan, list_total * ratio),
        "ratio": np.where(unquoted, np.nan, ratio), "cost_ratio": 0.5, "min_ratio": np.nan,
        "industry": "Retail", "size_band": "MM", "family": "Platform", "region": "EMEA",
        "exclusion": exclusion,
    })


def test_the_slope_is_recovered_when_the_deep_discounters_leave_their_losses_unquoted() -> None:
    """Without the offset b is over-stated (priced cheap deals look like wins) and every win
    chance too; with it both come back: b within 3 SE of the truth, win rate as observed."""
    deals = closed_deals()
    fitted = fit_price_model(deals, POOLED)
    naive = fit_price_model(deals, uncorrected(POOLED))
    assert fitted.usable and naive.usable
    se = fitted.price_test["se"]
    assert abs(fitted.price_test["b"] - TRUE_B) < 3 * se, fitted.price_test
    assert naive.price_test["b"] - TRUE_B > 3 * se, naive.price_test  # fails without it
    everything = fit_price_model(closed_deals(careless=0.0, rest=0.0), POOLED)  # same deals
    assert abs(fitted.price_test["b"] - everything.price_test["b"]) < se
    # The mean win chance at the priced deals' quotes, on the fitted and the true curve.
    priced = deals[deals["ratio"].notna()]
    truth = special.expit(-(TRUE_A + TRUE_B * priced["ratio"])).mean()
    assert abs(fitted.predict(priced).mean() - truth) < 0.02
    assert naive.predict(priced).mean() - truth > 0.05


def test_the_control_function_keeps_its_curve_with_the_offset_and_loses_it_without() -> None:
    """The over-identification test read the careless sellers' priced win rate as seller
    skill and gave every deal the band; the offset removes that artefact."""
    deals = closed_deals()
    fitted = fit_price_model(deals, POOLED_CF)
    naive = fit_price_model(deals, uncorrected(POOLED_CF))
    assert fitted.usable, fitted.reasons
    assert fitted.control["overid_p"] > 0.01
    assert abs(fitted.price_test["b"] - TRUE_B) < 3 * fitted.price_test["se"]
    assert naive.control["overid_p"] < 1e-4
    assert not naive.usable and "beyond what their prices explain" in naive.reasons[0]


def test_the_lost_deals_unquoted_scenario_gets_a_curve() -> None:
    """The `make eval` scenario that found the defect, one seed: a curve, not the band."""
    tenant = simulate_crm(replace(BY_NAME["lost deals unquoted"], n_fresh=100), 0)
    model = fit_price_model(tenant.history)
    assert model.usable, model.reasons
    assert not fit_price_model(tenant.history, uncorrected(PricingConfig())).usable
    recs = recommend(model, tenant.fresh, explain=False)
    assert set(recs["method"]) <= {"model", "tenant_curve", "excluded"}


def test_with_every_quote_recorded_the_offset_is_exactly_zero_and_the_fit_unchanged() -> None:
    deals = closed_deals(careless=0.0, rest=0.0)
    assert deals["ratio"].notna().all()
    frame, _ = training_frame(deals, PricingConfig())
    assert (frame[OFFSET].to_numpy() == 0.0).all()
    for config in (PricingConfig(), POOLED_CF, POOLED):
        on, off = fit_price_model(deals, config), fit_price_model(deals, uncorrected(config))
        assert on.usable
        assert on.theta is not None and off.theta is not None
        assert on.theta.tolist() == off.theta.tolist()
        assert on.covariance is not None and off.covariance is not None
        assert on.covariance.tolist() == off.covariance.tolist()
        assert on.price_test == off.price_test and on.control == off.control
        assert on.sampling is not None and on.sampling.describe() is None
        assert "Quotes missing" not in on.explain()
    # A zero offset is the same computation as none, float for float.
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(300), rng.normal(size=300)])
    y = (rng.random(300) < 0.4).astype(float)
    pen = np.full(2, 1e-6)
    assert _newton(X, y, pen)[0].tolist() == _newton(X, y, pen, offset=np.zeros(300))[0].tolist()


def test_explain_says_how_many_unquoted_losses_it_corrects_for() -> None:
    deals = closed_deals()
    model = fit_price_model(deals)
    missing = int(deals["ratio"].isna().sum())
    assert model.sampling is not None and model.sampling.unpriced_lost == missing
    assert model.sampling.unpriced_won == 0
    text = model.explain()
    assert f"{missing:,} of {int((~deals['is_won']).sum()):,} lost" in text
    assert "The fit corrects for them" in text
    off = fit_price_model(deals, uncorrected(PricingConfig())).explain()
    assert "Not corrected" in off


def test_shares_per_seller_small_sellers_pooled_tiny_groups_on_the_tenant() -> None:
    won = [True] * 10 + [False] * 10
    closed = pd.DataFrame({
        "is_won": won * 2 + [True, False, False] * 4 + [True, False],
        "owner_id": ["big"] * 20 + ["other"] * 20 + [f"s{i}" for i in range(12)]
        + ["t", None],
    })
    priced = np.ones(len(closed), bool)
    priced[10:15] = False  # 5 of big's 10 losses unquoted
    priced[[41, 44]] = False  # 2 of the small sellers' 8 losses
    sampling, offset = quote_sampling(closed, priced, "owner_id", min_deals=10)
    groups = {g.group: g for g in sampling.groups}
    assert set(groups) == {"big", "other", FEW_DEALS}
    assert offset[0] == pytest.approx(math.log(1.0 / 0.5))  # r_won 1, r_lost 5 / 10
    assert offset[20] == 0.0  # "other" recorded every quote
    assert offset[40] == pytest.approx(math.log(1.0 / (7 / 9)))  # 14 small-seller deals
    assert (sampling.unpriced_lost, sampling.unpriced_won) == (7, 0)
    # Alone, two deals of small sellers are too few for shares of their own.
    _, tiny = quote_sampling(closed.iloc[list(range(40)) + [52, 53]], priced[
        list(range(40)) + [52, 53]], "owner_id", min_deals=10)
    assert tiny[-1] == pytest.approx(math.log(1.0 / (16 / 21)))  # the tenant's shares
    # A seller who never records a losing quote: a finite offset, its wins weigh little.
    never = priced.copy()
    never[10:20] = False
    _, big_offset = quote_sampling(closed, never, "owner_id", min_deals=10)
    assert big_offset[0] == pytest.approx(math.log(1.0 / 0.05))
    assert TENANT not in groups


def test_the_stored_model_keeps_the_correction_and_a_new_unquoted_loss_refits() -> None:
    deals = closed_deals(n=2000)
    config = PricingConfig()
    model = fit_price_model(deals, config)
    doc = json.loads(json.dumps(model_io.to_document(model)))
    reloaded = model_io.restore(doc, deals)
    assert reloaded.sampling == model.sampling
    assert reloaded.explain() == model.explain()
    before = model_io.training_hash(deals, config)
    extra = deals.iloc[[0]].assign(opportunity_id="NEW", is_won=False, ratio=np.nan,
                                   quote_total=0.0, exclusion=ZERO_QUOTE)
    more = pd.concat([deals, extra], ignore_index=True)
    assert training_frame(more, config)[0]["opportunity_id"].tolist() == \
        training_frame(deals, config)[0]["opportunity_id"].tolist()  # same priced deals...
    assert model_io.training_hash(more, config) != before  # ...but the offsets moved
