"""Tenant analytics computed from the warehouse's common model (no Dagster, no Flask here).

Price recommendations live in `accrue.analytics.pricing`; the training frame is built
by `accrue.analytics.features` and the honest evaluation on synthetic tenants with a
known win curve is in `accrue.analytics.evaluation`.
"""

from accrue.analytics.features import build_deal_frame, lines_at_close
from accrue.analytics.pricing import (
    PriceModel,
    PricingConfig,
    fit_price_model,
    numeric_optimum,
    optimal_ratio,
    recommend,
)

__all__ = [
    "PriceModel",
    "PricingConfig",
    "build_deal_frame",
    "fit_price_model",
    "lines_at_close",
    "numeric_optimum",
    "optimal_ratio",
    "recommend",
]
