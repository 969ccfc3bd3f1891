"""A deal's recommended price per unit and per line item, adding up to the deal to the cent.

The model prices a deal as one decision at one blended ratio of list (a B2B deal is
won or lost as a whole; docs/pricing-model.md, "Assumptions"). The split over the lines
is therefore that ratio applied to each line's list value, so every line shows the
deal's discount, with one exception: no line goes below its own floor (quantity × the
product's unit cost or customer minimum, whichever is higher, where known) while the
deal's total can carry it. Such a line is raised to its floor and the difference is
taken from the other lines in proportion to their list value. Only the split moves;
the deal's total is the model's.

Money is rounded to the cent: each line to the nearest cent, and what rounding leaves
over (a few cents at most) goes to the line with the largest list value (ties: the
lowest line id), so the lines add up to the deal's recommended price exactly. Unit
prices are the line total ÷ quantity, not rounded, so unit × quantity gives the line
total back.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd

LINE_COLUMNS: tuple[str, ...] = (
    "opportunity_id", "line_id", "product_id", "quantity", "list_price", "list_total",
    "recommended_line_total", "recommended_unit_price", "recommended_discount",
)


def _cents(value: float) -> int:
    return int(np.rint(value * 100.0))


def _allocate(total: float, list_values: np.ndarray, floors: np.ndarray) -> np.ndarray:
    """`total` over lines in proportion to list value, each line at least its floor if possible.

    Water-filling: lines whose proportional share is below their floor are fixed at it and
    the rest is shared again among the others, until no free line is below its floor.
    When the floors alone exceed the total, or no line is left to take the difference,
    the plain proportional split is kept (the deal's own guardrail then governs).
    """
    share = list_values / list_values.sum()
    plain = total * share
    floors = np.nan_to_num(floors, nan=-np.inf)
    fixed = np.zeros(len(list_values), bool)
    alloc = plain
    for _ in range(len(list_values)):
        below = ~fixed & (alloc < floors - 1e-9)
        if not below.any():
            return cast(np.ndarray, alloc)
        fixed |= below
        free = ~fixed
        rest = total - floors[fixed].sum()
        if not free.any() or rest < 0 or list_values[free].sum() <= 0:
            return cast(np.ndarray, plain)
        alloc = np.where(fixed, floors, rest * list_values / list_values[free].sum())
    return cast(np.ndarray, alloc)


def split_by_line(recs: pd.DataFrame, lines: pd.DataFrame,
                  products: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The deal rows to the cent with `n_lines` and a per-unit price, and one row per line.

    `recs` is `recommend` output; `lines` the tenant's live line items (`source_id`,
    `opportunity_id`, `product_id`, `quantity`, `list_price`) and `products` the products
    with `unit_cost` and `min_price` where known. A deal without a recommended price has
    no line rows. `recommended_unit_price` on the deal row is set for one-line deals only;
    a multi-line deal's unit prices are on its line rows.
    """
    ln = lines.rename(columns={"source_id": "line_id"}).copy()
    if "is_deleted" in ln.columns:
        ln = ln[~ln["is_deleted"].fillna(False).astype(bool)]
    ln["quantity"] = pd.to_numeric(ln["quantity"], errors="coerce").fillna(1.0).astype(float)
    ln["list_price"] = pd.to_numeric(ln["list_price"], errors="coerce").astype(float)
    ln["list_total"] = ln["quantity"] * ln["list_price"]
    unit_floor = pd.Series(np.nan, index=ln.index)
    if products is not None and not products.empty:
        prod = products.rename(columns={"source_id": "product_id"}).drop_duplicates(
            "product_id").set_index("product_id")
        known = [pd.to_numeric(prod[c], errors="coerce") for c in ("unit_cost", "min_price")
                 if c in prod.columns]
        if known:
            unit_floor = ln["product_id"].map(pd.concat(known, axis=1).max(axis=1)).astype(float)
    ln["_floor"] = ln["quantity"] * unit_floor
    ln = ln.sort_values(["opportunity_id", "line_id"], kind="stable")
    by_deal = dict(iter(ln.groupby("opportunity_id", sort=False)))

    deals = recs.copy()
    deals["n_lines"] = [len(by_deal.get(o, ())) for o in deals["opportunity_id"]]
    deals["recommended_unit_price"] = np.nan
    out: list[pd.DataFrame] = []
    for i, row in deals.iterrows():
        price = row["recommended_price"]
        group = by_deal.get(row["opportunity_id"])
        if group is None or not np.isfinite(price) or not (group["list_total"] > 0).any():
            continue
        list_values = group["list_total"].to_numpy(float)
        alloc = _allocate(float(price), list_values, group["_floor"].to_numpy(float))
        cents = np.rint(alloc * 100.0).astype(np.int64)
        deal_cents = _cents(float(price))
        largest = int(np.argmax(list_values))  # first of equals: the lowest line id
        cents[largest] += deal_cents - int(cents.sum())
        line_total = cents / 100.0
        quantity = group["quantity"].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            unit = np.where(quantity != 0, line_total / quantity, np.nan)
            discount = np.where(list_values > 0, 1 - line_total / list_values, np.nan)
        out.append(group.assign(recommended_line_total=line_total, recommended_unit_price=unit,
                                recommended_discount=discount))
        deals.at[i, "recommended_price"] = deal_cents / 100.0
        if len(group) == 1:
            deals.at[i, "recommended_unit_price"] = float(unit[0])
    line_rows = pd.concat(out, ignore_index=True) if out else pd.DataFrame(
        columns=list(LINE_COLUMNS))
    for column in LINE_COLUMNS:
        if column not in line_rows.columns:
            line_rows[column] = None
    return deals, line_rows[list(LINE_COLUMNS)]
