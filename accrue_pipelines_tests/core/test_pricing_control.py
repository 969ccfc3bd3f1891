"""Control-function price model: confounding correction, its checks and its fall-backs.

Sellers here discount more on deals that are hard for a reason the data does not show
(u). The naive logit then under-estimates the price sensitivity; seller habit, which
shifts the price but not the difficulty, identifies it through the control function.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import special

from accrue.analytics.pricing import (
    PricingConfig,
    _first_stage_jacobian,
    _newton,
    fit_price_model,
    recommend,
)

TRUE_B = 8.0
GAMMA = 0.8  # effect of the hidden difficulty on the loss log-odds
POOLED_CF = PricingConfig(hierarchical=False)
POOLED_NAIVE = PricingConfig(hierarchical=False, control_function=False)


def confounded_deals(n: int, seed: int, *, gamma: float = GAMMA, kappa: float = 0.035,
                     habit_spread: float = 0.08, skill: np.ndarray | None = None,
                     n_sellers: int = 10) -> pd.DataFrame:
    """Closed deals: seller habit and hidden difficulty u both move the price."""
    rng = np.random.default_rng(seed)
    seller = rng.integers(0, n_sellers, n)
    habits = np.linspace(0.02, 0.02 + habit_spread, n_sellers)
    u = rng.normal(0, 1, n)
    ratio = 1 - np.clip(habits[seller] + rng.normal(0, 0.035, n) + kappa * u, 0, 0.4)
    eta = -6.0 + TRUE_B * ratio + gamma * u
    if skill is not None:
        eta = eta - skill[seller]  # a seller's own effect on winning, beyond price
    list_total = 20_000 * rng.lognormal(0, 0.5, n)
    return pd.DataFrame({
        "opportunity_id": [f"O{seed}-{i}" for i in range(n)], "account_id": "A",
        "owner_id": [f"U{s}" for s in seller],
        "close_date": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) % 700, "D"),
        "is_closed": True, "is_won": rng.random(n) < special.expit(-eta),
        "list_total": list_total, "quote_total": list_total * ratio, "ratio": ratio,
        "cost_ratio": 0.5, "min_ratio": np.nan, "industry": "Retail", "size_band": "MM",
        "family": "Platform", "region": "EMEA", "exclusion": None,
    })


def test_control_function_recovers_the_sensitivity_the_naive_fit_misses():
    data = confounded_deals(6000, 1)
    naive = fit_price_model(data, POOLED_NAIVE)
    model = fit_price_model(data, POOLED_CF)
    assert model.usable, model.reasons
    assert model.identification.startswith("control function")
    # Naive: discounted deals are the hard ones, so price looks harmless (or helpful).
    assert naive.price_test["b"] < 0.5 * TRUE_B
    # The pricing curve averages u out: its slope is about κ·b, κ = 1/√(1 + πγ²/8).
    target = TRUE_B / math.sqrt(1 + math.pi * GAMMA**2 / 8)
    curve = model.curve(data.head(1)).iloc[0]
    assert abs(curve["b"] - target) < 2.5 * curve["b_se"]
    assert curve["b_se"] < 2.0  # and the interval is informative, not a shrug
    assert abs(naive.price_test["b"] - target) > 3 * curve["b_se"]


def test_weak_instrument_falls_back_to_the_naive_fit_and_says_so():
    data = confounded_deals(4000, 2, habit_spread=0.0)  # every seller discounts alike
    model = fit_price_model(data, POOLED_CF)
    assert model.identification.startswith("naive: weak instrument")
    assert model.control["first_stage_f"] < POOLED_CF.min_first_stage_f
    assert model.first_stage is None and not model.design.control


def test_one_seller_is_no_instrument():
    data = confounded_deals(2000, 3).assign(owner_id="U0")
    model = fit_price_model(data, POOLED_CF)
    assert model.identification.startswith("naive: fewer than 2 sellers")


def test_unconfounded_prices_keep_the_more_efficient_naive_fit():
    data = confounded_deals(4000, 4, gamma=0.0, kappa=0.0)
    model = fit_price_model(data, POOLED_CF)
    naive = fit_price_model(data, POOLED_NAIVE)
    assert model.identification.startswith("naive: no sign that prices are confounded")
    assert abs(model.control["rho_z"]) < 1.96
    np.testing.assert_allclose(model.curve(data.head(3)), naive.curve(data.head(3)))


def test_sellers_winning_beyond_their_prices_fail_the_instrument_check():
    # Seller skill unrelated to discount habit: the exclusion restriction is violated.
    skill = np.array([0.6, -0.6] * 5)
    data = confounded_deals(4000, 5, skill=skill)
    model = fit_price_model(data, POOLED_CF)
    assert model.control["overid_p"] < POOLED_CF.overid_alpha
    assert not model.usable
    assert any("over-identification" in r for r in model.reasons)
    recs = recommend(model, data.head(3).assign(is_closed=False), explain=False)
    assert (recs["method"] == "segment band").all()


def test_pricing_curve_is_the_win_model_averaged_over_the_control():
    data = confounded_deals(4000, 6)
    model = fit_price_model(data, POOLED_CF)
    assert model.design is not None and model.design.control and model.first_stage is not None
    deal = data.head(1)
    grid = np.linspace(0.7, 1.0, 7)
    rho, sigma = model.control["rho"], model.first_stage.sigma
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()
    exact = []
    for x in grid:
        base = model.design.matrix(deal, np.array([x]), np.zeros(1)) @ model.theta
        exact.append(float(special.expit(base[0] + rho * sigma * nodes) @ weights))
    approx = model.predict(pd.concat([deal] * len(grid)), grid)
    np.testing.assert_allclose(approx, exact, atol=0.01)
    # At the quoted prices the forecast conditions on what the quote says about the deal.
    observed = model.predict_observed(data.head(200))
    assert not np.allclose(observed, model.predict(data.head(200)))


def test_first_stage_jacobian_matches_a_refit():
    """The delta-method correction's dθ̂/dπ against refitting with a perturbed first stage."""
    data = confounded_deals(3000, 7)
    model = fit_price_model(data, POOLED_CF)
    stage, design = model.first_stage, model.design
    assert stage is not None and design is not None and model.theta is not None
    hist = model.history
    x = hist["ratio"].to_numpy(float)
    W = stage.matrix(hist)
    y = hist["is_won"].to_numpy(float)
    pen = design.penalty(1.0, 1.0)

    def refit(pi: np.ndarray) -> np.ndarray:
        return _newton(design.matrix(hist, x, x - W @ pi), y, pen, model.theta)[0]

    theta, _, H = _newton(design.matrix(hist, x, x - W @ stage.coef), y, pen, model.theta)
    J = _first_stage_jacobian(design.matrix(hist, x, x - W @ stage.coef), y, theta, H, W)
    step = np.zeros_like(stage.coef)
    step[-1] = 1e-4  # one seller's habit
    numeric = (refit(stage.coef + step) - refit(stage.coef - step)) / 2e-4
    np.testing.assert_allclose(J[:, -1], numeric, rtol=1e-3, atol=1e-3)
    # The correction only adds variance, and it is not nothing.
    assert model.covariance is not None
    assert model.covariance[1, 1] > np.linalg.inv(H)[1, 1] * 1.01


@pytest.mark.parametrize("seed", [8, 9])
def test_hierarchical_model_uses_the_control_function_on_confounded_data(seed):
    data = confounded_deals(3000, seed)
    data["industry"] = np.where(np.arange(len(data)) % 2 == 0, "Retail", "Energy")
    model = fit_price_model(data, PricingConfig(dimensions=("industry",)))
    assert model.usable, model.reasons
    assert model.identification.startswith("control function")
    recs = recommend(model, data.head(2).assign(is_closed=False))
    assert (recs["identification"].str.startswith("control function")).all()
    assert "identified by: control function" in model.explain()
