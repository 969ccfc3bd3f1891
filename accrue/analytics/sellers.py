"""Seller comparison per month: each seller next to the team, without reading noise as rank.

A month's metrics depend only on the deals whose close date falls in that month
(closed deals) or that are expected to close in it (open pipeline), so a change to
one historical deal changes only the months it was in and moved to.

Rates carry Wilson score intervals (sound at small n, unlike the normal
approximation); win rates and discounts are shrunk toward the team by empirical
Bayes (beta-binomial and normal-normal, method of moments), so a seller with three
deals does not top the ranking; a flag is raised only where a seller differs from the
rest of the team with a Bonferroni-adjusted p < alpha.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from accrue.analytics.features import known_amount, priced_ratio

ALPHA = 0.05
MIN_DEALS_TO_FLAG = 5

METRIC_COLUMNS: tuple[str, ...] = (
    "seller_id", "seller_name", "manager_id", "deals_closed", "won", "win_rate",
    "win_rate_ci_low", "win_rate_ci_high", "win_rate_shrunk", "team_win_rate",
    "win_rate_percentile", "revenue_won", "revenue_percentile", "avg_deal_size",
    "avg_discount", "avg_discount_shrunk", "team_avg_discount", "cycle_days",
    "open_pipeline", "quota", "quota_attainment", "flag",
)


def wilson_interval(successes: np.ndarray | float, n: np.ndarray | float, alpha: float = ALPHA
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion (NaN where n = 0)."""
    k = np.asarray(successes, float)
    n = np.asarray(n, float)
    z = stats.norm.isf(alpha / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return centre - half, centre + half


def shrink_rates(successes: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, float]:
    """Beta-binomial empirical-Bayes posterior means toward the pooled rate, and the prior size.

    The prior strength m (pseudo-deals) comes from the method of moments: the spread
    of the sellers' rates beyond what binomial noise explains. No excess spread means
    m = inf: every seller is estimated at the team rate.
    """
    k, n = np.asarray(successes, float), np.asarray(n, float)
    mask = n > 0
    if mask.sum() == 0:
        return np.full(len(n), np.nan), float("inf")
    p0 = k[mask].sum() / n[mask].sum()
    if mask.sum() < 2 or p0 in (0.0, 1.0):
        return np.where(mask, p0, np.nan), float("inf")
    rates = k[mask] / n[mask]
    weights = n[mask] / n[mask].sum()
    observed = float(np.sum(weights * (rates - p0) ** 2))
    noise = float(np.sum(weights * p0 * (1 - p0) / n[mask]))
    between = observed - noise
    if between <= 1e-12:
        return np.where(mask, p0, np.nan), float("inf")
    m = max(p0 * (1 - p0) / between - 1, 0.0)
    return np.where(mask, (k + m * p0) / np.maximum(n + m, 1e-12), np.nan), m


def shrink_means(means: np.ndarray, variances: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Normal-normal empirical-Bayes shrinkage of per-seller means toward the pooled mean."""
    x, s2, n = (np.asarray(v, float) for v in (means, variances, n))
    ok = (n > 0) & np.isfinite(x)
    if ok.sum() == 0:
        return np.full(len(x), np.nan)
    grand = float(np.sum(n[ok] * x[ok]) / n[ok].sum())
    known = ok & np.isfinite(s2)  # a seller with one deal has no variance yet
    within = float(np.mean(s2[known])) if known.any() else 0.0
    se2 = within / np.maximum(n, 1)
    tau2 = max(float(np.var(x[ok])) - float(np.mean(se2[ok])), 0.0) if ok.sum() > 1 else 0.0
    if tau2 == 0.0:
        return np.where(ok, grand, np.nan)
    weight = tau2 / (tau2 + se2)
    return np.where(ok, grand + weight * (x - grand), np.nan)


def _month(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, errors="coerce").dt.strftime("%Y-%m")


def months_with_deals(deals: pd.DataFrame) -> list[str]:
    """Every close month ('YYYY-MM') of a deal with an owner: all history, future months too."""
    frame = deals[deals["owner_id"].notna()]
    return sorted(set(_month(frame["close_date"]).dropna()))


def monthly_metrics(
    deals: pd.DataFrame,
    month: str,
    users: pd.DataFrame | None = None,
    quotas: Mapping[str, float] | None = None,
    *,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """One row per seller active in `month` ('YYYY-MM'), with the team comparison.

    `deals` has opportunity_id, owner_id, close_date, is_closed, is_won, amount,
    ratio (quote / list; may be NaN), created_at and optionally exclusion. Revenue is
    the won amount; average deal size is per won deal with a known amount; the
    discount is 1 − ratio averaged over the closed deals that have a price. A missing
    or $0 quote or amount is missing (`features.priced_ratio`, `known_amount`), never a
    100 % discount or a $0 sale. The cycle is close date − creation, in days.
    """
    frame = deals[deals["owner_id"].notna()].copy()
    in_month = _month(frame["close_date"]) == month
    closed_flag = frame["is_closed"].fillna(False).astype(bool)
    closed = frame[in_month & closed_flag].copy()
    open_ = frame[in_month & ~closed_flag]
    closed["is_won"] = closed["is_won"].fillna(False).astype(bool)
    closed["discount"] = 1 - priced_ratio(closed)
    closed["amount"] = known_amount(closed["amount"])
    created = pd.to_datetime(closed["created_at"], errors="coerce", utc=True).dt.tz_localize(None)
    closed["cycle"] = (pd.to_datetime(closed["close_date"]) - created.dt.normalize()).dt.days
    closed["won_amount"] = closed["amount"].where(closed["is_won"], 0.0).fillna(0.0)

    sellers = sorted(set(closed["owner_id"]) | set(open_["owner_id"]))
    if not sellers:
        return pd.DataFrame(columns=list(METRIC_COLUMNS))
    g = closed.groupby("owner_id")
    out = pd.DataFrame(index=pd.Index(sellers, name="seller_id"))
    out["deals_closed"] = g.size().reindex(sellers).fillna(0).astype(int)
    out["won"] = g["is_won"].sum().reindex(sellers).fillna(0).astype(int)
    n, k = out["deals_closed"].to_numpy(float), out["won"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["win_rate"] = np.where(n > 0, k / n, np.nan)
    out["win_rate_ci_low"], out["win_rate_ci_high"] = wilson_interval(k, n, alpha)
    out["win_rate_shrunk"], _ = shrink_rates(k, n)
    out["team_win_rate"] = k.sum() / n.sum() if n.sum() else np.nan
    out["revenue_won"] = g["won_amount"].sum().reindex(sellers).fillna(0.0)
    sized = closed["amount"].where(closed["is_won"]).groupby(closed["owner_id"]).count()
    sized = sized.reindex(sellers).fillna(0).to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["avg_deal_size"] = np.where(sized > 0, out["revenue_won"] / sized, np.nan)
    disc = g["discount"]
    out["avg_discount"] = disc.mean().reindex(sellers)
    out["avg_discount_shrunk"] = shrink_means(
        out["avg_discount"].to_numpy(), disc.var().reindex(sellers).to_numpy(),
        disc.count().reindex(sellers).fillna(0).to_numpy())
    out["team_avg_discount"] = closed["discount"].mean()
    out["cycle_days"] = g["cycle"].mean().reindex(sellers)
    out["open_pipeline"] = open_.groupby("owner_id")["amount"].sum().reindex(sellers).fillna(0.0)
    active = out["deals_closed"] > 0
    out["win_rate_percentile"] = out["win_rate_shrunk"].where(active).rank(pct=True) * 100
    out["revenue_percentile"] = out["revenue_won"].where(active).rank(pct=True) * 100
    quota = pd.Series(quotas or {}, dtype=float).reindex(sellers)
    out["quota"] = quota
    out["quota_attainment"] = out["revenue_won"] / quota.where(quota > 0)
    out["flag"] = _flags(out, closed, alpha)
    if users is not None and not users.empty:
        info = users.set_index("source_id")
        out["seller_name"] = info["name"].reindex(sellers) if "name" in info else None
        out["manager_id"] = info["manager_id"].reindex(sellers) if "manager_id" in info else None
    else:
        out["seller_name"], out["manager_id"] = None, None
    out = out.reset_index()
    return out[list(METRIC_COLUMNS)].astype(object).where(out[list(METRIC_COLUMNS)].notna(), None)


def _flags(out: pd.DataFrame, closed: pd.DataFrame, alpha: float) -> pd.Series:
    """Text where a seller differs from the rest of the team significantly (Bonferroni)."""
    flags: dict[str, list[str]] = {s: [] for s in out.index}
    eligible = [s for s in out.index if out.at[s, "deals_closed"] >= MIN_DEALS_TO_FLAG]
    tests = 2 * max(len(eligible), 1)
    total_n, total_k = int(out["deals_closed"].sum()), int(out["won"].sum())
    for seller in eligible:
        n, k = int(out.at[seller, "deals_closed"]), int(out.at[seller, "won"])
        rest_n, rest_k = total_n - n, total_k - k
        if rest_n >= MIN_DEALS_TO_FLAG:
            table = [[k, n - k], [rest_k, rest_n - rest_k]]
            p = float(stats.fisher_exact(table).pvalue)
            if p * tests < alpha:
                word = "above" if k / n > rest_k / rest_n else "below"
                flags[seller].append(f"win rate {word} the rest of the team "
                                     f"({k / n:.0%} vs {rest_k / rest_n:.0%}, p = {p:.2g})")
        mine = closed.loc[closed["owner_id"] == seller, "discount"].dropna()
        rest = closed.loc[closed["owner_id"] != seller, "discount"].dropna()
        if len(mine) >= MIN_DEALS_TO_FLAG and len(rest) >= MIN_DEALS_TO_FLAG:
            p = float(stats.ttest_ind(mine, rest, equal_var=False).pvalue)
            if np.isfinite(p) and p * tests < alpha:
                word = "more" if mine.mean() > rest.mean() else "less"
                flags[seller].append(f"discounts {word} than the rest of the team "
                                     f"({mine.mean():.0%} vs {rest.mean():.0%} off list, "
                                     f"p = {p:.2g})")
    return pd.Series({s: "; ".join(v) if v else None for s, v in flags.items()}, dtype=object)


def quotas_from_users(users: pd.DataFrame) -> dict[str, float]:
    """Monthly quotas from a user custom field whose name contains 'quota' (raw CRM record)."""
    quotas: dict[str, float] = {}
    if users.empty or "raw" not in users.columns:
        return quotas
    for source_id, raw in zip(users["source_id"], users["raw"], strict=True):
        for key, value in (raw or {}).items():
            if "quota" in str(key).lower() and isinstance(value, int | float) and value > 0:
                quotas[source_id] = float(value)
                break
    return quotas


def team_view(metrics: pd.DataFrame, manager_id: str,
              users: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows of the manager's team only: direct reports and, given `users`, their reports."""
    team = {manager_id}
    if users is not None and not users.empty:
        parents = dict(zip(users["source_id"], users["manager_id"], strict=True))
        changed = True
        while changed:
            members = {u for u, m in parents.items() if m in team}
            changed = not members <= team
            team |= members
    else:
        team |= set(metrics.loc[metrics["manager_id"] == manager_id, "seller_id"])
    team.discard(manager_id)
    return metrics[metrics["seller_id"].isin(team)].reset_index(drop=True)
