"""Deal segments and segment price guidance (Floor / Target / Start).

Segments are what a seller recognises: industry, company size band, product family,
region and deal size. The price bands are percentiles of *won* price ratios in the
most specific segment that has enough wins, walking up a fixed hierarchy, because a
band from five deals is noise presented as guidance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

SEGMENT_DIMENSIONS: tuple[str, ...] = ("industry", "size_band", "family", "region", "deal_size")
UNKNOWN = "Unknown"

# Employee-count bands (upper bounds exclusive); the sandbox and most CRMs' reports use these.
SIZE_BANDS: tuple[tuple[str, int], ...] = (("SMB", 200), ("MM", 2000), ("ENT", 2**62))

REGIONS: dict[str, str] = {
    **dict.fromkeys(("United States", "USA", "US", "Canada", "Mexico"), "North America"),
    **dict.fromkeys(
        (
            "United Kingdom", "UK", "Germany", "France", "Netherlands", "Spain", "Italy",
            "Ireland", "Sweden", "Switzerland", "Belgium", "Austria", "Denmark", "Norway",
            "Finland", "Poland", "Portugal", "Israel", "United Arab Emirates", "South Africa",
        ),
        "EMEA",
    ),
    **dict.fromkeys(
        (
            "Japan", "Australia", "Singapore", "India", "China", "New Zealand", "South Korea",
            "Hong Kong", "Indonesia", "Malaysia",
        ),
        "APAC",
    ),
    **dict.fromkeys(("Brazil", "Argentina", "Chile", "Colombia", "Peru"), "LATAM"),
}

DEAL_SIZE_LABELS: tuple[str, ...] = ("small", "medium", "large")

# Band hierarchy, most specific first; () is the whole tenant.
BAND_LEVELS: tuple[tuple[str, ...], ...] = (
    ("industry", "size_band", "family"),
    ("industry", "size_band"),
    ("size_band",),
    (),
)


def size_band(employee_count: pd.Series) -> pd.Series:
    """Company size band from the employee count (Unknown where the CRM has none)."""
    counts = pd.to_numeric(employee_count, errors="coerce")
    out = pd.Series(UNKNOWN, index=counts.index, dtype=object)
    lower = 0
    for label, upper in SIZE_BANDS:
        out[(counts >= lower) & (counts < upper)] = label
        lower = upper
    return out


def region(country: pd.Series) -> pd.Series:
    """Sales region from the billing country; unmapped countries are 'Other'."""
    def one(value: object) -> str:
        if not isinstance(value, str) or not value.strip():
            return UNKNOWN
        return REGIONS.get(value.strip(), "Other")

    return country.map(one).astype(object)


def deal_size_cuts(list_totals: pd.Series) -> tuple[float, float]:
    """Tercile cut points of the list value, fixed at training time and reused for open deals."""
    values = pd.to_numeric(list_totals, errors="coerce").dropna()
    if values.empty:
        return (float("inf"), float("inf"))
    low, high = np.quantile(values.to_numpy(float), [1 / 3, 2 / 3])
    return (float(low), float(high))


def deal_size(list_totals: pd.Series, cuts: tuple[float, float]) -> pd.Series:
    """Deal size band (small / medium / large) by the training terciles of list value."""
    values = pd.to_numeric(list_totals, errors="coerce").to_numpy(float)
    labels = np.where(
        values < cuts[0], DEAL_SIZE_LABELS[0],
        np.where(values < cuts[1], DEAL_SIZE_LABELS[1], DEAL_SIZE_LABELS[2]),
    )
    labels = np.where(np.isnan(values), UNKNOWN, labels)
    return pd.Series(labels, index=list_totals.index, dtype=object)


@dataclass(frozen=True)
class PriceBand:
    """Guidance for one segment, as price ratios (quote / list).

    `floor` / `target` / `start` are the seller-facing Floor / Target / Start; `won_low`
    is the low end of the prices actually won here, the guardrail below which a
    recommendation would extrapolate the data (and, without a unit cost, the floor).
    """

    level: tuple[str, ...]  # the dimensions the band was computed on; () = whole tenant
    key: tuple[str, ...]  # their values
    floor: float
    target: float
    start: float
    won_deals: int
    won_low: float

    def describe(self) -> str:
        """The segment in words, e.g. 'Healthcare · MM' or 'all deals'."""
        return " · ".join(self.key) if self.key else "all deals"


def price_bands(
    closed: pd.DataFrame,
    *,
    quantiles: tuple[float, float, float] = (0.2, 0.5, 0.8),
    min_won: int = 12,
    levels: Sequence[tuple[str, ...]] = BAND_LEVELS,
    low_quantile: float = 0.02,
) -> dict[tuple[tuple[str, ...], tuple[str, ...]], PriceBand]:
    """Floor / Target / Start (and the won_low percentile) of won ratios, where >= min_won wins."""
    won = closed[closed["is_won"].astype(bool) & closed["ratio"].notna()]
    bands: dict[tuple[tuple[str, ...], tuple[str, ...]], PriceBand] = {}
    for level in levels:
        groups = [((), won)] if not level else won.groupby(list(level), sort=True)
        for key, part in groups:
            key_t = tuple(str(k) for k in (key if isinstance(key, tuple) else (key,))) if level \
                else ()
            if len(part) < min_won and level:
                continue
            if part.empty:
                continue
            q = np.quantile(part["ratio"].to_numpy(float), (*quantiles, low_quantile))
            bands[(level, key_t)] = PriceBand(
                level, key_t, float(q[0]), float(q[1]), float(q[2]), len(part), float(q[3])
            )
    return bands


def band_for(
    deal: pd.Series,
    bands: dict[tuple[tuple[str, ...], tuple[str, ...]], PriceBand],
    levels: Sequence[tuple[str, ...]] = BAND_LEVELS,
) -> PriceBand | None:
    """The most specific band that covers this deal, or None when the tenant has no wins."""
    for level in levels:
        key = tuple(str(deal[d]) for d in level)
        band = bands.get((level, key))
        if band is not None:
            return band
    return None
