"""Deal-specific revenue opportunities: cross-sell, upsell, win-back and stalled deals.

Each item carries an expected value in the tenant's currency and a one-line reason a
seller can act on. Expected values are model- or frequency-based estimates, never
promises; thresholds are conservative so that a short list is worth reading.

A stalled deal is idle for much longer than deals like it take to close. Idle means no
activity (call, e-mail, meeting, to-do) when the tenant imports activities: a deal whose
close date a seller keeps pushing changes often, yet nobody talks to the customer. Without
activities, or for a deal that has none, idle means no change to the deal itself.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from accrue.analytics.features import known_amount
from accrue.analytics.pricing import PriceModel, recommend

OUTPUT_COLUMNS = ("kind", "account_id", "opportunity_id", "product_id", "expected_value",
                  "score", "reason")
SEGMENT = ("industry", "size_band")
MIN_PEERS = 5
MIN_LIFT = 1.2
MIN_PEER_SHARE = 0.15
UPSELL_SHARE_OF_POTENTIAL = 0.5
WIN_BACK_MIN_PROBABILITY = 0.35
WIN_BACK_DAYS = 365
STALLED_FACTOR = 2.0
STALLED_MIN_DAYS = 30


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=list(OUTPUT_COLUMNS))


def _account_segments(deals: pd.DataFrame) -> pd.DataFrame:
    seg = deals.dropna(subset=["account_id"]).drop_duplicates("account_id")
    return seg.set_index("account_id")[list(SEGMENT)].astype(str)


def cross_sell(deals: pd.DataFrame, lines: pd.DataFrame, products: pd.DataFrame,
               top: int = 3) -> pd.DataFrame:
    """Products peers in the account's segment bought (lift over all accounts), not this one."""
    won = deals[deals["is_won"].astype(bool)]
    if won.empty or lines.empty:
        return _empty()
    bought = lines.merge(won[["opportunity_id", "account_id"]], on="opportunity_id")
    bought = bought.dropna(subset=["account_id", "product_id"])
    if bought.empty:
        return _empty()
    value = known_amount(bought["total_price"])  # a $0 line is a missing price, not a sale
    typical = value.groupby(bought["product_id"]).median()
    owns = bought.groupby(["account_id", "product_id"]).size().unstack(fill_value=0) > 0
    segments = _account_segments(deals).reindex(owns.index)
    base = owns.mean()
    names = products.set_index("source_id")["name"] if "name" in products else pd.Series(dtype=str)
    rows = []
    for key, members in segments.groupby(list(SEGMENT)):
        peer_owns = owns.loc[members.index]
        if len(peer_owns) < MIN_PEERS:
            continue
        share = peer_owns.mean()
        lift = share / base.replace(0, np.nan)
        for account in members.index:
            # Leave the account itself out of its peers' share.
            own = owns.loc[account].astype(float)
            peers = (share * len(peer_owns) - own) / (len(peer_owns) - 1)
            candidates = peers[(~owns.loc[account]) & (peers >= MIN_PEER_SHARE)
                               & (lift >= MIN_LIFT)]
            ranked = (candidates * typical.reindex(candidates.index)).sort_values(ascending=False)
            for product, ev in ranked.head(top).items():
                if not np.isfinite(ev):
                    continue
                rows.append({
                    "kind": "cross_sell", "account_id": account, "opportunity_id": None,
                    "product_id": product, "expected_value": float(ev),
                    "score": float(lift[product]),
                    "reason": (f"{peers[product]:.0%} of similar accounts ({' · '.join(key)}) "
                               f"bought {names.get(product, product)} "
                               f"({lift[product]:.1f}x the overall rate); this one has not"),
                })
    return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


def upsell(deals: pd.DataFrame) -> pd.DataFrame:
    """Accounts whose won revenue is well below their segment's potential (75th percentile).

    Only won deals with a known amount count: a $0 or missing amount is not "bought 0".
    """
    won = deals[deals["is_won"].astype(bool) & deals["account_id"].notna()
                & known_amount(deals["amount"]).notna()]
    if won.empty:
        return _empty()
    revenue = won.groupby("account_id")["amount"].sum()
    segments = _account_segments(deals).reindex(revenue.index)
    closed = deals[deals["is_closed"].astype(bool)]
    rows = []
    for key, members in segments.groupby(list(SEGMENT)):
        if len(members) < MIN_PEERS:
            continue
        spend = revenue.loc[members.index]
        potential = float(spend.quantile(0.75))
        in_seg = closed[(closed[SEGMENT[0]].astype(str) == key[0])
                        & (closed[SEGMENT[1]].astype(str) == key[1])]
        win_rate = float(in_seg["is_won"].mean()) if len(in_seg) else 0.0
        for account, own in spend.items():
            if own >= UPSELL_SHARE_OF_POTENTIAL * potential:
                continue
            gap = potential - own
            rows.append({
                "kind": "upsell", "account_id": account, "opportunity_id": None,
                "product_id": None, "expected_value": gap * win_rate,
                "score": own / potential if potential else None,
                "reason": (f"bought {own:,.0f} so far, {own / potential:.0%} of what the top "
                           f"quarter of {' · '.join(key)} accounts spend ({potential:,.0f}); "
                           f"segment win rate {win_rate:.0%}"),
            })
    return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


def win_back(model: PriceModel, deals: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """Recent deals lost on price that the model now wins with a fair chance above cost."""
    if not model.usable:
        return _empty()
    lost = deals[deals["is_closed"].astype(bool) & ~deals["is_won"].astype(bool)
                 & deals["exclusion"].isna()]
    since = pd.Timestamp(now).tz_localize(None) - pd.Timedelta(days=WIN_BACK_DAYS)
    lost = lost[pd.to_datetime(lost["close_date"]) >= since]
    if lost.empty:
        return _empty()
    recs = recommend(model, lost, explain=False)
    lost = lost.reset_index(drop=True)
    cost = lost["cost_ratio"].to_numpy(float)
    above_cost = np.isnan(cost) | (recs["recommended_ratio"].to_numpy(float) > cost)
    # Lost on price: quoted above what the model recommends for the deal.
    on_price = lost["ratio"].to_numpy(float) > recs["recommended_ratio"].to_numpy(float) + 0.01
    good = (recs["method"] == "model").to_numpy() & above_cost & on_price & (
        recs["win_probability_recommended"].to_numpy(float) >= WIN_BACK_MIN_PROBABILITY)
    rows = []
    for i in np.flatnonzero(good):
        r, d = recs.iloc[i], lost.iloc[i]
        rows.append({
            "kind": "win_back", "account_id": d["account_id"], "opportunity_id":
            d["opportunity_id"], "product_id": None,
            "expected_value": float(r["expected_value_recommended"]),
            "score": float(r["win_probability_recommended"]),
            "reason": (f"lost at {1 - d['ratio']:.0%} off list; at {r['recommended_discount']:.0%} "
                       f"off the model gives a {r['win_probability_recommended']:.0%} win chance"
                       f" (model-based)"),
        })
    return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


def last_activity(activities: pd.DataFrame, now: datetime) -> pd.Series:
    """Each deal's last activity that has happened, by `opportunity_id` (tz-aware UTC).

    A meeting counts at its start and a done to-do when it was done; a planned one, or a
    meeting still to come, counts when it was logged: logging it is touching the deal.
    """
    if activities.empty:
        return pd.Series(dtype="datetime64[ns, UTC]")
    at = pd.to_datetime(activities["activity_at"], utc=True)
    logged = pd.to_datetime(activities["source_created_at"], utc=True)
    when = at.where(at.notna() & (at <= pd.Timestamp(now)), logged)
    return when.groupby(activities["opportunity_id"]).max().dropna()


def stalled(deals: pd.DataFrame, now: datetime,
            last_activities: pd.Series | None = None) -> pd.DataFrame:
    """Open deals idle for much longer than their segment's usual sales cycle.

    `last_activities` (from `last_activity`) when the tenant imports activities: a deal
    with one is idle since its last activity, any other since its last change.
    """
    closed = deals[deals["is_closed"].astype(bool)].copy()
    open_ = deals[~deals["is_closed"].astype(bool)].copy()
    if open_.empty or "source_modified_at" not in deals:
        return _empty()
    created = pd.to_datetime(closed["created_at"], utc=True, errors="coerce").dt.tz_localize(None)
    closed["cycle"] = (pd.to_datetime(closed["close_date"]) - created).dt.days
    usual = closed.groupby(list(SEGMENT))["cycle"].median()
    overall = float(closed["cycle"].median()) if closed["cycle"].notna().any() else np.nan
    touched = pd.to_datetime(open_["source_modified_at"], utc=True)
    by_activity = pd.Series(False, index=open_.index)
    if last_activities is not None and len(last_activities):
        active = pd.to_datetime(open_["opportunity_id"].map(last_activities), utc=True)
        by_activity = active.notna()
        touched = active.where(by_activity, touched)
    idle = (pd.Timestamp(now) - touched).dt.days.to_numpy(float)
    keys = list(zip(*(open_[d].astype(str) for d in SEGMENT), strict=True))
    cycle = np.array([usual.get(k, overall) for k in keys], float)
    limit = np.maximum(STALLED_FACTOR * cycle, STALLED_MIN_DAYS)
    hit = np.isfinite(cycle) & (idle > limit)
    rows = []
    prob = pd.to_numeric(open_["probability"], errors="coerce").fillna(10.0).to_numpy() / 100
    amount = open_["amount"].fillna(0.0).to_numpy(float)
    for i in np.flatnonzero(hit):
        d = open_.iloc[i]
        idle_words = "no activity" if by_activity.iloc[i] else "no change"
        rows.append({
            "kind": "stalled", "account_id": d["account_id"], "opportunity_id":
            d["opportunity_id"], "product_id": None, "expected_value": amount[i] * prob[i],
            "score": idle[i] / cycle[i],
            "reason": (f"{idle_words} for {idle[i]:.0f} days; deals like it usually close in "
                       f"{cycle[i]:.0f} days ({amount[i]:,.0f} at {prob[i]:.0%} at risk)"),
        })
    return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


def find_all(model: PriceModel, deals: pd.DataFrame, lines: pd.DataFrame,
             products: pd.DataFrame, now: datetime,
             last_activities: pd.Series | None = None) -> pd.DataFrame:
    """Every kind, ranked by expected value within kind (activities: see `stalled`)."""
    parts = [cross_sell(deals, lines, products), upsell(deals), win_back(model, deals, now),
             stalled(deals, now, last_activities)]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty()
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["kind", "expected_value"], ascending=[True, False],
                           ignore_index=True)
