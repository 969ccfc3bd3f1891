"""The numerical pieces of the price model's fit, apart from the model that uses them.

Penalised logit by damped Newton, the design matrix of the partially pooled curve, the
control function's first stage and its delta-method covariance, the empirical-Bayes
choice of the prior precisions and the one-sided price test. `pricing.fit_price_model`
puts them together; the reasons for each choice are in `pricing`'s module doc and in
docs/pricing-model.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from accrue.analytics.segments import SEGMENT_DIMENSIONS

FIXED_EFFECT_PENALTY = 1e-6  # keeps the Hessian invertible under separation; otherwise inert


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
    # Quotes missing by outcome (see `quote_sampling`): offset log(r_won / r_lost) per seller
    # group on the win log-odds of every fit; sellers with fewer closed deals share a group.
    sampling_correction: bool = True
    sampling_min_deals: int = 15


# --------------------------------------------------------------------------- fitting


def _nll_grad_hess(
    theta: np.ndarray, X: np.ndarray, y: np.ndarray, pen: np.ndarray,
    offset: np.ndarray | None = None,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Penalised negative log-likelihood of the win logit, its gradient and Hessian.

    `offset` (per deal, on the win log-odds) corrects for quotes missing by outcome
    (`quote_sampling`); None, not zeros, when there is nothing to correct, so such a fit
    is the same computation as before the correction existed.
    """
    u = X @ theta if offset is None else X @ theta + offset
    mu = special.expit(u)
    nll = float(np.sum(np.logaddexp(0.0, u) - y * u) + 0.5 * np.sum(pen * theta**2))
    grad = X.T @ (mu - y) + pen * theta
    hess = (X * (mu * (1 - mu))[:, None]).T @ X + np.diag(pen)
    return nll, grad, hess


def _newton(X: np.ndarray, y: np.ndarray, pen: np.ndarray, theta0: np.ndarray | None = None,
            offset: np.ndarray | None = None) -> tuple[np.ndarray, float, np.ndarray]:
    """Damped Newton on the (strictly convex) penalised objective; returns θ̂, f(θ̂), H(θ̂)."""
    theta = np.zeros(X.shape[1]) if theta0 is None else theta0.copy()
    f, g, H = _nll_grad_hess(theta, X, y, pen, offset)
    for _ in range(100):
        step = np.linalg.solve(H, g)
        t = 1.0
        while True:
            candidate = theta - t * step
            f_new, g_new, H_new = _nll_grad_hess(candidate, X, y, pen, offset)
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
        same = column[:, None] == np.asarray(self.sellers)[None, :]
        return cast(np.ndarray, same.astype(float))

    def matrix(self, deals: pd.DataFrame) -> np.ndarray:
        return np.hstack([self.controls(deals), self.seller_dummies(deals)])

    def residual(self, deals: pd.DataFrame, x: np.ndarray) -> np.ndarray:
        return cast(np.ndarray, np.asarray(x, float) - self.matrix(deals) @ self.coef)


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
                          W: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
    """dθ̂/dπ: how the win-model fit moves with the first-stage coefficients.

    v = x − Wπ is the last column of X. θ̂ solves g(θ, π) = 0 with g the penalised
    score, so by the implicit-function theorem dθ̂/dπ = −H⁻¹ ∂g/∂π.
    """
    mu = special.expit(X @ theta if offset is None else X @ theta + offset)
    w = mu * (1 - mu)
    dg = -(X.T @ (w[:, None] * W)) * float(theta[-1])
    dg[-1, :] -= (mu - y) @ W
    return -np.linalg.solve(H, dg)


def _generated_regressor_cov(X: np.ndarray, y: np.ndarray, theta: np.ndarray, H: np.ndarray,
                             W: np.ndarray, cov_pi: np.ndarray,
                             offset: np.ndarray | None = None) -> np.ndarray:
    """Posterior covariance of θ plus the first stage's uncertainty (delta method).

    v is estimated, so θ̂ inherits π̂'s error: Cov = H⁻¹ + J Cov(π̂) Jᵀ with
    J = dθ̂/dπ. The Murphy–Topel cross term vanishes when the win model is correctly
    specified given (x, v, segments). A Monte Carlo check is in docs/pricing-model.md.
    """
    J = _first_stage_jacobian(X, y, theta, H, W, offset)
    return cast(np.ndarray, np.linalg.inv(H) + J @ cov_pi @ J.T)


def _log_marginal(f: float, H: np.ndarray, q: int, lam_a: float, lam_b: float) -> float:
    """Laplace approximation of log p(y | λa, λb), up to a constant."""
    sign, logdet = np.linalg.slogdet(H)
    if sign <= 0:
        return -math.inf
    return cast(float, -f + 0.5 * q * (math.log(lam_a) + math.log(lam_b)) - 0.5 * logdet)


def _empirical_bayes(
    design: _Design, X: np.ndarray, y: np.ndarray, config: PricingConfig,
    offset: np.ndarray | None = None,
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
            theta, f, H = _newton(X, y, design.penalty(lam_a, lam_b), warm[-1] if warm else None,
                                  offset)
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
    v: np.ndarray | None = None, offset: np.ndarray | None = None,
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
    theta_alt, f_alt, H_alt = _newton(X[:, keep_alt], y, pen_full[keep_alt], offset=offset)
    _, f_null, _ = _newton(X[:, keep_null], y, pen_full[keep_null], offset=offset)
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
