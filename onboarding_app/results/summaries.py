"""The results pages' figures assembled from `queries`: freshness in words, opportunities by
account, the team comparison of a month, and the home page's cards.

Everything here reads through `queries` with the person's `Scope`; this module only
adds up, groups and words what those reads return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from accrue import recommendation_status
from accrue.schema import price_recommendation, revenue_opportunity, seller_month_metric
from accrue.sync_progress import clock
from accrue.warehouse import Warehouse
from onboarding_app.connection.crm import OBJECT_LABELS
from onboarding_app.results import present, queries
from onboarding_app.results.charts import RateBar
from onboarding_app.results.scope import Scope

# The normal quantile of a 95 % interval, as accrue.analytics.sellers uses it: written out
# so the web process need not import scipy for one number.
Z95 = 1.959963984540054
TABLES = {"deals": price_recommendation, "opportunities": revenue_opportunity,
          "team": seller_month_metric}


def wilson(won: int, closed: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of won / closed (sound at small n); None without deals."""
    if closed <= 0:
        return None
    p = won / closed
    denom = 1 + z**2 / closed
    centre = (p + z**2 / (2 * closed)) / denom
    half = z * math.sqrt(p * (1 - p) / closed + z**2 / (4 * closed**2)) / denom
    # The interval holds p; rounding must not put p a hair outside it (at 0 % or 100 %).
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


def rate_bar(name: str, won: int, closed: int, flagged: bool = False) -> RateBar | None:
    interval = wilson(won, closed)
    if interval is None:
        return None
    return RateBar(name, won / closed, interval[0], interval[1], flagged)


# -- freshness ---------------------------------------------------------------------------


def freshness(engine: Engine, scope: Scope, page: str) -> dict[str, Any]:
    """When the data was last synced and this page's results last computed, and what is
    still to come, in words (the status page, which says more, is the admin's)."""
    tenant_id = scope.tenant_id
    now = datetime.now(UTC)
    last = Warehouse(engine).last_finished_run(tenant_id)
    pending: list[str] = []
    status = recommendation_status.recommendations(engine, tenant_id, now)
    if status["phase"] != "ready":
        pending.append(str(status["message"]))
    if last is not None and last["status"] in ("failed", "stopped"):
        what = OBJECT_LABELS.get(last["object_name"], last["object_name"].replace("_", " "))
        pending.append(f"The last sync (of {what.lower()}, at {clock(last['finished_at'])}) "
                       "did not finish; the figures are from the data synced before it, and "
                       "it is retried automatically.")
    synced = queries.freshness(engine, tenant_id)["synced_at"]
    return {"synced_at": synced, "computed_at": queries.computed_at(
        engine, tenant_id, TABLES[page]), "pending": pending}


# -- opportunities by account ------------------------------------------------------------


@dataclass
class AccountGroup:
    account_id: str | None
    name: str
    total: float = 0.0
    items: list[dict[str, Any]] = field(default_factory=list)


def by_account(rows: list[dict[str, Any]]) -> list[AccountGroup]:
    """Opportunities under their account, the accounts by total expected value."""
    groups: dict[str | None, AccountGroup] = {}
    for row in rows:
        key = row.get("account_key")
        group = groups.get(key)
        if group is None:
            group = groups[key] = AccountGroup(key, row.get("account_name") or
                                               ("No account" if key is None else key))
        group.total += float(row.get("expected_value") or 0.0)
        group.items.append(row)
    return sorted(groups.values(), key=lambda g: (-g.total, g.name.lower()))


# -- the team comparison -----------------------------------------------------------------


@dataclass(frozen=True)
class TeamMonth:
    month: str | None
    months: list[str]  # the months with closed deals the person may see, newest first
    rows: list[dict[str, Any]]  # the seller-months, each with its `verdict`
    team: RateBar | None  # the whole team's win rate that month, with its interval
    team_closed: int | None


def default_month(months: list[str], today: datetime | None = None) -> str | None:
    """The newest month with closed deals that is not in the future."""
    now = (today or datetime.now(UTC)).strftime("%Y-%m")
    candidates = [m for m in months if m <= now] or months
    return candidates[0] if candidates else None


def team_month(engine: Engine, scope: Scope, month: str | None) -> TeamMonth:
    """The seller-months of `month` (the default: the latest) next to the team's rate."""
    months = queries.seller_months(engine, scope)
    if month not in months:
        month = default_month(months)
    if month is None:
        return TeamMonth(None, months, [], None, None)
    rows = queries.team_metrics(engine, scope, month=month)
    closed, won = queries.closed_won(engine, scope, months=[month], whole_team=True).get(
        month, (0, 0))
    for row in rows:
        row["verdict"] = present.verdict(row, closed)
    return TeamMonth(month, months, rows, rate_bar("Team", won, closed), closed)


def team_bars(rows: list[dict[str, Any]]) -> list[RateBar]:
    """The chart's rows: sellers with closed deals, a flagged win rate marked."""
    bars = []
    for row in rows:
        if not row.get("deals_closed"):
            continue
        flagged = "win rate" in (row.get("flag") or "")
        bar = rate_bar(row.get("seller_name") or row["seller_id"], int(row["won"]),
                       int(row["deals_closed"]), flagged)
        if bar is not None:
            bars.append(bar)
    return bars


HISTORY_MONTHS = 24


@dataclass(frozen=True)
class SellerHistory:
    seller_id: str
    name: str
    rows: list[dict[str, Any]]  # month by month, newest first, each with its `verdict`
    months: list[tuple[str, RateBar | None, float | None]]  # the chart: oldest first

    @property
    def has_chart(self) -> bool:
        """Whether any month has closed deals to draw."""
        return any(bar is not None for _, bar, _ in self.months)


def seller_history(engine: Engine, scope: Scope, seller_id: str | None,
                   today: datetime | None = None) -> SellerHistory | None:
    """One seller's last 24 months next to the team's; None when not the person's to see."""
    if not seller_id or not scope.sees(seller_id):
        return None
    now = (today or datetime.now(UTC)).strftime("%Y-%m")
    rows = [r for r in queries.team_metrics(engine, scope, seller=seller_id)
            if r["month"] <= now][:HISTORY_MONTHS]
    if not rows:
        return None
    team = queries.closed_won(engine, scope, months=[r["month"] for r in rows],
                              whole_team=True)
    for row in rows:
        row["verdict"] = present.verdict(row, team.get(row["month"], (0, 0))[0])
    name = rows[0].get("seller_name") or seller_id
    months = [(r["month"], rate_bar(r["month"], int(r["won"]), int(r["deals_closed"]),
                                    "win rate" in (r.get("flag") or "")),
               r.get("team_win_rate")) for r in reversed(rows)]
    return SellerHistory(seller_id, name, rows, months)


# -- the home page -----------------------------------------------------------------------

HOME_MONTHS = 12


@dataclass(frozen=True)
class HomeSummary:
    deals: dict[str, Any]  # rows, priced, uplift
    top: list[dict[str, Any]]  # the 3 deals with the largest expected uplift
    opportunities: dict[str, Any]  # count, value
    mine: RateBar | None  # the person's (or their team's) win rate; None for an admin
    team: RateBar | None
    period: str  # the months the rates cover, in words


def home(engine: Engine, scope: Scope, today: datetime | None = None) -> HomeSummary:
    """The person's figures: open deals priced, uplift, the top deals, the win rates of
    the last 12 months with closed deals (theirs next to the whole team's)."""
    now = (today or datetime.now(UTC)).strftime("%Y-%m")
    team_by_month = queries.closed_won(engine, scope, whole_team=True)
    months = sorted((m for m, (closed, _) in team_by_month.items() if closed and m <= now),
                    reverse=True)[:HOME_MONTHS]
    team_closed = sum(team_by_month[m][0] for m in months)
    team_won = sum(team_by_month[m][1] for m in months)
    mine = None
    if scope.sellers is not None:
        own = queries.closed_won(engine, scope, months=months)
        name = "Your team" if scope.role == "manager" else "You"
        mine = rate_bar(name, sum(v[1] for v in own.values()), sum(v[0] for v in own.values()))
    period = (f"{min(months)} to {max(months)}" if len(months) > 1 else
              (months[0] if months else ""))
    return HomeSummary(
        deals=queries.deal_totals(engine, scope),
        top=[d for d in queries.deals(engine, scope, sort="uplift", limit=3)
             if d.get("expected_uplift") is not None],
        opportunities=queries.opportunity_totals(engine, scope),
        mine=mine, team=rate_bar("Team", team_won, team_closed), period=period)
