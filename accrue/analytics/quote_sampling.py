"""Quotes missing by outcome: the offset that undoes the selection in the win logit.

Why: CRMs lose quotes on lost deals (left without line items, or at $0). Missing is
missing (a $0 quote is no 100 % discount), so the fit sees only the priced deals, and
those over-represent wins. If a closed deal's chance of carrying a usable quote depends
on its outcome and its seller, r_won(g) and r_lost(g), but not on its price given
those, then among the priced deals

    logit P(win | x, priced) = logit P(win | x) + log(r_won(g) / r_lost(g))

(outcome-dependent, "case-control", sampling; Prentice & Pyke 1979). Fitting with that
offset on the win log-odds recovers the population curve; predictions leave it out.
Without it the intercept over-states every win chance, and where sellers differ in how
often they leave losses unquoted, their priced deals win more or less than their
prices explain: the over-identification test reads that as seller skill, and the
slope is biased through the sellers' discount habits.

The shares are counted per seller, where a seller has `min_deals` closed deals; sellers
with fewer share one group (the tenant, if that group is small too). With a seller's own
shares, its priced deals carry the same win odds as all its closed deals. When every
closed deal is priced each share is n / n = 1 and the offset exactly 0: clean data fit
exactly as without the correction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

FEW_DEALS = "sellers with few closed deals"
TENANT = "all sellers"
NO_OWNER = "(no owner)"


def _share(priced: int, total: int) -> float:
    """Priced share of a group's deals of one outcome; a zero count is read as ½ deal.

    Without the ½, a seller who never records a losing quote would get an infinite
    offset; with it, its priced wins weigh almost nothing, which is what they are worth.
    """
    return max(priced, 0.5) / total if total > 0 else 1.0


@dataclass(frozen=True)
class QuoteShare:
    """One group's closed deals by outcome, and how many of them carry a usable quote."""

    group: str
    won: int
    won_priced: int
    lost: int
    lost_priced: int

    @property
    def offset(self) -> float:
        """log(r_won / r_lost): added to the win log-odds of this group's priced deals."""
        return math.log(_share(self.won_priced, self.won)) - math.log(
            _share(self.lost_priced, self.lost))


@dataclass(frozen=True)
class QuoteSampling:
    """How the closed deals reached the fit, per group, and whether the fit corrects for it."""

    applied: bool
    total: QuoteShare  # every closed deal (also the shares of the group TENANT)
    groups: tuple[QuoteShare, ...]  # the groups whose shares set the offsets

    @property
    def unpriced_lost(self) -> int:
        return self.total.lost - self.total.lost_priced

    @property
    def unpriced_won(self) -> int:
        return self.total.won - self.total.won_priced

    def offsets(self) -> dict[str, float]:
        """The offset per group (all 0 when not applied)."""
        return {g.group: g.offset if self.applied else 0.0 for g in self.groups}

    def describe(self) -> str | None:
        """In words, for `PriceModel.explain`: None when every closed deal has a quote."""
        if not self.unpriced_lost and not self.unpriced_won:
            return None
        head = (f"Quotes missing by outcome: {self.unpriced_lost:,} of {self.total.lost:,} "
                f"lost and {self.unpriced_won:,} of {self.total.won:,} won closed deals "
                "have no usable quote (none, $0 or no list value).")
        if not self.applied:
            return head + " Not corrected (sampling_correction is off)."
        if not self.total.lost_priced or not self.total.won_priced:
            return head + " No offset can stand in for an outcome without any priced deal."
        values = [g.offset for g in self.groups if g.won_priced + g.lost_priced > 0]
        spread = (f"{min(values):+.2f}" if len(values) < 2 or max(values) - min(values) < 0.005
                  else f"{min(values):+.2f} to {max(values):+.2f}")
        return (f"{head} The fit corrects for them: each seller's priced deals get "
                f"log(priced share of its wins / of its losses) = {spread} on the win log-odds "
                f"({len(self.groups)} seller group{'s' if len(self.groups) != 1 else ''}), "
                "assuming a quote goes missing because of the outcome and the seller, not the "
                "price; recommendations leave the offset out.")


def quote_sampling(closed: pd.DataFrame, priced: np.ndarray, instrument: str,
                   min_deals: int, applied: bool = True) -> tuple[QuoteSampling, np.ndarray]:
    """The groups' quote shares and, per closed deal, its offset (0 if not `applied`).

    `closed` are all closed deals, priced or not; `priced` marks those the fit uses.
    """
    priced = np.asarray(priced, bool)
    won = closed["is_won"].astype(bool).to_numpy()
    if instrument in closed.columns:
        seller = closed[instrument].astype(object).where(closed[instrument].notna(), NO_OWNER)
    else:
        seller = pd.Series(NO_OWNER, index=closed.index, dtype=object)
    seller_ids = seller.astype(str).to_numpy(dtype=object)
    names, counts = np.unique(seller_ids.astype(str), return_counts=True)
    own = names[counts >= min_deals].astype(object)
    group = np.where(np.isin(seller_ids, own), seller_ids, FEW_DEALS).astype(object)
    few = group == FEW_DEALS
    if len(own) == 0 or 0 < int(few.sum()) < min_deals:
        group[few] = TENANT  # too few deals for shares of their own: the tenant's

    def counted(name: str, rows: np.ndarray) -> QuoteShare:
        return QuoteShare(name, int((rows & won).sum()), int((rows & won & priced).sum()),
                          int((rows & ~won).sum()), int((rows & ~won & priced).sum()))

    total = counted(TENANT, np.ones(len(closed), bool))
    shares = [total if name == TENANT else counted(name, group == name)
              for name in sorted(set(group.tolist()))]
    offset = np.zeros(len(closed))
    if applied:
        for share in shares:
            offset[group == share.group] = share.offset
    return QuoteSampling(applied, total, tuple(shares)), offset
