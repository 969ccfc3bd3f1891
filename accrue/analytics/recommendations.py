"""Per-deal recommendations from a fitted price model: the quote, its reasons, comparables.

Apart from `pricing` (the model and its fit) so each module stays readable; `pricing`
re-exports everything here, which remains the public way in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
from scipy import stats

from accrue.analytics.features import priced_ratio
from accrue.analytics.guardrails import clamp, guardrails
from accrue.analytics.optimum import optimal_ratio, win_probability
from accrue.analytics.segments import BAND_LEVELS, PriceBand, band_for

if TYPE_CHECKING:
    from accrue.analytics.pricing import PriceModel


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
        # The curve the price came from, P(win | x) = 1/(1 + exp(a + b·x)) with x the ratio
        # to list, kept so the deal page can draw it (empty for band and excluded rows).
        "curve_a": np.where(curve_ok & ~excluded, a, np.nan),
        "curve_b": np.where(curve_ok & ~excluded, b, np.nan),
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
    return cast(list[dict[str, Any]],
                frame.astype(object).where(frame.notna(), None).to_dict("records"))
