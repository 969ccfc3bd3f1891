"""The results pages and their charts. Each reads through `queries` with the person's `Scope`.

A deal, chart or row the person may not see is a 404, the same answer as one that does
not exist: nobody learns another seller's (or tenant's) ids from the status code. The
filters a page takes are parsed once (`DealFilters`, `opportunity_kind`, `team_month`)
and shared with its CSV download (`downloads.py`), so both show the same rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from flask import Response, abort, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from accrue.schema import OPPORTUNITY_KINDS
from onboarding_app.extensions import warehouse
from onboarding_app.results import bp, charts, present, queries, summaries
from onboarding_app.results.scope import Scope, scope_for
from onboarding_app.security import current_user, login_required

DEALS_PER_PAGE = 50
ACCOUNTS_PER_PAGE = 25
# An SVG shown with <img> runs no script; its own styles are matplotlib's inline ones.
SVG_POLICY = "default-src 'none'; style-src 'unsafe-inline'"

for _name in ("money", "compact", "percent", "off_list"):
    bp.add_app_template_filter(getattr(present, _name), _name)


def current_scope() -> Scope:
    return scope_for(warehouse.engine, current_user())


@dataclass(frozen=True)
class DealFilters:
    """The deals page's seller, stage, minimum uplift and order, from the query string."""

    seller: str | None = None
    stage: str | None = None
    min_uplift: float | None = None
    sort: str = "uplift"

    @classmethod
    def from_args(cls, args: MultiDict[str, str]) -> DealFilters:
        sort = args.get("sort", "uplift")
        return cls(seller=args.get("seller") or None, stage=args.get("stage") or None,
                   min_uplift=present.number(_float(args.get("min_uplift"))),
                   sort=sort if sort in queries.DEAL_SORT_KEYS else "uplift")

    def args(self) -> dict[str, Any]:
        """The non-empty filters, for links that keep them (pages, the CSV download)."""
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _page() -> int:
    page = request.args.get("page", "1")
    return max(int(page), 1) if page.isdigit() else 1


def page_links(page: int, total: int, per_page: int, **args: Any) -> dict[str, Any]:
    """Previous / next links that keep the filters, and the rows shown, in words."""
    last = max((total + per_page - 1) // per_page, 1)
    page = min(page, last)
    first_row, last_row = (page - 1) * per_page + 1, min(page * per_page, total)

    def link(number: int) -> str | None:
        if not 1 <= number <= last or number == page:
            return None
        return url_for(request.endpoint or "", **args, page=number)

    return {"page": page, "last": last, "previous": link(page - 1), "next": link(page + 1),
            "shown": f"{first_row:,}–{last_row:,} of {total:,}" if total else "none"}


@bp.get("/deals")
@login_required
def deals() -> ResponseReturnValue:
    scope = current_scope()
    filters = DealFilters.from_args(request.args)
    total = queries.count_deals(warehouse.engine, scope, seller=filters.seller,
                                stage=filters.stage, min_uplift=filters.min_uplift)
    pager = page_links(_page(), total, DEALS_PER_PAGE, **filters.args())
    rows = queries.deals(warehouse.engine, scope, seller=filters.seller, stage=filters.stage,
                         min_uplift=filters.min_uplift, sort=filters.sort,
                         limit=DEALS_PER_PAGE, offset=(pager["page"] - 1) * DEALS_PER_PAGE)
    for row in rows:
        row["honesty"] = present.honesty(row)
        row["band"] = present.band(row)
    return render_template(
        "results/deals.html", deals=rows, filters=filters, pager=pager, scope=scope,
        choices=queries.filter_choices(warehouse.engine, scope),
        sorts=[("uplift", "Expected uplift"), ("amount", "Amount"), ("close_date", "Close date"),
               ("discount", "Current discount"), ("name", "Name")],
        csv_url=url_for("results.deals_csv", **filters.args()),
        freshness=summaries.freshness(warehouse.engine, scope, "deals"))


def _deal_or_404(scope: Scope, opportunity_id: str) -> dict[str, Any]:
    row = queries.deal(warehouse.engine, scope, opportunity_id)
    if row is None:
        abort(404)  # not there, or not this person's: the same answer
    return row


@bp.get("/deals/<opportunity_id>")
@login_required
def deal(opportunity_id: str) -> ResponseReturnValue:
    scope = current_scope()
    row = _deal_or_404(scope, opportunity_id)
    curve = charts.curve_points(row.get("win_curve"))  # the column may not exist yet
    return render_template(
        "results/deal.html", deal=row, scope=scope, honesty=present.honesty(row),
        band=present.band(row), drivers=present.drivers(row.get("drivers")),
        comparables=present.comparables(row.get("comparables")), has_curve=len(curve) >= 2,
        lines=queries.deal_lines(warehouse.engine, scope, opportunity_id),
        freshness=summaries.freshness(warehouse.engine, scope, "deals"))


def svg_response(svg: str) -> Response:
    response = Response(svg, mimetype="image/svg+xml")
    response.headers["Content-Security-Policy"] = SVG_POLICY
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/deals/<opportunity_id>/curve.svg")
@login_required
def deal_curve(opportunity_id: str) -> ResponseReturnValue:
    """The deal's win-probability curve; 404 when the deal is not the person's or has none."""
    row = _deal_or_404(current_scope(), opportunity_id)
    curve = charts.curve_points(row.get("win_curve"))
    if len(curve) < 2:
        abort(404)
    return svg_response(charts.win_curve_svg(
        curve, current_price=present.number(row.get("current_price")),
        recommended_price=present.number(row.get("recommended_price")),
        band=present.band(row)))


def opportunity_kind() -> str | None:
    kind = request.args.get("kind") or None
    return kind if kind in OPPORTUNITY_KINDS else None


@bp.get("/opportunities")
@login_required
def opportunities() -> ResponseReturnValue:
    scope = current_scope()
    kind = opportunity_kind()
    groups = summaries.by_account(queries.opportunities(warehouse.engine, scope, kind=kind))
    args: dict[str, Any] = {"kind": kind} if kind else {}
    pager = page_links(_page(), len(groups), ACCOUNTS_PER_PAGE, **args)
    start = (pager["page"] - 1) * ACCOUNTS_PER_PAGE
    return render_template(
        "results/opportunities.html", scope=scope, groups=groups[start:start +
                                                                 ACCOUNTS_PER_PAGE],
        pager=pager, kind=kind, kinds=present.KIND_LABELS,
        total=sum(g.total for g in groups), count=sum(len(g.items) for g in groups),
        csv_url=url_for("results.opportunities_csv", **args),
        freshness=summaries.freshness(warehouse.engine, scope, "opportunities"))


@bp.get("/team")
@login_required
def team() -> ResponseReturnValue:
    scope = current_scope()
    view = summaries.team_month(warehouse.engine, scope, request.args.get("month"))
    bars = summaries.team_bars(view.rows)
    # A seller sees their own months; a manager or admin picks a seller from the table.
    chosen = request.args.get("seller") or (scope.crm_user_id if scope.role == "seller"
                                            else None)
    history = summaries.seller_history(warehouse.engine, scope, chosen)
    return render_template(
        "results/team.html", scope=scope, view=view, has_chart=bool(bars),
        chart_alt=_team_alt(bars, view.team), history=history,
        history_alt=_history_alt(history) if history else "",
        csv_url=url_for("results.team_csv", month=view.month),
        freshness=summaries.freshness(warehouse.engine, scope, "team"))


def _team_alt(bars: list[charts.RateBar], team: charts.RateBar | None) -> str:
    """The chart in words, for a screen reader (the table below has every figure)."""
    parts = [f"{b.name} {b.rate:.0%} ({b.low:.0%} to {b.high:.0%})" for b in bars[:12]]
    lead = f"Team win rate {team.rate:.0%}. " if team else ""
    return lead + "Win rates with 95 % intervals: " + "; ".join(parts)


def _history_alt(history: summaries.SellerHistory) -> str:
    parts = [f"{month} {bar.rate:.0%}" for month, bar, _ in history.months[-12:] if bar]
    return f"{history.name}'s win rate by month: " + "; ".join(parts)


@bp.get("/team/history.svg")
@login_required
def team_history_chart() -> ResponseReturnValue:
    """A seller's win rate month by month next to the team's; 404 outside the scope."""
    history = summaries.seller_history(warehouse.engine, current_scope(),
                                       request.args.get("seller"))
    if history is None or not history.has_chart:
        abort(404)
    return svg_response(charts.history_svg(history.months))


@bp.get("/team/chart.svg")
@login_required
def team_chart() -> ResponseReturnValue:
    """Each visible seller's win rate with its Wilson interval, next to the team's."""
    view = summaries.team_month(warehouse.engine, current_scope(), request.args.get("month"))
    bars = summaries.team_bars(view.rows)
    if not bars:
        abort(404)
    return svg_response(charts.team_svg(bars, view.team))
