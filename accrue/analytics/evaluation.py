"""Honest evaluation of price recommendations on synthetic tenants with a known win curve.

On real CRM data the outcome at a price that was not quoted is never observed, so
profit claims cannot be checked there; here the truth is known. Each synthetic tenant
has deals with segments (industry, size band, product family, region), a list value,
a unit cost and a true curve P(win | x) = 1/(1 + exp(a + b·x + γ·u)) whose a and b
depend on the segment. Sellers set prices by habit, deal size and noise. In the
*confounded* variant each deal also has a difficulty u, invisible in the data, that
both lowers the win chance (γ > 0) and makes sellers discount more (κ > 0): naive
fits then see discounted deals losing and under-estimate price sensitivity.

Policies are scored on fresh deals by the relative regret of expected margin,
1 − Σ L·(x − c)·P_true(x) / Σ L·(x* − c)·P_true(x*), with x* each deal's true optimum.
Win probabilities are checked for calibration on a time-ordered hold-out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd
from scipy import special

from accrue.analytics.features import priced_ratio
from accrue.analytics.pricing import (
    PriceModel,
    PricingConfig,
    fit_price_model,
    optimal_ratio,
    recommend,
)
from accrue.analytics.segments import band_for, price_bands

INDUSTRIES: dict[str, float] = {
    "Technology": 16, "Healthcare": 10, "Manufacturing": 12, "Retail": 8, "Finance": 6,
    "Energy": 4, "Education": 4, "Media": 4, "Consulting": 6, "Government": 3,
}
BANDS: dict[str, tuple[float, float, float, float]] = {
    # band → (share of deals, base sensitivity b, intercept shift, median list value)
    "SMB": (0.5, 10.0, -0.15, 12_000.0),
    "MM": (0.3, 8.0, 0.0, 40_000.0),
    "ENT": (0.2, 6.0, 0.25, 150_000.0),
}
FAMILIES: tuple[str, ...] = ("Platform", "Analytics", "Services", "Support")
REGIONS: tuple[str, ...] = ("North America", "EMEA", "APAC", "LATAM")
TARGET_WIN_RATE = 0.38
TYPICAL_RATIO = 0.87


@dataclass(frozen=True)
class SyntheticTenant:
    """History (closed deals, observable columns plus truth) and fresh deals to price."""

    history: pd.DataFrame
    fresh: pd.DataFrame
    gamma: float  # effect of the hidden difficulty on the loss log-odds


@dataclass(frozen=True)
class _World:
    sens: dict[str, float]
    shift: dict[str, float]
    fam_b: dict[str, float]
    fam_a: dict[str, float]
    reg_a: dict[str, float]
    fam_cost: dict[str, float]
    habits: np.ndarray


def _world(rng: np.random.Generator) -> _World:
    return _World(
        sens={k: float(rng.uniform(0.8, 1.25)) for k in INDUSTRIES},
        shift={k: float(rng.uniform(-0.5, 0.5)) for k in INDUSTRIES},
        fam_b={k: float(rng.uniform(0.9, 1.1)) for k in FAMILIES},
        fam_a={k: float(rng.normal(0, 0.15)) for k in FAMILIES},
        reg_a={k: float(rng.normal(0, 0.1)) for k in REGIONS},
        fam_cost={k: float(rng.uniform(0.40, 0.65)) for k in FAMILIES},
        habits=rng.uniform(0.02, 0.18, size=12),
    )


def _deals(rng: np.random.Generator, world: _World, n: int, confounded: bool,
           start: int) -> pd.DataFrame:
    industry_names = list(INDUSTRIES)
    p_ind = np.array(list(INDUSTRIES.values()))
    industry = rng.choice(industry_names, size=n, p=p_ind / p_ind.sum())
    band_names = list(BANDS)
    band = rng.choice(band_names, size=n, p=[BANDS[k][0] for k in band_names])
    family = rng.choice(FAMILIES, size=n, p=[0.4, 0.25, 0.2, 0.15])
    reg = rng.choice(REGIONS, size=n, p=[0.45, 0.3, 0.15, 0.1])
    median_list = np.array([BANDS[k][3] for k in band])
    list_total = median_list * rng.lognormal(0.0, 0.6, size=n)
    b = np.array([BANDS[k][1] for k in band]) * np.array([world.sens[k] for k in industry]) \
        * np.array([world.fam_b[k] for k in family])
    logit_target = math.log((1 - TARGET_WIN_RATE) / TARGET_WIN_RATE)
    a = (logit_target - b * TYPICAL_RATIO + np.array([world.shift[k] for k in industry])
         + np.array([BANDS[k][2] for k in band]) + np.array([world.fam_a[k] for k in family])
         + np.array([world.reg_a[k] for k in reg]))
    cost = np.clip(np.array([world.fam_cost[k] for k in family]) + rng.normal(0, 0.03, n),
                   0.2, 0.85)
    seller = rng.integers(0, len(world.habits), size=n)
    u = rng.normal(0.0, 1.0, size=n) if confounded else np.zeros(n)
    discount = (world.habits[seller] + 0.03 * np.log10(np.maximum(list_total, 1000) / 20_000)
                + rng.normal(0, 0.035, n) + (0.035 * u if confounded else 0.0))
    ratio = 1.0 - np.clip(discount, 0.0, 0.40)
    ids = [f"D{start + i:06d}" for i in range(n)]
    return pd.DataFrame({
        "opportunity_id": ids,
        "account_id": [f"A{i % 997:04d}" for i in range(start, start + n)],
        "owner_id": [f"U{s:02d}" for s in seller],
        "is_closed": True,
        "list_total": list_total,
        "quote_total": list_total * ratio,
        "ratio": ratio,
        "cost_ratio": cost,
        "min_ratio": np.nan,
        "industry": industry,
        "size_band": band,
        "family": family,
        "region": reg,
        "exclusion": None,
        "true_a": a,
        "true_b": b,
        "u": u,
    })


def simulate_tenant(seed: int, n_history: int = 2000, n_fresh: int = 1500, *,
                    confounded: bool = False, gamma: float = 0.8) -> SyntheticTenant:
    """A tenant with a known truth; the same seed gives the same tenant."""
    rng = np.random.default_rng(seed)
    world = _world(rng)
    g = gamma if confounded else 0.0
    history = _deals(rng, world, n_history, confounded, 0)
    eta = history["true_a"] + history["true_b"] * history["ratio"] + g * history["u"]
    history["is_won"] = rng.random(n_history) < special.expit(-eta.to_numpy())
    days = np.sort(rng.uniform(0, 730, n_history))
    history["close_date"] = pd.Timestamp("2023-01-01") + pd.to_timedelta(days, unit="D")
    fresh = _deals(rng, world, n_fresh, confounded, n_history)
    fresh["is_closed"] = False
    fresh["is_won"] = False
    fresh["close_date"] = pd.NaT
    return SyntheticTenant(history, fresh, g)


# --------------------------------------------------------------------------- scoring


def true_margin(tenant: SyntheticTenant, ratio: np.ndarray) -> np.ndarray:
    """Per fresh deal, L·(x − c)·P_true(win | x), the expected margin in currency."""
    f = tenant.fresh
    eta = f["true_a"] + f["true_b"] * ratio + tenant.gamma * f["u"]
    return cast(np.ndarray,
                (f["list_total"] * (ratio - f["cost_ratio"]) * special.expit(-eta)).to_numpy())


def oracle_ratio(tenant: SyntheticTenant) -> np.ndarray:
    """Each fresh deal's true optimum, knowing everything (the hidden difficulty too)."""
    f = tenant.fresh
    return optimal_ratio(f["true_a"] + tenant.gamma * f["u"], f["true_b"], f["cost_ratio"])[0]


def oracle_observable_ratio(tenant: SyntheticTenant) -> np.ndarray:
    """Best price knowing the true curve but not the hidden difficulty (integrated out).

    The gap between this and the full oracle is regret no model of the data can remove.
    """
    f = tenant.fresh
    if tenant.gamma == 0:
        return oracle_ratio(tenant)
    nodes, weights = np.polynomial.hermite_e.hermegauss(24)
    weights = weights / weights.sum()
    grid = np.linspace(0.3, 1.5, 1201)
    best = np.empty(len(f))
    a, b, c = (f[k].to_numpy() for k in ("true_a", "true_b", "cost_ratio"))
    for start in range(0, len(f), 256):
        sl = slice(start, start + 256)
        eta = (a[sl, None, None] + b[sl, None, None] * grid[None, :, None]
               + tenant.gamma * nodes[None, None, :])
        p = special.expit(-eta) @ weights
        value = (grid[None, :] - c[sl, None]) * p
        best[sl] = grid[np.argmax(value, axis=1)]
    return best


def _fit_and_price(tenant: SyntheticTenant, config: PricingConfig
                   ) -> tuple[np.ndarray, PriceModel, pd.DataFrame]:
    model = fit_price_model(tenant.history, config)
    recs = recommend(model, tenant.fresh, explain=False)
    return recs["recommended_ratio"].to_numpy(float), model, recs


def baseline_ratios(history: pd.DataFrame, fresh: pd.DataFrame) -> dict[str, np.ndarray]:
    """The simple policies our model has to beat (the pooled logit is scored separately).

    They read prices as the model does (`priced_ratio`): a missing or $0 quote is missing.
    """
    h = history.assign(ratio=priced_ratio(history))
    n = len(fresh)
    bands = price_bands(h, min_won=12)
    median = np.array([
        (band.target if (band := band_for(row, bands)) else 1.0) for _, row in fresh.iterrows()
    ])
    mean = float(h["ratio"].mean()) if h["ratio"].notna().any() else 1.0
    return {
        "list price": np.ones(n),
        "historical mean discount": np.full(n, mean),
        "segment median won price": median,
    }


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator, n: int = 2000
                 ) -> tuple[float, float]:
    """Percentile 95 % interval of the mean, resampling seeds (a tenant is the unit)."""
    means = rng.choice(values, size=(n, len(values)), replace=True).mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


OURS = "hierarchical model (ours)"
POOLED = "pooled logistic"
# The plain pooled logit a data scientist would fit first: no segments, no correction for
# confounding or for quotes missing by outcome (same optimum, guardrails and gates as ours).
POOLED_CONFIG = PricingConfig(hierarchical=False, control_function=False,
                              sampling_correction=False)
METHODS: tuple[str, ...] = ("model", "tenant_curve", "segment band", "excluded")
# Ablations, not baselines: each switches off one part of our model.
ABLATIONS: dict[str, PricingConfig] = {
    "ablation: ours without control function": PricingConfig(control_function=False),
    "ablation: pooled logistic + control function": PricingConfig(hierarchical=False),
}


@dataclass(frozen=True)
class SeedResult:
    """Regret per policy and diagnostics for one synthetic tenant."""

    regret: dict[str, float]
    fallback_share: float  # fresh deals our model priced from the band, not the curve
    methods: dict[str, float]  # share of fresh deals per `method` of our recommendations
    b_mae: dict[str, float]  # mean |b̂ − b| over fresh deals (NaN without a curve)
    clamped_share: float
    reasons: tuple[str, ...]
    identification: str  # how our model identified the price slope on this tenant
    control: dict[str, float]  # first-stage F, control term z, over-identification p


def _b_mae(model: PriceModel, tenant: SyntheticTenant) -> float:
    """Mean |b̂ − b| against the curve that matters for pricing (u averaged out).

    With a hidden difficulty of effect γ, the best curve from observables is the
    true logit averaged over u ~ N(0, 1); its slope is about κ·b with
    κ = 1/√(1 + π·γ²/8) (the same logistic-normal approximation the model uses).
    """
    if not model.usable:
        return math.nan
    fitted = model.curve(tenant.fresh)["b"].to_numpy()
    kappa = 1.0 / math.sqrt(1.0 + math.pi * tenant.gamma**2 / 8.0)
    return float(np.mean(np.abs(fitted - kappa * tenant.fresh["true_b"].to_numpy())))


def evaluate_seed(seed: int, *, confounded: bool, n_history: int = 2000,
                  n_fresh: int = 1500, ablations: bool = True) -> SeedResult:
    """Fit on one tenant's history, price its fresh deals with every policy, score them."""
    tenant = simulate_tenant(seed, n_history, n_fresh, confounded=confounded)
    best = true_margin(tenant, oracle_ratio(tenant)).sum()
    ratios = baseline_ratios(tenant.history, tenant.fresh)
    ratios[POOLED], pooled, _ = _fit_and_price(tenant, POOLED_CONFIG)
    if ablations:
        for name, config in ABLATIONS.items():
            ratios[name] = _fit_and_price(tenant, config)[0]
    ratios[OURS], model, recs = _fit_and_price(tenant, PricingConfig())
    if confounded:
        ratios["oracle without u (reference)"] = oracle_observable_ratio(tenant)
    regret = {name: 1.0 - true_margin(tenant, x).sum() / best for name, x in ratios.items()}
    return SeedResult(
        regret=regret,
        fallback_share=float((recs["method"] == "segment band").mean()),
        methods={m: float((recs["method"] == m).mean()) for m in METHODS},
        b_mae={POOLED: _b_mae(pooled, tenant), OURS: _b_mae(model, tenant)},
        clamped_share=float(recs["clamp"].notna().mean()),
        reasons=tuple(model.reasons),
        identification=model.identification,
        control=dict(model.control),
    )


# --------------------------------------------------------------------------- calibration


def reliability_table(p: np.ndarray, y: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Predicted vs observed win rate in equal-width probability bins."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    for k in range(bins):
        mask = which == k
        if mask.any():
            rows.append({"bin": f"{edges[k]:.1f}-{edges[k + 1]:.1f}", "deals": int(mask.sum()),
                         "predicted": float(p[mask].mean()), "observed": float(y[mask].mean())})
    return pd.DataFrame(rows)


def calibration_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Brier score, log loss, ECE, and the calibration slope/intercept (logit recalibration)."""
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    y = np.asarray(y, float)
    table = reliability_table(p, y)
    ece = float((table["deals"] * (table["predicted"] - table["observed"]).abs()).sum() / len(p))
    logit = np.log(p / (1 - p))
    X = np.column_stack([np.ones_like(logit), logit])
    theta = np.zeros(2)
    for _ in range(50):  # plain Newton: logistic regression of y on logit(p)
        mu = special.expit(X @ theta)
        H = (X * (mu * (1 - mu))[:, None]).T @ X + 1e-9 * np.eye(2)
        theta -= np.linalg.solve(H, X.T @ (mu - y))
    return {
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        "ece": ece,
        "calibration_intercept": float(theta[0]),
        "calibration_slope": float(theta[1]),
    }


def time_ordered_holdout(history: pd.DataFrame, config: PricingConfig | None = None,
                         holdout_share: float = 0.25) -> tuple[np.ndarray, np.ndarray, float]:
    """Fit on the earliest deals, predict the latest ones at their quoted prices.

    Returns (predicted P(win), outcome, training win rate); empty arrays if the
    model found no usable curve (it then makes no probability claim to check). The
    probabilities are `predict_observed`: at the quoted price, given seller and segment.
    """
    ordered = history.sort_values("close_date")
    cut = int(len(ordered) * (1 - holdout_share))
    train, test = ordered.iloc[:cut], ordered.iloc[cut:]
    model = fit_price_model(train, config)
    base = float(train["is_won"].mean())
    if not model.usable:
        return np.array([]), np.array([]), base
    return model.predict_observed(test), test["is_won"].to_numpy(float), base
