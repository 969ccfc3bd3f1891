"""CSV downloads of the results tables: the page's rows, with its scope and filters.

A spreadsheet runs a cell that starts with =, +, -, @, a tab or a carriage return as a
formula (CSV injection), and deal, account and seller names come from the CRM, where
anyone can type them. Such text cells get a leading apostrophe, as OWASP advises, and
the csv module quotes the rest. Numbers stay numbers. The file starts with a UTF-8 byte
order mark, so Excel reads accented names right.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from flask import Response, request
from flask.typing import ResponseReturnValue

from onboarding_app.extensions import warehouse
from onboarding_app.results import bp, present, queries, summaries
from onboarding_app.results.views import DealFilters, current_scope, opportunity_kind
from onboarding_app.security import login_required

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as written: text never starts a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        number = present.number(value)
        return "" if number is None else value
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_response(name: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    """An attachment named accrue-<name>-<date>.csv, never cached."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([safe_cell(v) for v in row] for row in rows)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    response = Response(buffer.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="accrue-{name}-{stamp}.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response


DEAL_COLUMNS = (
    "Deal ID", "Deal", "Account", "Seller", "Stage", "Close date", "List value",
    "Current quote", "Current discount", "Recommended price", "Recommended discount",
    "Recommended unit price", "Win chance now", "Win chance at recommended",
    "Expected uplift", "Objective", "Band segment", "Floor", "Target", "Start",
    "Basis", "Basis in words", "Drivers", "Comparable closed deals", "Computed at",
)


@bp.get("/deals.csv")
@login_required
def deals_csv() -> ResponseReturnValue:
    filters = DealFilters.from_args(request.args)
    rows = queries.deals(warehouse.engine, current_scope(), seller=filters.seller,
                         stage=filters.stage, min_uplift=filters.min_uplift, sort=filters.sort)

    def line(d: dict[str, Any]) -> list[Any]:
        prices = {p.name: p.price for p in present.band(d)}
        state = present.honesty(d)
        return [d["opportunity_id"], d.get("deal_name"), d.get("account_name"),
                d.get("owner_name"), d.get("stage"), d.get("close_date"), d.get("list_total"),
                d.get("current_price"), d.get("current_discount"), d.get("recommended_price"),
                d.get("recommended_discount"), d.get("recommended_unit_price"),
                d.get("win_probability_current"), d.get("win_probability_recommended"),
                d.get("expected_uplift"), d.get("objective"), d.get("band_segment"),
                prices.get("Floor"), prices.get("Target"), prices.get("Start"),
                state.label, state.detail, d.get("drivers"), d.get("comparables"),
                d.get("computed_at")]

    return csv_response("deals", DEAL_COLUMNS, (line(d) for d in rows))


OPPORTUNITY_COLUMNS = ("Account ID", "Account", "Kind", "Expected value", "Score", "Reason",
                       "Deal ID", "Deal", "Product", "Computed at")


@bp.get("/opportunities.csv")
@login_required
def opportunities_csv() -> ResponseReturnValue:
    rows = queries.opportunities(warehouse.engine, current_scope(), kind=opportunity_kind())
    return csv_response("opportunities", OPPORTUNITY_COLUMNS, (
        [o.get("account_key"), o.get("account_name"), present.KIND_LABELS.get(o["kind"]),
         o.get("expected_value"), o.get("score"), o.get("reason"), o.get("opportunity_id"),
         o.get("deal_name"), o.get("product_name"), o.get("computed_at")] for o in rows))


TEAM_COLUMNS = (
    "Month", "Seller ID", "Seller", "Deals closed", "Won", "Win rate", "Win rate 95% low",
    "Win rate 95% high", "Team win rate", "Revenue won", "Average deal size",
    "Average discount", "Team average discount", "Cycle days", "Open pipeline", "Quota",
    "Quota attainment", "Comparison", "Flag",
)


@bp.get("/team.csv")
@login_required
def team_csv() -> ResponseReturnValue:
    """One month (`month`, as on the page) or, with month=all, every month the person
    sees; `seller`: that seller's months only (every month, unless one is asked for)."""
    scope = current_scope()
    wanted = request.args.get("month") or None
    seller = request.args.get("seller") or None
    if wanted == "all" or seller:
        rows = queries.team_metrics(warehouse.engine, scope, seller=seller,
                                    month=None if wanted == "all" else wanted)
        closed = {m: c for m, (c, _) in queries.closed_won(
            warehouse.engine, scope, whole_team=True).items()}
    else:
        view = summaries.team_month(warehouse.engine, scope, wanted)
        rows = view.rows
        closed = {view.month: view.team_closed or 0} if view.month else {}
    return csv_response("team", TEAM_COLUMNS, (
        [m["month"], m["seller_id"], m.get("seller_name"), m["deals_closed"], m["won"],
         m.get("win_rate"), m.get("win_rate_ci_low"), m.get("win_rate_ci_high"),
         m.get("team_win_rate"), m.get("revenue_won"), m.get("avg_deal_size"),
         m.get("avg_discount"), m.get("team_avg_discount"), m.get("cycle_days"),
         m.get("open_pipeline"), m.get("quota"), m.get("quota_attainment"),
         " ".join(present.verdict(m, closed.get(m["month"])).words), m.get("flag")]
        for m in rows))
