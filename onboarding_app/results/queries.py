"""Reads of the analytics tables for the results pages, the CSV downloads and the API.

Every function takes a `Scope` and filters on its tenant and on the sellers it may see,
so a page cannot forget either. Deals are scoped by their owner; revenue opportunities
by the owner of their deal, or of their account when they concern an account.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue.schema import (
    object_table,
    price_recommendation,
    price_recommendation_line,
    revenue_opportunity,
    seller_month_metric,
)
from accrue.warehouse import Warehouse
from onboarding_app.results.scope import Scope


@dataclass(frozen=True)
class DealSort:
    """A deal order: the column, its direction (empty values last), and the row's field."""

    column: Callable[[sa.Table, sa.Table], sa.ColumnElement[Any]]
    descending: bool
    field: str  # the key of the column's value in a `deals` row

    def order(self, pr: sa.Table, o: sa.Table) -> sa.ColumnElement[Any]:
        column = self.column(pr, o)
        return (column.desc() if self.descending else column.asc()).nulls_last()

    def after(self, pr: sa.Table, o: sa.Table, key: DealKey) -> sa.ColumnElement[bool]:
        """The rows that come after `key` in this order (keyset pagination)."""
        column, later_id = self.column(pr, o), pr.c.opportunity_id > key.opportunity_id
        if key.value is None:  # empty values come last, by id
            return sa.and_(column.is_(None), later_id)
        beyond = column < key.value if self.descending else column > key.value
        return sa.or_(beyond, sa.and_(column == key.value, later_id), column.is_(None))


@dataclass(frozen=True)
class DealKey:
    """Where a page of deals ended: its last row's sort value and id (a keyset cursor)."""

    value: Any
    opportunity_id: str


DEAL_SORT_KEYS: dict[str, DealSort] = {
    "uplift": DealSort(lambda pr, o: pr.c.expected_uplift, True, "expected_uplift"),
    "amount": DealSort(lambda pr, o: o.c.amount, True, "amount"),
    "close_date": DealSort(lambda pr, o: o.c.close_date, False, "close_date"),
    "discount": DealSort(lambda pr, o: pr.c.current_discount, True, "current_discount"),
    "name": DealSort(lambda pr, o: o.c.name, False, "deal_name"),
}
DEAL_SORTS = {name: sort.order for name, sort in DEAL_SORT_KEYS.items()}


def _deal_select(scope: Scope) -> sa.Select[Any]:
    pr = price_recommendation
    o, a, u = object_table("opportunity"), object_table("account"), object_table("user")
    return (
        sa.select(
            pr, o.c.name.label("deal_name"), o.c.stage, o.c.amount, o.c.close_date,
            o.c.owner_id, a.c.source_id.label("account_id"), a.c.name.label("account_name"),
            u.c.name.label("owner_name"),
        )
        .join(o, sa.and_(o.c.tenant_id == pr.c.tenant_id,
                         o.c.source_id == pr.c.opportunity_id))
        .outerjoin(a, sa.and_(a.c.tenant_id == o.c.tenant_id, a.c.source_id == o.c.account_id))
        .outerjoin(u, sa.and_(u.c.tenant_id == o.c.tenant_id, u.c.source_id == o.c.owner_id))
        .where(pr.c.tenant_id == scope.tenant_id, o.c.is_deleted.is_(False),
               scope.owner_filter(o.c.owner_id))
    )


def _filtered(query: sa.Select[Any], seller: str | None, stage: str | None,
              min_uplift: float | None = None) -> sa.Select[Any]:
    o = object_table("opportunity")
    if seller:
        query = query.where(o.c.owner_id == seller)
    if stage:
        query = query.where(o.c.stage == stage)
    if min_uplift is not None:
        query = query.where(price_recommendation.c.expected_uplift >= min_uplift)
    return query


def deals(engine: Engine, scope: Scope, *, seller: str | None = None,
          stage: str | None = None, sort: str = "uplift",
          limit: int | None = None, offset: int = 0,
          after: DealKey | None = None,
          min_uplift: float | None = None) -> list[dict[str, Any]]:
    """Open deals with their recommendation, filtered and sorted as the page asks.

    A page of them: `limit` rows from `offset` (numbered pages), or after `after`, the
    last row of the previous page (`deal_key`; the API's cursor, which neither skips nor
    repeats a row when deals are added or removed between pages).

    A page is read in two steps: the ids in order (a narrow sort), then those deals' full
    rows. Sorting every visible deal's whole row to keep 50 made a 10,000-deal page slow
    (benchmarks/results_pages.py).
    """
    pr, o = price_recommendation, object_table("opportunity")
    order = DEAL_SORT_KEYS.get(sort, DEAL_SORT_KEYS["uplift"])
    query = _filtered(_deal_select(scope), seller, stage, min_uplift)
    if after is not None:
        query = query.where(order.after(pr, o, after))
    query = query.order_by(order.order(pr, o), pr.c.opportunity_id)
    with engine.connect() as conn:
        if not limit and not offset:
            return [dict(row) for row in conn.execute(query).mappings()]
        ids = list(conn.execute(_page(query.with_only_columns(pr.c.opportunity_id),
                                      limit, offset)).scalars())
        if not ids:
            return []
        rows = conn.execute(_deal_select(scope).where(pr.c.opportunity_id.in_(ids)))
        found = {row["opportunity_id"]: dict(row) for row in rows.mappings()}
    return [found[i] for i in ids if i in found]  # a deal recomputed meanwhile: skipped


def _page(query: sa.Select[Any], limit: int | None, offset: int) -> sa.Select[Any]:
    if limit:
        query = query.limit(limit)
    return query.offset(offset) if offset else query


def deal_key(row: dict[str, Any], sort: str = "uplift") -> DealKey:
    """The keyset position of a `deals` row in the order `sort`."""
    order = DEAL_SORT_KEYS.get(sort, DEAL_SORT_KEYS["uplift"])
    return DealKey(row[order.field], row["opportunity_id"])


def count_deals(engine: Engine, scope: Scope, *, seller: str | None = None,
                stage: str | None = None, min_uplift: float | None = None) -> int:
    """How many deals `deals` returns unpaginated (for page links)."""
    query = _filtered(_deal_select(scope), seller, stage, min_uplift)
    counted = sa.select(sa.func.count()).select_from(
        query.with_only_columns(price_recommendation.c.opportunity_id).subquery())
    with engine.connect() as conn:
        return int(conn.execute(counted).scalar_one())


def deal(engine: Engine, scope: Scope, opportunity_id: str) -> dict[str, Any] | None:
    """One deal, or None when it is not there or not the person's to see (the same 404)."""
    query = _deal_select(scope).where(price_recommendation.c.opportunity_id == opportunity_id)
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        return None
    found = dict(row)
    found["win_curve"] = win_curve(found.get("curve_a"), found.get("curve_b"),
                                   found.get("list_total"))
    return found


# The curve is drawn from 30 % to 130 % of list: every price a deal is quoted at in practice.
CURVE_RATIOS = (0.3, 1.3)
CURVE_POINTS = 41


def win_curve(a: float | None, b: float | None, list_total: float | None
              ) -> list[tuple[float, float]] | None:
    """[price, win probability] points of the deal's stored curve; None without one."""
    if a is None or b is None or not list_total or list_total <= 0:
        return None
    import numpy as np

    from accrue.analytics.optimum import win_probability

    ratios = np.linspace(*CURVE_RATIOS, CURVE_POINTS)
    probabilities = win_probability(a, b, ratios)
    return [(float(r * list_total), float(p)) for r, p in zip(ratios, probabilities, strict=True)]


def deal_lines(engine: Engine, scope: Scope, opportunity_id: str) -> list[dict[str, Any]]:
    """The deal's recommended price per line; the caller has checked the deal is in scope."""
    lines, p = price_recommendation_line, object_table("product")
    query = (
        sa.select(lines, p.c.name.label("product_name"))
        .outerjoin(p, sa.and_(p.c.tenant_id == lines.c.tenant_id,
                              p.c.source_id == lines.c.product_id))
        .where(lines.c.tenant_id == scope.tenant_id, lines.c.opportunity_id == opportunity_id)
        .order_by(lines.c.list_total.desc(), lines.c.line_id)
    )
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def filter_choices(engine: Engine, scope: Scope) -> dict[str, list[tuple[str, str]]]:
    """The sellers and stages that occur among the deals the person may see."""
    o, u = object_table("opportunity"), object_table("user")
    base = (
        sa.select(o.c.owner_id, u.c.name, o.c.stage)
        .join(price_recommendation, sa.and_(
            price_recommendation.c.tenant_id == o.c.tenant_id,
            price_recommendation.c.opportunity_id == o.c.source_id))
        .outerjoin(u, sa.and_(u.c.tenant_id == o.c.tenant_id, u.c.source_id == o.c.owner_id))
        .where(o.c.tenant_id == scope.tenant_id, o.c.is_deleted.is_(False),
               scope.owner_filter(o.c.owner_id))
        .distinct()
    )
    with engine.connect() as conn:
        rows = conn.execute(base).all()
    sellers = sorted({(r.owner_id, r.name or r.owner_id) for r in rows if r.owner_id},
                     key=lambda s: s[1].lower())
    stages = sorted({(r.stage, r.stage) for r in rows if r.stage})
    return {"sellers": sellers, "stages": stages}


def _opportunity_select(scope: Scope, kind: str | None = None) -> sa.Select[Any]:
    ro = revenue_opportunity
    o, a, p = object_table("opportunity"), object_table("account"), object_table("product")
    owner = sa.func.coalesce(o.c.owner_id, a.c.owner_id)
    query = (
        sa.select(ro, a.c.source_id.label("account_key"), a.c.name.label("account_name"),
                  o.c.name.label("deal_name"), p.c.name.label("product_name"),
                  owner.label("owner_id"))
        .outerjoin(o, sa.and_(o.c.tenant_id == ro.c.tenant_id,
                              o.c.source_id == ro.c.opportunity_id))
        .outerjoin(a, sa.and_(a.c.tenant_id == ro.c.tenant_id,
                              a.c.source_id == sa.func.coalesce(ro.c.account_id, o.c.account_id)))
        .outerjoin(p, sa.and_(p.c.tenant_id == ro.c.tenant_id, p.c.source_id == ro.c.product_id))
        .where(ro.c.tenant_id == scope.tenant_id, scope.owner_filter(owner))
    )
    return query.where(ro.c.kind == kind) if kind else query


def opportunities(engine: Engine, scope: Scope, *, kind: str | None = None,
                  limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """Revenue opportunities, highest expected value first, with account and deal names.

    `account_key` is the account the opportunity is about: its own, or its deal's.
    `limit` rows from `offset`: a page (the API's).
    """
    query = _opportunity_select(scope, kind).order_by(
        revenue_opportunity.c.expected_value.desc(), revenue_opportunity.c.id)
    query = _page(query, limit, offset)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def team_metrics(engine: Engine, scope: Scope, *, month: str | None = None,
                 seller: str | None = None, limit: int | None = None,
                 offset: int = 0) -> list[dict[str, Any]]:
    """Seller-months the person may see (a seller: their own rows), newest month first.

    The team's figures ride on every row (`team_win_rate`, `team_avg_discount`), so a
    seller compares with the team without seeing teammates' rows. `limit` rows from
    `offset`: a page (the API's; the id breaks ties of names, so pages never overlap).
    """
    m = seller_month_metric
    query = (sa.select(m).where(m.c.tenant_id == scope.tenant_id,
                                scope.owner_filter(m.c.seller_id))
             .order_by(m.c.month.desc(), m.c.seller_name, m.c.seller_id))
    if month:
        query = query.where(m.c.month == month)
    if seller:
        query = query.where(m.c.seller_id == seller)
    query = _page(query, limit, offset)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def freshness(engine: Engine, tenant_id: str) -> dict[str, datetime | None]:
    """When the tenant's data was last synced and its results last computed."""
    synced = Warehouse(engine).last_success_at(tenant_id)
    with engine.connect() as conn:
        computed = conn.execute(sa.select(sa.func.max(price_recommendation.c.computed_at))
                                .where(price_recommendation.c.tenant_id == tenant_id)).scalar()
        metrics = conn.execute(sa.select(sa.func.max(seller_month_metric.c.computed_at))
                               .where(seller_month_metric.c.tenant_id == tenant_id)).scalar()
    return {"synced_at": synced, "computed_at": max(
        (t for t in (computed, metrics) if t is not None), default=None)}


# -- aggregates: the home page's figures and the team's side of every comparison --------


def deal_totals(engine: Engine, scope: Scope) -> dict[str, Any]:
    """Open deals with a row, how many have a price, and their summed expected uplift."""
    pr = price_recommendation
    query = _deal_select(scope).with_only_columns(
        sa.func.count(), sa.func.count().filter(pr.c.method != "excluded"),
        sa.func.sum(pr.c.expected_uplift))
    with engine.connect() as conn:
        rows, priced, uplift = conn.execute(query).one()
    return {"rows": int(rows), "priced": int(priced),
            "uplift": float(uplift) if uplift is not None else None}


def opportunity_totals(engine: Engine, scope: Scope) -> dict[str, Any]:
    """How many revenue opportunities the person may see, and their expected value."""
    found = _opportunity_select(scope).subquery()
    query = sa.select(sa.func.count(), sa.func.sum(found.c.expected_value))
    with engine.connect() as conn:
        count, value = conn.execute(query).one()
    return {"count": int(count), "value": float(value or 0.0)}


def seller_months(engine: Engine, scope: Scope) -> list[str]:
    """The months in which a seller the person may see closed a deal, newest first."""
    m = seller_month_metric
    query = (sa.select(m.c.month).where(m.c.tenant_id == scope.tenant_id,
                                        scope.owner_filter(m.c.seller_id), m.c.deals_closed > 0)
             .group_by(m.c.month).order_by(m.c.month.desc()))
    with engine.connect() as conn:
        return [row.month for row in conn.execute(query)]


def closed_won(engine: Engine, scope: Scope, *, months: list[str] | None = None,
               whole_team: bool = False) -> dict[str, tuple[int, int]]:
    """Deals closed and won per month: the person's sellers, or with `whole_team` the
    tenant's whole team, the comparison every role sees (a sum, never a teammate's row)."""
    m = seller_month_metric
    query = (sa.select(m.c.month, sa.func.sum(m.c.deals_closed), sa.func.sum(m.c.won))
             .where(m.c.tenant_id == scope.tenant_id).group_by(m.c.month))
    if not whole_team:
        query = query.where(scope.owner_filter(m.c.seller_id))
    if months is not None:
        query = query.where(m.c.month.in_(months))
    with engine.connect() as conn:
        return {month: (int(closed or 0), int(won or 0))
                for month, closed, won in conn.execute(query)}


def computed_at(engine: Engine, tenant_id: str, table: sa.Table) -> datetime | None:
    """When one analytics table of the tenant was last written."""
    query = sa.select(sa.func.max(table.c.computed_at)).where(table.c.tenant_id == tenant_id)
    with engine.connect() as conn:
        return conn.execute(query).scalar()
