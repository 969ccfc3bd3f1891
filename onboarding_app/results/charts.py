"""The results pages' charts, drawn on the server as SVG: no charting script, no CDN.

matplotlib's object API (a `Figure` of our own, never pyplot's global state, so requests
on several threads do not share a figure) renders to an SVG string, served by a route of
ours and shown with <img>: an SVG image runs no script and needs nothing from outside.
matplotlib is imported inside the functions: it costs a second to import, which only the
first chart of a process should pay. Text is drawn as paths, so a name from the CRM can
neither break the SVG nor need a font on the viewer's machine.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from onboarding_app.results.present import BandPoint

# Charts are pure functions of what they draw, and what they draw changes only when the
# analytics recompute: each process keeps its last 64 (an SVG is 10-400 KB).
CACHED_CHARTS = 64
INK, MUTED, BRAND, ACCENT, LINE = "#17212b", "#52606d", "#0f5bd8", "#b45309", "#d9e2ec"
FLAGGED, BAND = "#b45309", "#e8f0fe"  # a flag is worth a conversation: amber, not red


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # never a GUI backend in a web process
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=96)
    ax = fig.subplots()
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(LINE)
    ax.tick_params(colors=MUTED, labelsize=9)
    ax.grid(True, color=LINE, linewidth=0.6)
    ax.set_axisbelow(True)
    return fig, ax


def _svg(fig: Any) -> str:
    """The figure as SVG text, the same bytes for the same chart (no date, fixed ids)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "accrue", "svg.fonttype": "path"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight",
                    metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return buffer.getvalue()


def _label(text: str) -> str:
    """A CRM name as literal text: matplotlib reads $...$ as mathematics."""
    return text.replace("$", r"\$")


def curve_points(curve: Any) -> list[tuple[float, float]]:
    """The stored [price, win probability] pairs that can be drawn, by price."""
    points = []
    for item in curve or ():
        try:
            price, probability = float(item[0]), float(item[1])
        except (TypeError, ValueError, IndexError):
            continue
        if price == price and probability == probability:  # not NaN
            points.append((price, probability))
    return sorted(points)


def win_curve_svg(points: Sequence[tuple[float, float]], *, current_price: float | None,
                  recommended_price: float | None, band: Sequence[BandPoint] = ()) -> str:
    """See `_win_curve_svg`; rendered once per distinct deal curve."""
    return _win_curve_svg(tuple(points), current_price, recommended_price, tuple(band))


@functools.lru_cache(maxsize=CACHED_CHARTS)
def _win_curve_svg(points: tuple[tuple[float, float], ...], current_price: float | None,
                   recommended_price: float | None, band: tuple[BandPoint, ...]) -> str:
    """The deal's win probability against its price, the current quote and the
    recommendation marked, the band's Floor–Start shaded behind."""
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    fig, ax = _figure(7.2, 3.1)
    prices = [p for p, _ in points]
    ax.plot(prices, [q for _, q in points], color=BRAND, linewidth=2.2,
            label="Win probability at each price")
    priced = [b.price for b in band if b.price is not None]
    if len(priced) >= 2:
        ax.axvspan(min(priced), max(priced), color=BAND, label="Band: Floor to Start")
    for price, colour, style, name in ((current_price, MUTED, "--", "Current quote"),
                                       (recommended_price, ACCENT, "-", "Recommended")):
        if price is None:
            continue
        ax.axvline(price, color=colour, linestyle=style, linewidth=1.6)
        height = _interpolate(points, price)
        if height is not None:
            ax.plot([price], [height], "o", color=colour, markersize=7, label=
                    f"{name}: {price:,.0f} ({height:.0%} win chance)")
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.set_xlabel("Price for the whole deal", color=MUTED)
    ax.set_ylabel("Win probability", color=MUTED)
    ax.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2),
              ncol=2)
    return _svg(fig)


def _interpolate(points: Sequence[tuple[float, float]], price: float) -> float | None:
    """The curve's height at `price` (linear between points; None outside them)."""
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 <= price <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (price - x0) / (x1 - x0)
    return None


@dataclass(frozen=True)
class RateBar:
    """One row of the team chart: a win rate and its 95 % Wilson interval."""

    name: str
    rate: float
    low: float
    high: float
    flagged: bool = False  # the win rate differs significantly from the rest of the team

    @property
    def below(self) -> float:
        """How far the interval reaches below the rate (never negative, for the error bar)."""
        return max(0.0, self.rate - self.low)

    @property
    def above(self) -> float:
        return max(0.0, self.high - self.rate)


def team_svg(sellers: Sequence[RateBar], team: RateBar | None) -> str:
    """See `_team_svg`; the same bars and team give the same SVG, rendered once."""
    return _team_svg(tuple(sellers), team)


@functools.lru_cache(maxsize=CACHED_CHARTS)
def _team_svg(sellers: tuple[RateBar, ...], team: RateBar | None) -> str:
    """Each seller's win rate with its Wilson interval as an error bar, the team's rate
    (and its interval) as a line and band behind; a flagged win rate in amber."""
    from matplotlib.ticker import PercentFormatter

    rows = list(reversed(sellers))  # matplotlib counts rows from the bottom
    fig, ax = _figure(7.2, 1.2 + 0.38 * max(len(rows), 1))
    if team is not None:
        ax.axvspan(team.low, team.high, color=BAND, label=f"{_label(team.name)}'s 95 % interval")
        ax.axvline(team.rate, color=MUTED, linestyle="--", linewidth=1.4,
                   label=f"{_label(team.name)}: {team.rate:.0%}")
    # One errorbar call per colour, not per seller: a manager of 200 sellers is one
    # collection of 200 bars, not 200 artists (1.5 s → a fraction of it).
    for flagged in (False, True):
        ys = [y for y, bar in enumerate(rows) if bar.flagged == flagged]
        if not ys:
            continue
        colour = FLAGGED if flagged else BRAND
        ax.errorbar([rows[y].rate for y in ys], ys,
                    xerr=[[rows[y].below for y in ys], [rows[y].above for y in ys]],
                    fmt="o", color=colour, ecolor=colour, elinewidth=2, capsize=4,
                    markersize=6, label="Win rate differs from the rest of the team" if flagged
                    else "Seller, 95 % interval")
    ax.set_yticks(range(len(rows)), [_label(bar.name) for bar in rows])
    ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("Win rate, with its 95 % interval", color=MUTED)
    ax.grid(False, axis="y")
    ax.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.3 if
              len(rows) < 4 else -0.12), ncol=2)
    return _svg(fig)


def history_svg(months: Sequence[tuple[str, RateBar | None, float | None]]) -> str:
    """See `_history_svg`; rendered once per distinct history."""
    return _history_svg(tuple(months))


@functools.lru_cache(maxsize=CACHED_CHARTS)
def _history_svg(months: tuple[tuple[str, RateBar | None, float | None], ...]) -> str:
    """A seller's win rate month by month with its Wilson interval, the team's rate as a
    line; months without closed deals are gaps."""
    from matplotlib.ticker import PercentFormatter

    fig, ax = _figure(7.2, 2.8)
    x = list(range(len(months)))
    team = [rate if rate is not None else float("nan") for _, _, rate in months]
    ax.plot(x, team, color=MUTED, linestyle="--", linewidth=1.4, label="Team")
    for flagged in (False, True):
        points = [(i, bar) for i, (_, bar, _) in enumerate(months)
                  if bar is not None and bar.flagged == flagged]
        if not points:
            continue
        colour = FLAGGED if flagged else BRAND
        bars = [b for _, b in points]
        ax.errorbar([i for i, _ in points], [b.rate for b in bars],
                    yerr=[[b.below for b in bars], [b.above for b in bars]],
                    fmt="o", color=colour, ecolor=colour, elinewidth=2, capsize=3, markersize=5,
                    label="Win rate differs from the rest of the team" if flagged
                    else "Win rate, 95 % interval")
    step = max(1, len(months) // 12)
    ax.set_xticks(x[::step], [month for month, _, _ in months][::step], rotation=45,
                  ha="right")
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.grid(False, axis="x")
    ax.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.3),
              ncol=3)
    return _svg(fig)
