"""The pricing training frame: one row per opportunity, built from common-model tables.

The price of a deal is its quote relative to list, summed over its line items
(`ratio = sum(quoted) / sum(quantity * list_price)`), because a B2B deal is won or
lost as a whole. For closed deals the lines should be the ones the deal closed with:
`lines_at_close` picks them from the change log, so that a lost deal carries the
price it was lost at, not a later edit. Deals that cannot be priced stay in the frame
with an `exclusion` reason instead of disappearing silently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from accrue.analytics.segments import UNKNOWN, region, size_band

MAX_PLAUSIBLE_RATIO = 3.0  # a quote at 3x list is a data error, not a price point
ZERO_QUOTE = "quoted price is zero: a missing quote, not a 100 % discount"
# Product custom-field names (normalised) that hold a customer-defined minimum unit price.
MINIMUM_PRICE_NAMES: tuple[str, ...] = ("minimumprice", "minprice", "floorprice")

FRAME_COLUMNS: tuple[str, ...] = (
    "opportunity_id", "account_id", "owner_id", "close_date", "is_closed", "is_won",
    "n_lines", "list_total", "quote_total", "ratio", "cost_ratio", "min_ratio",
    "industry", "size_band", "family", "region", "exclusion",
)


def _live(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows not flagged deleted (the warehouse keeps deletes as flags)."""
    if "is_deleted" in frame.columns:
        return frame[~frame["is_deleted"].fillna(False).astype(bool)]
    return frame


def _num(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def minimum_price(raw: Mapping[str, Any] | None) -> float | None:
    """A customer-defined minimum unit price from a product's CRM record, if it has one.

    The common model has no such column, so it is read from the raw record: the first
    field whose name, lower-cased without separators, contains "minimumprice",
    "minprice" or "floorprice", holding a positive number. It can only raise the
    guardrail floor (`guardrails`), never lower it.
    """
    for key, value in (raw or {}).items():
        name = "".join(ch for ch in str(key).lower() if ch.isalnum())
        if any(word in name for word in MINIMUM_PRICE_NAMES) and isinstance(value, int | float) \
                and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            return float(value)
    return None


def priced_ratio(deals: pd.DataFrame) -> pd.Series:
    """Each deal's price ratio where it is a price, else NaN (missing, $0 quote, excluded).

    Every metric reads prices through this, so a missing or zero quote is missing
    everywhere, never a 100 % discount in one place and excluded in another.
    """
    ratio = pd.to_numeric(deals["ratio"], errors="coerce").astype(float)
    usable = ratio.between(0, MAX_PLAUSIBLE_RATIO, inclusive="right")
    if "exclusion" in deals.columns:
        usable &= deals["exclusion"].isna()
    return ratio.where(usable)


def known_amount(values: pd.Series) -> pd.Series:
    """Amounts where recorded: zero or missing is NaN (unknown), never a $0 sale to average."""
    amount = pd.to_numeric(values, errors="coerce").astype(float)
    return amount.where(amount > 0)


def flatten_versions(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Warehouse history rows (`Warehouse.history` / the record-history view) as a frame.

    Each version's `fields` dict becomes columns next to source_id, valid_from,
    valid_to and is_deleted.
    """
    records = []
    for row in rows:
        fields = dict(row.get("fields") or {})
        fields.update(
            source_id=row["source_id"],
            valid_from=row["valid_from"],
            valid_to=row.get("valid_to"),
            is_deleted=bool(row.get("is_deleted", False)),
        )
        records.append(fields)
    return pd.DataFrame.from_records(records)


def lines_at_close(
    opportunity_versions: pd.DataFrame, line_versions: pd.DataFrame
) -> pd.DataFrame:
    """The line items each closed opportunity had at the instant it (last) closed.

    `*_versions` are version frames (see `flatten_versions`): source_id, valid_from,
    valid_to, is_deleted and the common-model fields. The closing instant is the start
    of the opportunity's final run of closed versions; the lines returned are the
    line versions valid then, so edits after the loss do not rewrite its price.
    """
    opps = opportunity_versions.sort_values(["source_id", "valid_from"])
    closed_flag = opps["is_closed"].fillna(False).astype(bool) & ~opps["is_deleted"].astype(bool)
    # A new run starts where the closed flag changes within one opportunity.
    run = (closed_flag != closed_flag.groupby(opps["source_id"]).shift()).groupby(
        opps["source_id"]
    ).cumsum()
    last = opps.assign(_closed=closed_flag, _run=run).groupby("source_id").tail(1)
    last = last[last["_closed"]]
    starts = (
        opps.assign(_run=run)
        .merge(last[["source_id", "_run"]], on=["source_id", "_run"])
        .groupby("source_id")["valid_from"]
        .min()
        .rename("closed_at")
    )
    lines = line_versions.merge(
        starts, left_on="opportunity_id", right_index=True, how="inner"
    )
    valid_to = pd.to_datetime(lines["valid_to"], utc=True)
    at = pd.to_datetime(lines["closed_at"], utc=True)
    live = (
        (pd.to_datetime(lines["valid_from"], utc=True) <= at)
        & (valid_to.isna() | (valid_to > at))
        & ~lines["is_deleted"].astype(bool)
    )
    return lines[live].drop(columns=["closed_at", "valid_from", "valid_to"]).reset_index(drop=True)


def build_deal_frame(
    opportunities: pd.DataFrame,
    lines: pd.DataFrame,
    products: pd.DataFrame | None = None,
    accounts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per live opportunity with its price ratio, cost ratio and segment attributes.

    Frames use the warehouse's common-model column names (`source_id` as the key).
    `cost_ratio` is known only where every line's product has `unit_cost`, and
    `min_ratio` (a customer-defined minimum) only where every line's product has a
    `min_price` (see `minimum_price`). Price-book entries are not read: an entry is
    a list price, which the lines already carry, not a floor. Rows that cannot be
    priced keep an `exclusion`.
    """
    opps = _live(opportunities).copy()
    opps = opps.rename(columns={"source_id": "opportunity_id"})
    ln = _live(lines).copy()
    quantity = _num(ln, "quantity").fillna(1.0)
    unit = _num(ln, "unit_price")
    discount = _num(ln, "discount").fillna(0.0)
    quoted = _num(ln, "total_price")
    quoted = quoted.where(quoted.notna(), quantity * unit * (1 - discount / 100))
    ln = ln.assign(
        _quoted=quoted,
        _list=quantity * _num(ln, "list_price"),
        _qty=quantity,
    )
    if products is not None and not products.empty:
        prod = _live(products).rename(columns={"source_id": "product_id"})
        keep = [c for c in ("product_id", "family", "unit_cost", "min_price")
                if c in prod.columns]
        ln = ln.merge(prod[keep], on="product_id", how="left")
    for column in ("family", "unit_cost", "min_price"):
        if column not in ln.columns:
            ln[column] = np.nan
    ln["_cost"] = ln["_qty"] * pd.to_numeric(ln["unit_cost"], errors="coerce")
    ln["_minimum"] = ln["_qty"] * pd.to_numeric(ln["min_price"], errors="coerce")

    def total(column: str) -> pd.Series:
        # NaN unless every line has the value: a partial sum would understate it.
        grouped = ln.groupby("opportunity_id")[column]
        return grouped.sum(min_count=1).where(grouped.count() == grouped.size())

    biggest = ln.sort_values("_list", ascending=False).drop_duplicates("opportunity_id")
    per_deal = pd.DataFrame(
        {
            "n_lines": ln.groupby("opportunity_id").size(),
            "list_total": total("_list"),
            "quote_total": total("_quoted"),
            "_cost_total": total("_cost"),
            "_minimum_total": total("_minimum"),
            "family": biggest.set_index("opportunity_id")["family"],
        }
    )
    frame = opps.merge(per_deal, left_on="opportunity_id", right_index=True, how="left")
    frame["n_lines"] = frame["n_lines"].fillna(0).astype(int)
    # A CRM without line items (Close) may keep the deal's list value on the deal itself:
    # then the deal's amount is its quote. Lines, where a deal has them, come first.
    on_deal = (frame["n_lines"] == 0) & (_num(frame, "list_amount") > 0)
    frame.loc[on_deal, "list_total"] = _num(frame, "list_amount")[on_deal]
    frame.loc[on_deal, "quote_total"] = _num(frame, "amount")[on_deal]
    frame["ratio"] = frame["quote_total"] / frame["list_total"]
    frame["cost_ratio"] = frame["_cost_total"] / frame["list_total"]
    frame["min_ratio"] = frame["_minimum_total"] / frame["list_total"]

    if accounts is not None and not accounts.empty:
        acc = _live(accounts).rename(columns={"source_id": "account_id"})
        keep = [c for c in ("account_id", "industry", "employee_count", "billing_country")
                if c in acc.columns]
        frame = frame.merge(acc[keep], on="account_id", how="left")
    for column in ("industry", "employee_count", "billing_country"):
        if column not in frame.columns:
            frame[column] = np.nan
    frame["size_band"] = size_band(frame["employee_count"])
    frame["region"] = region(frame["billing_country"])
    for column in ("industry", "family"):
        frame[column] = frame[column].map(
            lambda v: v.strip() if isinstance(v, str) and v.strip() else UNKNOWN
        ).astype(object)

    frame["is_closed"] = frame.get("is_closed", False)
    frame["is_closed"] = frame["is_closed"].fillna(False).astype(bool)
    frame["is_won"] = frame.get("is_won", False)
    frame["is_won"] = frame["is_won"].fillna(False).astype(bool)
    frame["close_date"] = pd.to_datetime(frame.get("close_date"), errors="coerce")
    for column in ("account_id", "owner_id"):
        if column not in frame.columns:
            frame[column] = None

    reason = pd.Series(None, index=frame.index, dtype=object)
    reason[(frame["n_lines"] == 0) & ~on_deal] = "no line items (no quoted price)"
    missing = (frame["n_lines"] > 0) & (frame["list_total"].isna() | frame["quote_total"].isna())
    reason[on_deal & frame["quote_total"].isna()] = "no amount on a deal priced at list value"
    reason[missing & reason.isna()] = "a line item without list or quoted price"
    reason[(frame["list_total"] <= 0) & reason.isna()] = "list value not positive"
    reason[(frame["quote_total"] == 0) & reason.isna()] = ZERO_QUOTE
    bad = ~frame["ratio"].between(0, MAX_PLAUSIBLE_RATIO, inclusive="right")
    reason[bad & reason.isna()] = "implausible price ratio (quote / list)"
    frame["exclusion"] = reason
    return frame[list(FRAME_COLUMNS)].reset_index(drop=True)
