"""Bid-response price model, optimal quote, guardrails and per-deal recommendations.

Model. For a closed deal with price ratio x = quote / list, the win probability is
the logit bid-response curve P(win | x) = 1 / (1 + exp(a + b·x)) with b > 0
(Phillips, *Pricing and Revenue Optimization*, ch. 11). Internally we fit the
log-odds of winning, A(s) + B(s)·(x − x̄), with x̄ the tenant's mean ratio, so
a = −A + B·x̄ and b = −B. A(s) and B(s) are a tenant-wide value plus one additive
deviation per segment dimension (industry, size band, product family, region, deal
size). The deviations carry Gaussian priors (L2 penalties) toward zero, i.e. toward
the tenant-wide curve: a segment with few deals keeps close to the tenant fit, a
segment with many deals moves as far as its data say (partial pooling). The two
prior precisions (one for intercepts, one for slopes) are chosen by empirical Bayes:
maximising the Laplace approximation of the marginal likelihood, as GLMM software
does. We prefer it to cross-validation because it uses all deals, is deterministic,
and is cheap enough to run per tenant on every change.

Confounding. Sellers tend to discount deals that are hard for reasons the data does
not show; the naive fit then sees discounted deals losing and under-states b. We use
a control function (Rivers & Vuong 1988; Petrin & Train 2010): a first stage regresses
the ratio on seller identity (the instrument: a seller's discount habit moves the
price but, assuming deals reach sellers independently of their hidden difficulty,
not the win chance) and segment controls; its residual v enters the win model. The
pricing curve averages v out (the average structural function). Checks, each with a
stated fall-back: first-stage F < 10 (weak instrument) → naive fit, said so; the
control term not significant (Durbin–Wu–Hausman) → naive fit, which is then
consistent and more efficient; sellers winning more or less than their prices
explain (over-identification LR test) → no curve, the band.

Missing quotes. A closed deal without a usable quote is left out of the fit, and in
CRMs it is mostly lost deals whose quotes go missing. Every logit fit (not the first
stage) therefore carries a per-seller offset log(r_won / r_lost) on the win log-odds,
r being the priced share of the seller's won and lost deals (`quote_sampling`); the
curve and predictions leave it out. It is exactly 0 when every closed deal is priced.

Optimum. Expected margin (x − c)·P(win | x) with c = cost / list has the closed form
x* = c + (1 + W)/b, W = LambertW(exp(−(a + b·c) − 1)) (principal branch), with
P* = W/(1 + W) and margin W/b. Without a cost, c = 0 (expected revenue).

Honesty. No curve is shown when the data cannot carry one: too few priced deals,
no lost (or no won) deal with a price, or a price effect that is absent or has the
wrong sign (one-sided likelihood-ratio test), or, per segment, a price sensitivity
whose posterior lower bound is not above zero. A deal whose segment fails only that
last check is priced on the tenant-wide curve instead (one pooled logit, fitted with the
same identification logic and passing the same tests), with the reason; only when that
curve is not supported either does the deal get the segment's Floor / Target / Start
band and the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import cast

import numpy as np
import pandas as pd
from scipy import special, stats

from accrue.analytics.estimation import (
    FIXED_EFFECT_PENALTY,
    FirstStage,
    PricingConfig,
    _Design,
    _empirical_bayes,
    _first_stage,
    _first_stage_jacobian,
    _generated_regressor_cov,
    _newton,
    _price_test,
)
from accrue.analytics.optimum import numeric_optimum, optimal_ratio, win_probability
from accrue.analytics.quote_sampling import QuoteSampling, quote_sampling
from accrue.analytics.recommendations import (
    _as_records,
    _comparables,
    _drivers,
    describe_segments,
    recommend,
)
from accrue.analytics.segments import PriceBand, deal_size, deal_size_cuts, price_bands

# The model and its fit live here; the numerics in `estimation`, the optimum in `optimum`
# and the per-deal output in `recommendations`. Their public names are re-exported.
__all__ = [
    "FIXED_EFFECT_PENALTY",
    "OFFSET",
    "FirstStage",
    "PriceModel",
    "PricingConfig",
    "_Design",
    "_as_records",
    "_comparables",
    "_first_stage_jacobian",
    "_newton",
    "describe_segments",
    "fit_price_model",
    "numeric_optimum",
    "optimal_ratio",
    "recommend",
    "training_frame",
    "win_probability",
]

OFFSET = "quote_offset"  # training-frame column: the missing-quote offset on the win log-odds


@dataclass
class PriceModel:
    """A tenant's fitted bid-response model (or the reasons it has none) and its bands."""

    config: PricingConfig
    usable: bool
    reasons: list[str]
    n_closed: int
    n_won: int
    n_lost: int
    x_mean: float = math.nan
    ratio_range: tuple[float, float] = (math.nan, math.nan)
    deal_size_cuts: tuple[float, float] = (math.inf, math.inf)
    design: _Design | None = None
    theta: np.ndarray | None = None
    covariance: np.ndarray | None = None
    lambdas: tuple[float, float] = (math.nan, math.nan)
    price_test: dict[str, float] = field(default_factory=dict)
    bands: dict[tuple[tuple[str, ...], tuple[str, ...]], PriceBand] = field(default_factory=dict)
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    # How the price slope is identified: "control function (seller habit)" or "naive: …".
    identification: str = "naive"
    first_stage: FirstStage | None = None
    # Control-function diagnostics: rho (win log-odds per unit of v), its z, first-stage F,
    # the over-identification test, and kappa, the factor that averages v out of the curve.
    control: dict[str, float] = field(default_factory=dict)
    # The tenant-wide (pooled) curve: same data, identification logic and tests, no
    # segment terms. Deals whose segment slope is not supported are priced on it.
    tenant_curve: PriceModel | None = field(default=None, repr=False)
    # How the closed deals reached the fit: priced shares per seller group, the offsets.
    sampling: QuoteSampling | None = None
    _effects: pd.DataFrame | None = field(default=None, repr=False)

    # -- curve ----------------------------------------------------------------

    def _prepare(self, deals: pd.DataFrame) -> pd.DataFrame:
        out = deals.copy()
        if "deal_size" not in out.columns:
            out["deal_size"] = deal_size(out["list_total"], self.deal_size_cuts)
        for dim in self.config.dimensions:
            if dim not in out.columns:
                out[dim] = "Unknown"
        return out

    def curve(self, deals: pd.DataFrame) -> pd.DataFrame:
        """Per deal: a, b of its curve and the posterior standard error of b.

        This is the curve for choosing a price. With a control function it is the
        average structural function: the win model with the control v averaged over
        its distribution N(0, σ_v²), so a price change is not read as a change in the
        deal's hidden difficulty. The average of a logit over a normal shift is
        approximated by a logit with both coefficients scaled by
        κ = 1/√(1 + π·ρ²σ_v²/8), which keeps the Lambert W optimum exact for it.
        """
        if not self.usable or self.design is None or self.theta is None:
            nan = np.full(len(deals), np.nan)
            return pd.DataFrame({"a": nan, "b": nan, "b_se": nan}, index=deals.index)
        prepared = self._prepare(deals)
        design = self.design
        n = len(prepared)
        # Gradient rows of A (at x̄, v = 0) and B with respect to θ.
        G_int = design.matrix(prepared, np.full(n, design.x_mean))
        q = design.n_levels
        G_slope = np.zeros_like(G_int)
        G_slope[:, 1] = 1.0
        if design.hierarchical:
            G_slope[:, 2 + q:2 + 2 * q] = G_int[:, 2:2 + q]
            G_int[:, 2 + q:2 + 2 * q] = 0.0
        A = G_int @ self.theta
        B = G_slope @ self.theta
        cov = self.covariance if self.covariance is not None else np.zeros((len(self.theta),) * 2)
        b_se = np.sqrt(np.einsum("ij,jk,ik->i", G_slope, cov, G_slope))
        kappa = self.control.get("kappa", 1.0) if design.control else 1.0
        return pd.DataFrame(
            {"a": kappa * (-A + B * design.x_mean), "b": -kappa * B, "b_se": kappa * b_se},
            index=deals.index,
        )

    def predict(self, deals: pd.DataFrame, ratio: np.ndarray | pd.Series | None = None
                ) -> np.ndarray:
        """P(win) on the pricing curve at the given ratios (default: each deal's own ratio).

        NaN without a curve. This is the curve recommendations use; to check
        calibration on closed deals at the prices they were quoted, use
        `predict_observed`, which also conditions on what the quote reveals.
        """
        x = np.asarray(deals["ratio"] if ratio is None else ratio, float)
        params = self.curve(deals)
        return win_probability(params["a"].to_numpy(), params["b"].to_numpy(), x)

    def predict_observed(self, deals: pd.DataFrame) -> np.ndarray:
        """P(win | the deal's own quote, seller, segment): the model's forecast for a deal.

        Without a control function it equals `predict`. With one, the deal's first-stage
        residual v (how far the quote is from its seller's habit) enters, as it did in
        the fit; this is the probability a time-ordered hold-out can check.
        """
        if not (self.usable and self.design is not None and self.design.control
                and self.first_stage is not None and self.theta is not None):
            return self.predict(deals)
        prepared = self._prepare(deals)
        x = prepared["ratio"].to_numpy(float)
        v = self.first_stage.residual(prepared, x)
        return cast(np.ndarray, special.expit(self.design.matrix(prepared, x, v) @ self.theta))

    # -- explanation ----------------------------------------------------------

    def segment_effects(self) -> pd.DataFrame:
        """Each segment level's shift of the win log-odds and of the price sensitivity b."""
        if self._effects is None:
            self._effects = self._segment_effects()
        return self._effects

    def _segment_effects(self) -> pd.DataFrame:
        if not self.usable or self.design is None or self.theta is None \
                or not self.design.hierarchical:
            return pd.DataFrame(columns=["dimension", "level", "deals", "logit_shift", "b_shift"])
        q = self.design.n_levels
        rows, i = [], 0
        counts = {
            dim: self.history[dim].astype(str).value_counts() for dim in self.design.levels
        }
        for dim, values in self.design.levels.items():
            for value in values:
                rows.append({
                    "dimension": dim, "level": value, "deals": int(counts[dim].get(value, 0)),
                    "logit_shift": float(self.theta[2 + i]),
                    "b_shift": float(-self.theta[2 + q + i]),
                })
                i += 1
        return pd.DataFrame(rows)

    def explain(self, deal: pd.Series | None = None) -> str:
        """In words: the tenant's model (no deal) or why this deal gets its recommendation."""
        if deal is None:
            return self._explain_tenant()
        return _drivers(self, deal)

    def _explain_tenant(self) -> str:
        head = (f"{self.n_closed} priced closed deals ({self.n_won} won, {self.n_lost} lost).")
        missing = self.sampling.describe() if self.sampling is not None else None
        if missing:
            head = f"{head} {missing}"
        if not self.usable:
            return f"{head} No price curve: {'; '.join(self.reasons)}. Using segment bands."
        test = self.price_test
        lines = [
            head,
            f"Price effect: a 1-point discount changes the win odds by "
            f"{(math.exp(test['b'] / 100) - 1) * 100:.1f}% on average "
            f"(one-sided LR test p = {test['p_value']:.2g}).",
            f"Segment pooling (empirical Bayes): prior sd of intercept shifts "
            f"{1 / math.sqrt(self.lambdas[0]):.2f}, of sensitivity shifts "
            f"{1 / math.sqrt(self.lambdas[1]):.2f} (per unit of list price).",
            f"Price slope identified by: {self.identification}.",
        ]
        effects = self.segment_effects()
        if not effects.empty:
            ordered = effects.sort_values("b_shift")
            low, high = ordered.iloc[0], ordered.iloc[-1]
            lines.append(
                f"Least price-sensitive: {low['dimension']} = {low['level']}; most: "
                f"{high['dimension']} = {high['level']}."
            )
        return " ".join(lines)


def training_frame(deals: pd.DataFrame, config: PricingConfig
                   ) -> tuple[pd.DataFrame, tuple[float, float]]:
    """The priced closed deals a model is fitted on (with their size tercile), and the cuts.

    Everything a fit reads comes from this frame, so a model stored with its hash
    (`model_io`) is rebuilt from the same deals without refitting. That includes the
    missing-quote offset (column `OFFSET`), which the unpriced closed deals set: a
    changed quoting pattern changes the hash.
    """
    closed, cuts, _ = _training(deals, config)
    return closed, cuts


def _training(deals: pd.DataFrame, config: PricingConfig
              ) -> tuple[pd.DataFrame, tuple[float, float], QuoteSampling]:
    """`training_frame`, and how the priced deals were selected from the closed ones."""
    closed = deals[deals["is_closed"].astype(bool)]
    priced = closed["ratio"].notna()
    if "exclusion" in closed.columns:
        priced &= closed["exclusion"].isna()
    sampling, offset = quote_sampling(closed, priced.to_numpy(), config.instrument,
                                      config.sampling_min_deals, config.sampling_correction)
    closed = closed[priced.to_numpy()].copy()
    closed[OFFSET] = offset[priced.to_numpy()]
    cuts = deal_size_cuts(closed["list_total"])
    closed["deal_size"] = deal_size(closed["list_total"], cuts)
    for dim in config.dimensions:
        if dim not in closed.columns:
            closed[dim] = "Unknown"
    return closed, cuts, sampling


def fit_price_model(deals: pd.DataFrame, config: PricingConfig | None = None) -> PriceModel:
    """Fit the tenant's bid-response model on its priced closed deals (see module doc).

    `deals` is `features.build_deal_frame` output (or the same columns); only closed,
    priced rows (no `exclusion`) are used. Never raises for lack of data: the model
    then has `usable = False` and the reasons.
    """
    config = config or PricingConfig()
    closed, cuts, sampling = _training(deals, config)
    y = closed["is_won"].astype(bool).to_numpy(float)
    n_won, n_lost = int(y.sum()), int(len(y) - y.sum())
    bands = price_bands(closed, quantiles=config.band_quantiles, min_won=config.band_min_won,
                        low_quantile=config.range_quantiles[0])
    model = PriceModel(
        config=config, usable=False, reasons=[], n_closed=len(closed), n_won=n_won,
        n_lost=n_lost, deal_size_cuts=cuts, bands=bands, history=closed, sampling=sampling,
    )
    if len(closed):
        lo, hi = np.quantile(closed["ratio"].to_numpy(float), config.range_quantiles)
        model.ratio_range = (float(lo), float(hi))
    if n_lost == 0:
        model.reasons.append("no lost deal has a quoted price, so price cannot be told apart "
                             "from everything else that wins deals")
    elif n_lost < config.min_lost:
        model.reasons.append(f"only {n_lost} lost deals with a price (need {config.min_lost})")
    if n_won < config.min_won:
        model.reasons.append(f"only {n_won} won deals with a price (need {config.min_won})")
    if len(closed) < config.min_closed:
        model.reasons.append(f"only {len(closed)} priced closed deals (need {config.min_closed})")
    x = closed["ratio"].to_numpy(float)
    if len(closed) and float(np.std(x)) < 1e-3:
        model.reasons.append("every deal was quoted at the same price: no price variation")
    if model.reasons:
        return model

    levels = {
        dim: tuple(sorted(closed[dim].astype(str).unique())) for dim in config.dimensions
    } if config.hierarchical else {}
    design = _Design(float(x.mean()), levels, config.hierarchical)
    X = design.matrix(closed, x)
    # None, not zeros, when every closed deal is priced: the fit is then exactly as before.
    offset = closed[OFFSET].to_numpy(float)
    off = offset if np.any(offset != 0.0) else None
    if config.hierarchical:
        lam_a, lam_b, theta, _, H = _empirical_bayes(design, X, y, config, off)
    else:
        lam_a, lam_b = math.nan, math.nan
        theta, _, H = _newton(X, y, design.penalty(1.0, 1.0), offset=off)
    covariance = np.linalg.inv(H)
    v: np.ndarray | None = None
    if config.control_function:
        chosen = _control_function(model, closed, x, y, design, (lam_a, lam_b), theta, off)
        if chosen is not None:
            design, theta, covariance, v = chosen
    model.x_mean, model.design, model.theta, model.lambdas = design.x_mean, design, theta, (
        lam_a, lam_b)
    model.covariance = covariance
    model.price_test = _price_test(design, closed, x, y, lam_a if config.hierarchical else 1.0, v,
                                   off)
    if model.control.get("overid_p", 1.0) < config.overid_alpha:
        model.reasons.append(
            f"sellers differ in how often they win beyond what their prices explain "
            f"(over-identification test p = {model.control['overid_p']:.2g}): seller skill "
            "or who gets which deals confounds the price effect, so no curve can be trusted"
        )
    test = model.price_test
    if test["b"] <= 0:
        model.reasons.append(
            f"price has the wrong sign: higher quotes won more often (b = {test['b']:.2f}); "
            "discounts are probably given to harder deals, which the data does not show"
        )
    elif test["p_value"] >= config.alpha:
        model.reasons.append(
            f"no significant price effect (one-sided LR test p = {test['p_value']:.2g}, "
            f"need < {config.alpha:g})"
        )
    elif test["b"] > config.max_b:
        model.reasons.append(f"price separates wins from losses almost perfectly (b = "
                             f"{test['b']:.0f}): no reliable curve")
    model.usable = not model.reasons
    if model.usable and config.hierarchical:
        # The fall-back curve for segments whose own slope is not supported. It must pass
        # every check on its own (instrument, exogeneity, over-identification, price test).
        model.tenant_curve = fit_price_model(deals, replace(config, hierarchical=False))
    return model


def _control_function(
    model: PriceModel, closed: pd.DataFrame, x: np.ndarray, y: np.ndarray, naive: _Design,
    lambdas: tuple[float, float], naive_theta: np.ndarray, offset: np.ndarray | None = None,
) -> tuple[_Design, np.ndarray, np.ndarray, np.ndarray] | None:
    """Fit the control-function logit; return it if it is needed and usable, else None.

    Records diagnostics in `model.control` and the choice in `model.identification`.
    Steps: first stage (weak instrument → keep the naive fit, said so); win model with
    the first-stage residual v at the naive fit's prior precisions; Durbin–Wu–Hausman
    test of ρ = 0 (not rejected → the naive fit is consistent and more efficient, keep
    it); over-identification test (seller dummies added to the win model). The
    missing-quote `offset` enters every win-model fit, not the first stage.
    """
    config = model.config
    stage, why = _first_stage(closed, x, config)
    if stage is None:
        model.identification = f"naive: {why}"
        return None
    model.control.update(first_stage_f=stage.f_stat, sellers=float(stage.n_sellers),
                         sigma_v=stage.sigma)
    if stage.f_stat < config.min_first_stage_f:
        model.identification = (
            f"naive: weak instrument (sellers' habits explain little of the price, first-stage "
            f"F = {stage.f_stat:.1f} < {config.min_first_stage_f:g}); price confounding "
            "could not be checked")
        return None
    v = stage.residual(closed, x)
    design = _Design(naive.x_mean, naive.levels, naive.hierarchical, control=True)
    X = design.matrix(closed, x, v)
    lam_a, lam_b = (lambdas if naive.hierarchical else (1.0, 1.0))
    pen = design.penalty(lam_a, lam_b)
    theta, f_cf, H = _newton(X, y, pen, np.r_[naive_theta, 0.0], offset)
    rho = float(theta[-1])
    rho_se = float(np.sqrt(np.linalg.inv(H)[-1, -1]))
    z = rho / rho_se
    # Over-identification: do sellers win more or less than their prices explain?
    D = stage.seller_dummies(closed)
    drop = int(np.argmax(D.sum(axis=0)))  # one seller column is implied by x − v
    extra = np.delete(D, drop, axis=1)
    overid_p = 1.0
    if extra.shape[1] > 0:
        _, f_over, _ = _newton(np.hstack([X, extra]), y,
                               np.r_[pen, np.full(extra.shape[1], FIXED_EFFECT_PENALTY)],
                               np.r_[theta, np.zeros(extra.shape[1])], offset)
        overid_p = float(stats.chi2.sf(max(0.0, 2 * (f_cf - f_over)), extra.shape[1]))
    kappa = 1.0 / math.sqrt(1.0 + math.pi * (rho * stage.sigma) ** 2 / 8.0)
    model.control.update(rho=rho, rho_se=rho_se, rho_z=z, overid_p=overid_p,
                         overid_df=float(extra.shape[1]), kappa=kappa)
    if 2 * stats.norm.sf(abs(z)) >= config.exogeneity_alpha:
        model.identification = (
            f"naive: no sign that prices are confounded (control term z = {z:.1f}, first-stage "
            f"F = {stage.f_stat:.0f})")
        return None
    model.identification = (
        f"control function (seller habit as instrument, first-stage F = {stage.f_stat:.0f}; "
        f"control term z = {z:.1f})")
    model.first_stage = stage
    cov = _generated_regressor_cov(X, y, theta, H, stage.matrix(closed), stage.covariance,
                                   offset)
    return design, theta, cov, v

