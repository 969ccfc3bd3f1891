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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from accrue.analytics.features import priced_ratio
from accrue.analytics.guardrails import clamp, guardrails
from accrue.analytics.segments import (
    BAND_LEVELS,
    SEGMENT_DIMENSIONS,
    PriceBand,
    band_for,
    deal_size,
    deal_size_cuts,
    price_bands,
)

FIXED_EFFECT_PENALTY = 1e-6  # keeps the Hessian invertible under separation; otherwise inert


# --------------------------------------------------------------------------- optimum


def optimal_ratio(
    a: np.ndarray | float, b: np.ndarray | float, c: np.ndarray | float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form maximiser of (x − c)·P(x) for P(x) = 1/(1 + exp(a + b·x)), b > 0.

    Returns (x*, P(x*), expected margin at x*). Uses the Lambert W principal branch;
    the exponent is computed in log space so large arguments do not overflow.
    """
    a_, b_, c_ = np.broadcast_arrays(
        np.asarray(a, float), np.asarray(b, float), np.asarray(c, float)
    )
    if np.any(b_ <= 0):
        raise ValueError("the price sensitivity b must be > 0 for an interior optimum")
    log_z = -(a_ + b_ * c_) - 1.0
    # For huge z, W(z) = log z − log log z + ... ; lambertw(exp(700)) would overflow.
    w = special.lambertw(np.exp(np.minimum(log_z, 700.0))).real
    huge = log_z >= 700.0
    if np.any(huge):
        w = np.where(huge, _lambertw_of_exp(np.where(huge, log_z, 700.0)), w)
    x = c_ + (1.0 + w) / b_
    return x, w / (1.0 + w), w / b_


def _lambertw_of_exp(log_z: np.ndarray) -> np.ndarray:
    """W(exp(t)) for large t by Newton on w + log w = t (no overflow)."""
    t = np.asarray(log_z, float)
    w = np.maximum(t - np.log(np.maximum(t, 1.0)), 1.0)
    for _ in range(50):
        w = w - (w + np.log(w) - t) / (1.0 + 1.0 / w)
    return w


def win_probability(a: np.ndarray | float, b: np.ndarray | float, x: np.ndarray | float
                    ) -> np.ndarray:
    """P(win | x) = 1/(1 + exp(a + b·x)), computed without overflow."""
    return special.expit(-(np.asarray(a, float) + np.asarray(b, float) * np.asarray(x, float)))


def numeric_optimum(a: float, b: float, c: float = 0.0, lo: float = 0.0, hi: float = 10.0
                    ) -> float:
    """Bounded 1-D search for the maximiser of (x − c)·P(x): the check on the closed form."""
    result = optimize.minimize_scalar(
        lambda x: -(x - c) * float(win_probability(a, b, x)),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-10, "maxiter": 500},
    )
    return float(result.x)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class PricingConfig:
    """Thresholds of the model; defaults are conservative (fall back rather than guess)."""

    dimensions: tuple[str, ...] = SEGMENT_DIMENSIONS
    min_closed: int = 40  # priced closed deals needed for any curve
    min_lost: int = 10  # priced lost deals needed: without losses price cannot be learned
    min_won: int = 10
    alpha: float = 0.01  # one-sided level of the tenant-wide price test
    # A segment whose posterior P(b > 0) is below 1 − segment_alpha gets the band instead.
    # Looser than `alpha`: the tenant test already established the effect; this catches
    # segments whose own data pull the sensitivity to zero or below.
    segment_alpha: float = 0.05
    max_b: float = 200.0  # steeper than this (per unit of list) means separation, not a curve
    band_quantiles: tuple[float, float, float] = (0.2, 0.5, 0.8)  # Floor, Target, Start
    band_min_won: int = 12
    range_quantiles: tuple[float, float] = (0.02, 0.98)  # observed range for guardrails
    range_margin: float = 0.02  # how far outside the observed range we still quote
    log10_lambda_grid: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0)
    log10_lambda_bounds: tuple[float, float] = (-3.0, 6.0)
    hierarchical: bool = True  # False: one tenant-wide curve (the pooled baseline)
    n_comparables: int = 3
    # Control function (see module doc): seller identity as the instrument for price.
    control_function: bool = True
    instrument: str = "owner_id"
    min_seller_deals: int = 15  # sellers with fewer deals share one reference group
    min_first_stage_f: float = 10.0  # below: weak instrument, no correction possible
    exogeneity_alpha: float = 0.05  # two-sided test of the control term (Durbin–Wu–Hausman)
    overid_alpha: float = 0.01  # sellers' direct effect on winning (instrument validity)


# --------------------------------------------------------------------------- fitting


def _nll_grad_hess(
    theta: np.ndarray, X: np.ndarray, y: np.ndarray, pen: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """Penalised negative log-likelihood of the win logit, its gradient and Hessian."""
    u = X @ theta
    mu = special.expit(u)
    nll = float(np.sum(np.logaddexp(0.0, u) - y * u) + 0.5 * np.sum(pen * theta**2))
    grad = X.T @ (mu - y) + pen * theta
    hess = (X * (mu * (1 - mu))[:, None]).T @ X + np.diag(pen)
    return nll, grad, hess


def _newton(X: np.ndarray, y: np.ndarray, pen: np.ndarray, theta0: np.ndarray | None = None
            ) -> tuple[np.ndarray, float, np.ndarray]:
    """Damped Newton on the (strictly convex) penalised objective; returns θ̂, f(θ̂), H(θ̂)."""
    theta = np.zeros(X.shape[1]) if theta0 is None else theta0.copy()
    f, g, H = _nll_grad_hess(theta, X, y, pen)
    for _ in range(100):
        step = np.linalg.solve(H, g)
        t = 1.0
        while True:
            candidate = theta - t * step
            f_new, g_new, H_new = _nll_grad_hess(candidate, X, y, pen)
            if f_new <= f - 1e-4 * t * float(g @ step) or t < 1e-8:
                break
            t *= 0.5
        converged = abs(f - f_new) < 1e-10 * (1 + abs(f))
        theta, f, g, H = candidate, f_new, g_new, H_new
        if converged and float(np.max(np.abs(g))) < 1e-6:
            break
    return theta, f, H


@dataclass(frozen=True)
class _Design:
    """How deals become model columns: [1, x − x̄, level one-hots, one-hots·(x − x̄), (v)].

    With `control`, the last column is the first-stage residual v of the control function.
    """

    x_mean: float
    levels: dict[str, tuple[str, ...]]
    hierarchical: bool
    control: bool = False

    @property
    def n_levels(self) -> int:
        return sum(len(v) for v in self.levels.values()) if self.hierarchical else 0

    def onehots(self, deals: pd.DataFrame) -> np.ndarray:
        blocks = []
        for dim, values in self.levels.items():
            column = deals[dim].astype(str).to_numpy()
            blocks.append((column[:, None] == np.asarray(values)[None, :]).astype(float))
        return np.hstack(blocks) if blocks else np.zeros((len(deals), 0))

    def matrix(self, deals: pd.DataFrame, x: np.ndarray, v: np.ndarray | None = None
               ) -> np.ndarray:
        xc = (np.asarray(x, float) - self.x_mean)[:, None]
        cols = [np.ones_like(xc), xc]
        if self.hierarchical:
            Z = self.onehots(deals)
            cols += [Z, Z * xc]
        if self.control:
            cols.append(np.zeros_like(xc) if v is None else np.asarray(v, float)[:, None])
        return np.hstack(cols)

    def penalty(self, lam_a: float, lam_b: float) -> np.ndarray:
        q = self.n_levels
        return np.concatenate([
            [FIXED_EFFECT_PENALTY, FIXED_EFFECT_PENALTY], np.full(q, lam_a), np.full(q, lam_b),
            [FIXED_EFFECT_PENALTY] if self.control else [],
        ])


@dataclass(frozen=True)
class FirstStage:
    """OLS of the price ratio on seller identity (the instrument) and segment controls.

    Its residual v is the part of a quote that neither the seller's habit nor the
    segment explains; under the control-function assumption it carries everything the
    price knows about the deal's hidden difficulty, so adding v to the win model
    removes the confounding of the price slope.
    """

    instrument: str
    sellers: tuple[str, ...]  # own column each; the rest (and unseen sellers) are the base
    levels: dict[str, tuple[str, ...]]  # segment levels; the first of each is the base
    coef: np.ndarray
    covariance: np.ndarray  # of coef, homoskedastic OLS
    sigma: float  # residual standard deviation
    f_stat: float  # partial F of the seller columns given the segments
    df: tuple[int, int]
    n_sellers: int  # seller groups, the base group included

    def controls(self, deals: pd.DataFrame) -> np.ndarray:
        """[1, segment dummies] — the exogenous part shared with the win model."""
        blocks = [np.ones((len(deals), 1))]
        for dim, values in self.levels.items():
            column = deals[dim].astype(str).to_numpy()
            blocks.append((column[:, None] == np.asarray(values[1:])[None, :]).astype(float))
        return np.hstack(blocks)

    def seller_dummies(self, deals: pd.DataFrame) -> np.ndarray:
        column = deals[self.instrument].astype(str).to_numpy() if self.instrument in deals \
            else np.full(len(deals), "")
        return (column[:, None] == np.asarray(self.sellers)[None, :]).astype(float)

    def matrix(self, deals: pd.DataFrame) -> np.ndarray:
        return np.hstack([self.controls(deals), self.seller_dummies(deals)])

    def residual(self, deals: pd.DataFrame, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, float) - self.matrix(deals) @ self.coef


def _first_stage(closed: pd.DataFrame, x: np.ndarray, config: PricingConfig
                 ) -> tuple[FirstStage | None, str | None]:
    """Fit the first stage; (None, why) when there is no usable instrument column."""
    if config.instrument not in closed.columns or closed[config.instrument].isna().all():
        return None, f"no {config.instrument} column to use as an instrument"
    counts = closed[config.instrument].astype(str).value_counts()
    big = sorted(counts[counts >= config.min_seller_deals].index)
    small_total = int(counts[counts < config.min_seller_deals].sum())
    # The base group is the pooled small sellers, or else the first big one.
    sellers = tuple(big if small_total > 0 else big[1:])
    if len(sellers) == 0:
        return None, (f"fewer than 2 sellers with ≥ {config.min_seller_deals} deals: seller "
                      "habit cannot serve as an instrument")
    levels = {dim: tuple(sorted(closed[dim].astype(str).unique())) for dim in config.dimensions}
    stage = FirstStage(config.instrument, sellers, levels, np.zeros(0), np.zeros((0, 0)),
                       math.nan, math.nan, (0, 0), len(sellers) + 1)
    W = stage.matrix(closed)
    C = stage.controls(closed)
    coef, *_ = np.linalg.lstsq(W, x, rcond=None)
    rss = float(np.sum((x - W @ coef) ** 2))
    coef_r, *_ = np.linalg.lstsq(C, x, rcond=None)
    rss_r = float(np.sum((x - C @ coef_r) ** 2))
    k = int(np.linalg.matrix_rank(W))
    q = k - int(np.linalg.matrix_rank(C))
    df2 = len(x) - k
    if q <= 0 or df2 <= 0 or rss <= 0:
        return None, "seller identity adds nothing to the segments in explaining the price"
    f_stat = ((rss_r - rss) / q) / (rss / df2)
    sigma2 = rss / df2
    return FirstStage(config.instrument, sellers, levels, coef,
                      sigma2 * np.linalg.pinv(W.T @ W), math.sqrt(sigma2), float(f_stat),
                      (q, df2), len(sellers) + 1), None


def _first_stage_jacobian(X: np.ndarray, y: np.ndarray, theta: np.ndarray, H: np.ndarray,
                          W: np.ndarray) -> np.ndarray:
    """dθ̂/dπ: how the win-model fit moves with the first-stage coefficients.

    v = x − Wπ is the last column of X. θ̂ solves g(θ, π) = 0 with g the penalised
    score, so by the implicit-function theorem dθ̂/dπ = −H⁻¹ ∂g/∂π.
    """
    mu = special.expit(X @ theta)
    w = mu * (1 - mu)
    dg = -(X.T @ (w[:, None] * W)) * float(theta[-1])
    dg[-1, :] -= (mu - y) @ W
    return -np.linalg.solve(H, dg)


def _generated_regressor_cov(X: np.ndarray, y: np.ndarray, theta: np.ndarray, H: np.ndarray,
                             W: np.ndarray, cov_pi: np.ndarray) -> np.ndarray:
    """Posterior covariance of θ plus the first stage's uncertainty (delta method).

    v is estimated, so θ̂ inherits π̂'s error: Cov = H⁻¹ + J Cov(π̂) Jᵀ with
    J = dθ̂/dπ. The Murphy–Topel cross term vanishes when the win model is correctly
    specified given (x, v, segments). A Monte Carlo check is in docs/pricing-model.md.
    """
    J = _first_stage_jacobian(X, y, theta, H, W)
    return np.linalg.inv(H) + J @ cov_pi @ J.T


def _log_marginal(f: float, H: np.ndarray, q: int, lam_a: float, lam_b: float) -> float:
    """Laplace approximation of log p(y | λa, λb), up to a constant."""
    sign, logdet = np.linalg.slogdet(H)
    if sign <= 0:
        return -math.inf
    return -f + 0.5 * q * (math.log(lam_a) + math.log(lam_b)) - 0.5 * logdet


def _empirical_bayes(
    design: _Design, X: np.ndarray, y: np.ndarray, config: PricingConfig
) -> tuple[float, float, np.ndarray, float, np.ndarray]:
    """Prior precisions (λa, λb) maximising the Laplace marginal likelihood; and the fit."""
    q = design.n_levels
    cache: dict[tuple[float, float], tuple[float, np.ndarray, float, np.ndarray]] = {}
    warm: list[np.ndarray] = []
    lo, hi = config.log10_lambda_bounds

    def evaluate(log_a: float, log_b: float) -> float:
        key = (round(float(np.clip(log_a, lo, hi)), 6), round(float(np.clip(log_b, lo, hi)), 6))
        if key not in cache:
            lam_a, lam_b = 10 ** key[0], 10 ** key[1]
            theta, f, H = _newton(X, y, design.penalty(lam_a, lam_b), warm[-1] if warm else None)
            warm.append(theta)
            cache[key] = (_log_marginal(f, H, q, lam_a, lam_b), theta, f, H)
        return -cache[key][0]

    grid = config.log10_lambda_grid
    best = min(((la, lb) for la in grid for lb in grid), key=lambda p: evaluate(*p))
    optimize.minimize(
        lambda v: evaluate(v[0], v[1]),
        np.asarray(best, float),
        method="Nelder-Mead",
        options={"xatol": 0.05, "fatol": 1e-3, "maxfev": 60, "initial_simplex": [
            best, (best[0] + 0.5, best[1]), (best[0], best[1] + 0.5)]},
    )
    key = min(cache, key=lambda k: -cache[k][0])
    _, theta, f, H = cache[key]
    return 10 ** key[0], 10 ** key[1], theta, f, H


def _price_test(
    design: _Design, deals: pd.DataFrame, x: np.ndarray, y: np.ndarray, lam_a: float,
    v: np.ndarray | None = None,
) -> dict[str, float]:
    """One-sided likelihood-ratio test of 'price lowers the win chance' (b > 0).

    Both models keep the segment intercepts (with the empirical-Bayes penalty, so
    segment mix is not mistaken for a price effect) and, with a control function, the
    control v; the alternative adds one tenant-wide price slope. The signed root of the
    LR statistic is ~N(0, 1) under H0 (conditional on the first stage).
    """
    X = design.matrix(deals, x, v)
    q = design.n_levels
    keep_alt = np.r_[[True, True], np.ones(q, bool), np.zeros(q, bool),
                     np.ones(int(design.control), bool)]
    keep_null = keep_alt.copy()
    keep_null[1] = False
    pen_full = design.penalty(lam_a, 1.0)
    theta_alt, f_alt, H_alt = _newton(X[:, keep_alt], y, pen_full[keep_alt])
    _, f_null, _ = _newton(X[:, keep_null], y, pen_full[keep_null])
    lr = max(0.0, 2.0 * (f_null - f_alt))
    slope = float(theta_alt[1])  # d logit(win) / d ratio: negative when price hurts
    root = math.copysign(math.sqrt(lr), -slope)
    se = float(np.sqrt(np.linalg.inv(H_alt)[1, 1]))
    return {
        "b": -slope,
        "se": se,
        "wald_z": -slope / se if se > 0 else math.nan,
        "lr": lr,
        "p_value": float(stats.norm.sf(root)),
    }


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
        return special.expit(self.design.matrix(prepared, x, v) @ self.theta)

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


def fit_price_model(deals: pd.DataFrame, config: PricingConfig | None = None) -> PriceModel:
    """Fit the tenant's bid-response model on its priced closed deals (see module doc).

    `deals` is `features.build_deal_frame` output (or the same columns); only closed,
    priced rows (no `exclusion`) are used. Never raises for lack of data: the model
    then has `usable = False` and the reasons.
    """
    config = config or PricingConfig()
    closed = deals[deals["is_closed"].astype(bool)]
    if "exclusion" in closed.columns:
        closed = closed[closed["exclusion"].isna()]
    closed = closed[closed["ratio"].notna()].copy()
    cuts = deal_size_cuts(closed["list_total"])
    closed["deal_size"] = deal_size(closed["list_total"], cuts)
    for dim in config.dimensions:
        if dim not in closed.columns:
            closed[dim] = "Unknown"
    y = closed["is_won"].astype(bool).to_numpy(float)
    n_won, n_lost = int(y.sum()), int(len(y) - y.sum())
    bands = price_bands(closed, quantiles=config.band_quantiles, min_won=config.band_min_won,
                        low_quantile=config.range_quantiles[0])
    model = PriceModel(
        config=config, usable=False, reasons=[], n_closed=len(closed), n_won=n_won,
        n_lost=n_lost, deal_size_cuts=cuts, bands=bands, history=closed,
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
    if config.hierarchical:
        lam_a, lam_b, theta, _, H = _empirical_bayes(design, X, y, config)
    else:
        lam_a, lam_b = math.nan, math.nan
        theta, _, H = _newton(X, y, design.penalty(1.0, 1.0))
    covariance = np.linalg.inv(H)
    v: np.ndarray | None = None
    if config.control_function:
        chosen = _control_function(model, closed, x, y, design, (lam_a, lam_b), theta)
        if chosen is not None:
            design, theta, covariance, v = chosen
    model.x_mean, model.design, model.theta, model.lambdas = design.x_mean, design, theta, (
        lam_a, lam_b)
    model.covariance = covariance
    model.price_test = _price_test(design, closed, x, y, lam_a if config.hierarchical else 1.0, v)
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
    lambdas: tuple[float, float], naive_theta: np.ndarray,
) -> tuple[_Design, np.ndarray, np.ndarray, np.ndarray] | None:
    """Fit the control-function logit; return it if it is needed and usable, else None.

    Records diagnostics in `model.control` and the choice in `model.identification`.
    Steps: first stage (weak instrument → keep the naive fit, said so); win model with
    the first-stage residual v at the naive fit's prior precisions; Durbin–Wu–Hausman
    test of ρ = 0 (not rejected → the naive fit is consistent and more efficient, keep
    it); over-identification test (seller dummies added to the win model).
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
    theta, f_cf, H = _newton(X, y, pen, np.r_[naive_theta, 0.0])
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
                               np.r_[theta, np.zeros(extra.shape[1])])
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
    cov = _generated_regressor_cov(X, y, theta, H, stage.matrix(closed), stage.covariance)
    return design, theta, cov, v


# --------------------------------------------------------------------------- recommending


def recommend(model: PriceModel, open_deals: pd.DataFrame, *, use_cost: bool = True,
              explain: bool = True) -> pd.DataFrame:
    """A recommendation per open deal (one row each; see docs/pricing-model.md for columns).

    Deals get the model optimum when the tenant's curve and their segment's price
    sensitivity pass the checks ("model"); when only the segment check fails, the
    optimum of the tenant-wide curve if that passes its own checks ("tenant_curve");
    otherwise their segment band's Target ("segment band"). Both fall-backs state why.
    A deal without a list value, or without curve and band, is still a row ("excluded",
    no price, the reason in `fallback_reason`): every open deal is accounted for.
    Win probabilities and uplifts are model-based estimates, never observed outcomes.
    """
    deals = model._prepare(open_deals.reset_index(drop=True))
    deals["ratio"] = priced_ratio(deals)  # a missing or $0 quote has no current price
    n = len(deals)
    current = deals["ratio"].to_numpy(float)
    list_total = deals["list_total"].to_numpy(float)
    cost = deals["cost_ratio"].to_numpy(float) if use_cost and "cost_ratio" in deals.columns \
        else np.full(n, np.nan)
    c = np.nan_to_num(cost, nan=0.0)
    objective = np.where(np.isnan(cost), "expected revenue", "expected margin")
    params = model.curve(deals)
    a, b, b_se = (params[k].to_numpy(float) for k in ("a", "b", "b_se"))
    z_crit = stats.norm.isf(model.config.segment_alpha)
    with np.errstate(invalid="ignore", divide="ignore"):
        segment_ok = model.usable & (b > 0) & (b / b_se >= z_crit)
    seg_b, seg_b_se = b.copy(), b_se.copy()
    tenant = model.tenant_curve
    tenant_ok = np.zeros(n, bool)
    t_b = t_se = np.full(n, np.nan)
    if tenant is not None and tenant.usable and not segment_ok.all():
        t_params = tenant.curve(deals)
        t_a, t_b, t_se = (t_params[k].to_numpy(float) for k in ("a", "b", "b_se"))
        with np.errstate(invalid="ignore", divide="ignore"):
            tenant_ok = ~segment_ok & (t_b > 0) & (t_b / t_se >= z_crit)
        a, b, b_se = (np.where(tenant_ok, t, s) for t, s in ((t_a, a), (t_b, b), (t_se, b_se)))
    curve_ok = segment_ok | tenant_ok
    bands = _bands_for(model, deals)
    minimum = deals["min_ratio"].to_numpy(float) if "min_ratio" in deals.columns \
        else np.full(n, np.nan)
    rails = guardrails(model.ratio_range, model.config.range_quantiles,
                       model.config.range_margin, bands, cost, minimum)
    target = np.array([bd.target if bd else np.nan for bd in bands])

    unclamped = np.full(n, np.nan)
    if curve_ok.any():
        unclamped[curve_ok] = optimal_ratio(a[curve_ok], b[curve_ok], c[curve_ok])[0]
    proposal = np.where(curve_ok, unclamped, target)
    what = np.where(segment_ok, "the model's optimum",
                    np.where(tenant_ok, "the tenant-wide curve's optimum", "the segment's target"))
    recommended, clamp_label, clamp_words = clamp(proposal, rails, list(what))
    # Not priced: no list value to price against, or neither a curve nor a band.
    excluded = ~(list_total > 0) | np.isnan(recommended)
    proposal, recommended = (np.where(excluded, np.nan, v) for v in (proposal, recommended))
    clamp_label = np.where(excluded, None, clamp_label)  # type: ignore[call-overload]
    clamp_words = [None if excluded[i] else w for i, w in enumerate(clamp_words)]
    p_now = np.where(curve_ok, win_probability(a, b, current), np.nan)
    p_rec = np.where(curve_ok, win_probability(a, b, recommended), np.nan)
    margin_now = list_total * (current - c) * p_now
    margin_rec = list_total * (recommended - c) * p_rec

    exclusion = deals["exclusion"].to_numpy(object) if "exclusion" in deals.columns \
        else np.full(n, None, dtype=object)
    reasons: list[str | None] = []
    for i in range(n):
        if excluded[i]:
            reasons.append(_not_priced(model, exclusion[i], bool(list_total[i] > 0)))
        elif segment_ok[i]:
            reasons.append(None)
        elif not model.usable:
            reasons.append("; ".join(model.reasons))
        else:
            why = (f"price sensitivity in this segment is not distinguishable from zero "
                   f"(b = {seg_b[i]:.2f} ± {seg_b_se[i]:.2f})")
            if tenant_ok[i]:
                assert tenant is not None  # tenant_ok is all False without a tenant curve
                why += (f"; priced on the tenant-wide curve (b = {b[i]:.2f} ± {b_se[i]:.2f}, "
                        f"one-sided LR test p = {tenant.price_test['p_value']:.2g})")
            elif tenant is None:
                why += "; no tenant-wide curve was fitted"
            elif not tenant.usable:
                why += ("; the tenant-wide curve is not supported either ("
                        + "; ".join(tenant.reasons) + ")")
            else:
                why += (f"; nor is the tenant-wide curve's for this deal "
                        f"(b = {t_b[i]:.2f} ± {t_se[i]:.2f})")
            reasons.append(why)
    out = pd.DataFrame({
        "opportunity_id": deals["opportunity_id"].to_numpy() if "opportunity_id" in deals
        else np.arange(n),
        "method": np.where(excluded, "excluded", np.where(
            segment_ok, "model", np.where(tenant_ok, "tenant_curve", "segment band"))),
        "fallback_reason": reasons,
        "objective": objective,
        "list_total": list_total,
        "current_price": list_total * current,
        "current_discount": 1 - current,
        "recommended_price": list_total * recommended,
        "recommended_ratio": recommended,
        "recommended_discount": 1 - recommended,
        "unclamped_ratio": proposal,
        "clamp": clamp_label,
        "clamp_reason": clamp_words,
        "win_probability_current": p_now,
        "win_probability_recommended": p_rec,
        "expected_value_current": margin_now,
        "expected_value_recommended": margin_rec,
        "expected_uplift": margin_rec - margin_now,
        "band_segment": [bd.describe() if bd else None for bd in bands],
        "band_floor": [bd.floor if bd else np.nan for bd in bands],
        "band_target": target,
        "band_start": [bd.start if bd else np.nan for bd in bands],
        "band_won_deals": [bd.won_deals if bd else 0 for bd in bands],
        "b": b,
        "b_se": b_se,
        "identification": np.where(
            segment_ok, model.identification,
            # numpy's stubs reject None as np.where's x/y; numpy takes it as an object.
            np.where(tenant_ok, tenant.identification if tenant else None,  # type: ignore[arg-type]
                     None)),
    })
    if explain:
        rows = [row for _, row in deals.iterrows()]
        out["drivers"] = [
            None if excluded[i] else
            _drivers(tenant if tenant is not None and tenant_ok[i] else model, rows[i],
                     recommended[i] if curve_ok[i] else None, (a[i], b[i]))
            + (f" Guardrail: {clamp_words[i]}." if clamp_words[i] else "")
            for i in range(n)
        ]
        out["comparables"] = [
            " | ".join(_comparables(model, rows[i], model.config.n_comparables))
            for i in range(n)
        ]
    return out


def _not_priced(model: PriceModel, exclusion: object, has_list: bool) -> str:
    """Why an open deal gets no recommended price, in words (its row says so; never dropped)."""
    if not has_list:
        why = exclusion if isinstance(exclusion, str) and exclusion else "no list value"
        return (f"not priced: {why}; a recommended price needs the deal's list value, from "
                "its line items (the band, if any, is in % of list)")
    return ("not priced: no price curve (" + "; ".join(model.reasons or ["none fitted"])
            + ") and no won deal with a price to give a band")


def _bands_for(model: PriceModel, deals: pd.DataFrame) -> list[PriceBand | None]:
    """Each deal's most specific band, by a merge per hierarchy level (no per-row lookups)."""
    found: list[PriceBand | None] = [None] * len(deals)
    for level in BAND_LEVELS:
        keys = zip(*(deals[d].astype(str) for d in level), strict=True) if level \
            else iter([()] * len(deals))
        for i, key in enumerate(keys):
            if found[i] is None:
                found[i] = model.bands.get((level, tuple(key)))
    return found


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def _drivers(model: PriceModel, deal: pd.Series, recommended: float | None = None,
             curve: tuple[float, float] | None = None) -> str:
    """What moves this deal's win chance, in words a seller reads in five seconds."""
    if not model.usable or model.design is None or model.theta is None:
        band = band_for(deal, model.bands)
        where = f" for {band.describe()}" if band else ""
        return (f"No reliable price curve ({'; '.join(model.reasons)}); guidance is the "
                f"range of won prices{where}.")
    if curve is None:
        params = model.curve(model._prepare(deal.to_frame().T)).iloc[0]
        curve = (float(params["a"]), float(params["b"]))
    a, b = curve
    x = float(deal["ratio"]) if pd.notna(deal.get("ratio")) else model.x_mean
    parts = []
    if b > 0:
        p0 = float(win_probability(a, b, x))
        p1 = float(win_probability(a, b, x - 0.05))
        parts.append(f"5 points more discount moves the win chance from {_pct(p0)} to "
                     f"{_pct(p1)}")
    else:
        parts.append("no price sensitivity detectable for deals like this one")
    if recommended is not None and abs(recommended - x) > 0.005:
        verb = "lower" if recommended < x else "higher"
        parts.append(f"recommended quote is {_pct(abs(recommended - x))} of list {verb}")
    effects = model.segment_effects()
    if not effects.empty:
        levels = [str(deal.get(d)) for d in effects["dimension"]]
        mine = effects[effects["level"].to_numpy() == np.asarray(levels, dtype=object)]
        by_level = mine.reindex(mine["logit_shift"].abs().sort_values(ascending=False).index)
        for _, eff in by_level.head(2).iterrows():
            if abs(eff["logit_shift"]) < 0.1:
                continue
            direction = "more" if eff["logit_shift"] > 0 else "less"
            parts.append(f"{eff['level']} ({eff['dimension'].replace('_', ' ')}) deals win "
                         f"{direction} often than average at the same price")
        by_sens = mine.reindex(mine["b_shift"].abs().sort_values(ascending=False).index)
        for _, eff in by_sens.head(1).iterrows():
            if abs(eff["b_shift"]) >= 0.15 * max(model.price_test.get("b", 1.0), 1e-9):
                direction = "more" if eff["b_shift"] > 0 else "less"
                parts.append(f"{eff['level']} ({eff['dimension'].replace('_', ' ')}) buyers "
                             f"are {direction} price-sensitive than average")
    return "; ".join(parts) + "."


def _comparables(model: PriceModel, deal: pd.Series, k: int) -> list[str]:
    """A few closed deals like this one: same industry, size band (and family), nearest size."""
    history = model.history
    if history.empty or k <= 0:
        return []
    pool = np.ones(len(history), bool)
    for dims in (("industry", "size_band", "family"), ("industry", "size_band"), ("size_band",)):
        same = np.ones(len(history), bool)
        for dim in dims:
            same &= history[dim].astype(str).to_numpy() == str(deal.get(dim))
        if same.sum() >= k:
            pool = same
            break
    chosen = history[pool]
    size = float(deal.get("list_total", np.nan))
    if math.isfinite(size) and size > 0:
        distance = np.abs(np.log(chosen["list_total"].clip(lower=1.0).to_numpy(float))
                          - math.log(size))
        chosen = chosen.iloc[np.argsort(distance, kind="stable")[:k]]
    else:
        chosen = chosen.sort_values("close_date", ascending=False).head(k)
    out = []
    for other in chosen.itertuples():
        when = other.close_date.date().isoformat() if pd.notna(other.close_date) else "?"
        out.append(
            f"{'Won' if other.is_won else 'Lost'} at {_pct(1 - other.ratio)} off list "
            f"({other.list_total:,.0f} list; {other.industry}, {other.size_band}; "
            f"closed {when})"
        )
    return out


def describe_segments(model: PriceModel, dims: Sequence[str] = ("industry", "size_band")
                      ) -> pd.DataFrame:
    """Fitted curve per observed segment combination: a table for the Dagster UI preview."""
    if model.history.empty:
        return pd.DataFrame()
    combos = model.history.groupby(list(dims), as_index=False).agg(
        deals=("is_won", "size"), win_rate=("is_won", "mean"), median_ratio=("ratio", "median"))
    probe = combos.copy()
    for dim in model.config.dimensions:
        if dim not in probe.columns:
            probe[dim] = "(all)"  # an unseen level: the tenant-wide effect of that dimension
    probe["ratio"] = probe["median_ratio"]
    params = model.curve(probe)
    return pd.concat([combos, params[["a", "b", "b_se"]]], axis=1)


def _as_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-friendly rows (NaN → None) for writing to a warehouse table later."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")
