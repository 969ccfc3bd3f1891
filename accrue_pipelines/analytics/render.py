"""How analytics results look in the Dagster UI: markdown tables and inline PNG charts.

Imported only inside the analytics assets' bodies: numpy, pandas and matplotlib
cost seconds to import, and every process that loads the code location (the
webserver, the daemon, each run) would otherwise pay for them.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from accrue.analytics.pricing import PriceModel


def _png_markdown(fig: Any, alt: str) -> str:
    """A matplotlib figure as an embedded PNG in markdown (shown inline by the Dagster UI)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"![{alt}](data:image/png;base64,{encoded})"


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 3.5))


def table(frame: pd.DataFrame, columns: dict[str, str]) -> dg.TableMetadataValue:
    """A small typed table for the UI; `columns` maps column -> kind of value: '' text,
    '%' a fraction (shown as 0.42, to 3 places), 'int' a whole count or amount."""
    kinds = {"": "string", "%": "float", "int": "int"}

    def cell(value: Any, kind: str) -> str | int | float | None:
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            return None if kind else "—"
        if kind == "%":
            return round(float(value), 3)
        if kind == "int":
            return int(round(float(value)))
        return str(value)

    records = [dg.TableRecord({name: cell(getattr(row, name), kind)
                               for name, kind in columns.items()})
               for row in frame.itertuples(index=False)]
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kinds[kind])
                                     for name, kind in columns.items()])
    return dg.MetadataValue.table(records, schema=schema)


def curve_plot(model: PriceModel) -> str:
    """The tenant-wide win-probability curve over the observed price range, or the won prices."""
    fig, ax = _figure()
    h = model.history
    if model.usable and not h.empty:
        grid = np.linspace(*model.ratio_range, 60)
        probe = h.iloc[[0] * len(grid)].reset_index(drop=True)
        for dim in model.config.dimensions:
            probe[dim] = "(all)"
        probe["ratio"] = grid
        ax.plot(1 - grid, model.predict(probe, grid), label="model (tenant-wide)")
        ax.set_ylabel("win probability")
    if not h.empty:
        won = h[h["is_won"].astype(bool)]["ratio"]
        lost = h[~h["is_won"].astype(bool)]["ratio"]
        # An empty group has no density (numpy warns dividing by zero): draw only the others.
        groups = [(1 - values, label) for values, label in ((won, "won deals"),
                                                            (lost, "lost deals"))
                  if len(values)]
        if groups:
            ax.hist([g for g, _ in groups], bins=20, density=True, alpha=0.35,
                    label=[label for _, label in groups])
    ax.set_xlabel("discount off list")
    ax.set_title("Win probability vs discount" if model.usable
                 else "No price curve: won/lost discounts")
    ax.legend(fontsize=8)
    return _png_markdown(fig, "win probability curve")


def seller_plot(metrics: pd.DataFrame, month: str) -> str:
    """Each seller's win rate with its Wilson interval, the shrunk estimate and the team rate."""
    fig, ax = _figure()
    m = metrics[metrics["deals_closed"].astype(int) > 0].sort_values("win_rate_shrunk")
    y = np.arange(len(m))
    rate = m["win_rate"].astype(float).to_numpy()
    low, high = (m[c].astype(float).to_numpy() for c in ("win_rate_ci_low", "win_rate_ci_high"))
    labels = [str(n or s) for n, s in zip(m["seller_name"], m["seller_id"], strict=True)]
    ax.errorbar(rate, y, xerr=[rate - low, high - rate], fmt="o", label="win rate (95% Wilson)")
    ax.plot(m["win_rate_shrunk"].astype(float), y, "x", label="shrunk to team")
    if len(m):
        ax.axvline(float(m["team_win_rate"].iloc[0]), ls="--", c="grey", label="team")
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_title(f"Win rate by seller, {month}")
    ax.legend(fontsize=7)
    return _png_markdown(fig, "seller comparison")
