"""The optimal quote on a logit bid-response curve: closed form, and the search that checks it.

Expected margin (x − c)·P(win | x) with P = 1/(1 + exp(a + b·x)) has the closed form
x* = c + (1 + W)/b, W = LambertW(exp(−(a + b·c) − 1)) (principal branch). Kept apart
from the fitting so the evaluation and the tests can use it without a model.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from scipy import optimize, special


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
    return cast(np.ndarray, w)


def win_probability(a: np.ndarray | float, b: np.ndarray | float, x: np.ndarray | float
                    ) -> np.ndarray:
    """P(win | x) = 1/(1 + exp(a + b·x)), computed without overflow."""
    return cast(np.ndarray, special.expit(
        -(np.asarray(a, float) + np.asarray(b, float) * np.asarray(x, float))))


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

