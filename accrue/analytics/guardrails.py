"""Guardrails: the range a recommended quote may take, and every clamp said in words.

A price-book entry is a list price, not a floor: most orgs have one price book, so a
floor taken from it would push every recommendation up to list. The floor is
- the unit cost, where every line's product has one: below it the deal loses money;
- else the low end of the prices actually won in the deal's segment (the band's
  `won_low`, a low percentile of won ratios, less a small margin): without a cost,
  nothing else says how low a price may go (the tenant's observed range when it has
  no won deal with a price);
- raised by a customer-defined minimum price (`min_ratio`, from the products), if any.
The ceiling is the high end of the observed quotes (a high percentile plus the same
margin), never below the floor. Which rule set the bound is reported in `clamp`
(short, stored as is) and in a sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from accrue.analytics.segments import PriceBand

WON_PRICES = "won prices"
OBSERVED_RANGE = "observed range"
UNIT_COST = "unit cost"
CUSTOMER_MINIMUM = "customer minimum"


@dataclass(frozen=True)
class Guardrails:
    """Per deal: the lowest and highest quotable ratio, and the rule behind the floor."""

    floor: np.ndarray
    ceiling: np.ndarray
    source: np.ndarray  # WON_PRICES | OBSERVED_RANGE | UNIT_COST | CUSTOMER_MINIMUM
    bands: Sequence[PriceBand | None]
    margin: float
    quantiles: tuple[float, float]


def guardrails(
    ratio_range: tuple[float, float], quantiles: tuple[float, float], margin: float,
    bands: Sequence[PriceBand | None], cost: np.ndarray, minimum: np.ndarray,
) -> Guardrails:
    """The floor and ceiling of each deal (see the module doc for the rules)."""
    lo, hi = ratio_range
    cost = np.asarray(cost, float)
    won = np.array([(bd.won_low if bd else lo) - margin for bd in bands], dtype=float)
    floor = np.where(np.isnan(cost), won, cost)
    source = np.where(~np.isnan(cost), UNIT_COST, np.array(
        [WON_PRICES if bd else OBSERVED_RANGE for bd in bands], dtype=object))
    higher = np.nan_to_num(np.asarray(minimum, float), nan=-np.inf) > np.nan_to_num(
        floor, nan=-np.inf)
    floor = np.where(higher, minimum, floor)
    source = np.where(higher, CUSTOMER_MINIMUM, source)
    ceiling = np.fmax(np.full(len(bands), hi + margin), floor)
    return Guardrails(floor, ceiling, source, bands, margin, quantiles)


def _pct(value: float) -> str:
    return f"{value * 100:.0f} %"


def _floor_rule(rails: Guardrails, i: int) -> str:
    source, band = rails.source[i], rails.bands[i]
    low_q = f"P{rails.quantiles[0] * 100:.0f}"
    margin = f"{rails.margin * 100:.0f} points"
    if source == WON_PRICES and band is not None:
        return (f"the low end of the prices won in {band.describe()} ({low_q} of "
                f"{band.won_deals} won deals, less {margin}); the curve is not extended "
                "below prices buyers accepted")
    if source == OBSERVED_RANGE:
        return (f"the low end of the observed quotes ({low_q}, less {margin}); no won deal "
                "has a price to narrow it")
    if source == UNIT_COST:
        return "the unit cost of the products; a lower quote would sell below cost"
    return "the minimum price set for these products"


def clamp(proposal: np.ndarray, rails: Guardrails, what: Sequence[str]
          ) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """The proposal clamped to the guardrails, the rule that bound it, and why in words.

    `what` names each deal's proposal ("the model's optimum", "the segment's target").
    """
    recommended = np.clip(proposal, rails.floor, rails.ceiling)
    n = len(proposal)
    labels = np.full(n, None, dtype=object)
    words: list[str | None] = [None] * n
    high_q = f"P{rails.quantiles[1] * 100:.0f}"
    for i in range(n):
        x = float(proposal[i])
        if np.isnan(x):
            continue
        if x < rails.floor[i] - 1e-12:
            labels[i] = f"floor ({rails.source[i]})"
            words[i] = (f"raised from {what[i]} ({_pct(x)} of list) to {_pct(recommended[i])}: "
                        + _floor_rule(rails, i))
        elif x > rails.ceiling[i] + 1e-12:
            labels[i] = f"ceiling ({OBSERVED_RANGE})"
            words[i] = (f"lowered from {what[i]} ({_pct(x)} of list) to {_pct(recommended[i])}: "
                        f"the high end of the observed quotes ({high_q}, plus "
                        f"{rails.margin * 100:.0f} points); the curve is not extended above "
                        "prices ever quoted")
            if rails.ceiling[i] <= rails.floor[i]:  # the floor is above every observed quote
                labels[i] = f"floor ({rails.source[i]})"
                words[i] = (f"lowered from {what[i]} ({_pct(x)} of list) to the floor, "
                            f"{_pct(recommended[i])}, which is above the observed quotes: "
                            + _floor_rule(rails, i))
    return recommended, labels, words
