"""Reading a tenant's CRM data as frames, and the one write path of the analytics tables.

Every read and write is scoped by tenant_id. Writes replace a tenant's rows (and,
for seller metrics, one tenant-month's rows) in one transaction, so a rerun is
idempotent and a reader never sees half of a recomputation. The fitted price model
is stored here too (`price_model`), so the assets that need it fit it once per data
version (`fitted_price_model`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue.analytics import model_io
from accrue.analytics.features import (
    build_deal_frame,
    flatten_versions,
    lines_at_close,
    minimum_price,
)
from accrue.analytics.pricing import PriceModel, PricingConfig, fit_price_model
from accrue.db import dialect_insert
from accrue.schema import (
    OPPORTUNITY_KINDS,
    analytics_watermark,
    object_table,
    price_model,
    price_recommendation,
    price_recommendation_line,
    revenue_opportunity,
    seller_month_metric,
    utcnow,
)
from accrue.tenants import validate_tenant_id
from accrue.warehouse import Warehouse

# The asset whose incremental progress `analytics_watermark` records, and what it reads.
SELLER_METRICS_ASSET = "seller_metrics"
SELLER_INPUT_OBJECTS = ("opportunity", "opportunity_line", "user")
FRAME_OBJECTS = ("account", "opportunity", "opportunity_line", "product", "user")
# Objects read with their raw CRM record: users (quota fields), products (minimum price).
RAW_OBJECTS = ("user", "product")


@dataclass
class TenantData:
    """A tenant's current CRM tables (live rows) and the deal frame built from them."""

    tables: dict[str, pd.DataFrame]
    deals: pd.DataFrame  # build_deal_frame output plus amount, created_at, stage, probability


def read_table(engine: Engine, tenant_id: str, object_name: str) -> pd.DataFrame:
    """The tenant's live rows of one crm_* table (the raw JSON only for RAW_OBJECTS).

    In id order: the same data always gives the same frame, so its hash (and a fit on
    it) does not depend on how the database happens to return the rows.
    """
    validate_tenant_id(tenant_id)
    table = object_table(object_name)
    columns = [c for c in table.c if c.name != "raw" or object_name in RAW_OBJECTS]
    query = sa.select(*columns).where(table.c.tenant_id == tenant_id, sa.not_(table.c.is_deleted)
                                      ).order_by(table.c.source_id)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in columns])


def _versions(engine: Engine, tenant_id: str, object_name: str) -> pd.DataFrame:
    return flatten_versions(Warehouse(engine).all_versions(tenant_id, object_name))


def load_tenant(engine: Engine, tenant_id: str, *, closed_lines_at_close: bool = True
                ) -> TenantData:
    """Current tables and the deal frame; closed deals priced with the lines they closed with."""
    tables = {name: read_table(engine, tenant_id, name) for name in FRAME_OBJECTS}
    products = tables["product"]
    tables["product"] = products.drop(columns=["raw"]).assign(
        min_price=[minimum_price(raw) for raw in products["raw"]])
    opps, lines = tables["opportunity"], tables["opportunity_line"]
    if closed_lines_at_close and not opps.empty and not lines.empty:
        at_close = lines_at_close(_versions(engine, tenant_id, "opportunity"),
                                  _versions(engine, tenant_id, "opportunity_line"))
        closed_ids = set(opps.loc[opps["is_closed"].fillna(False).astype(bool), "source_id"])
        if not at_close.empty:
            at_close = at_close[at_close["opportunity_id"].isin(closed_ids)]
            open_lines = lines[~lines["opportunity_id"].isin(set(at_close["opportunity_id"]))]
            lines = pd.concat([open_lines, at_close], ignore_index=True)
    deals = build_deal_frame(opps, lines, tables["product"], tables["account"])
    extra = opps.rename(columns={"source_id": "opportunity_id", "source_created_at": "created_at"})
    keep = [c for c in ("opportunity_id", "amount", "created_at", "stage", "probability",
                        "source_modified_at", "name") if c in extra.columns]
    deals = deals.merge(extra[keep], on="opportunity_id", how="left")
    deals["amount"] = pd.to_numeric(deals["amount"], errors="coerce").astype(float)
    return TenantData(tables=tables, deals=deals)


def open_deal_activities(engine: Engine, tenant_id: str) -> pd.DataFrame:
    """The live activities of the tenant's live open deals: when each happened or was logged."""
    validate_tenant_id(tenant_id)
    a, o = object_table("activity"), object_table("opportunity")
    query = (
        sa.select(a.c.opportunity_id, a.c.activity_at, a.c.source_created_at)
        .join(o, sa.and_(o.c.tenant_id == a.c.tenant_id, o.c.source_id == a.c.opportunity_id))
        .where(a.c.tenant_id == tenant_id, sa.not_(a.c.is_deleted), sa.not_(o.c.is_deleted),
               sa.func.coalesce(o.c.is_closed, sa.false()) == sa.false())
    )
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame([dict(r) for r in rows],
                        columns=["opportunity_id", "activity_at", "source_created_at"])


def _clean(value: Any) -> Any:
    """NaN / NaT / numpy scalars as plain Python values a driver accepts."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _rows(frame: pd.DataFrame, table: sa.Table, fixed: Mapping[str, Any]) -> list[dict[str, Any]]:
    names = [c.name for c in table.c if c.name in frame.columns and c.name not in fixed]
    out = []
    for record in frame[names].to_dict("records"):
        row = {k: _clean(v) for k, v in record.items()}
        row.update(fixed)
        out.append(row)
    return out


def replace_price_recommendations(engine: Engine, tenant_id: str, recs: pd.DataFrame,
                                  model_version: str, *, lines: pd.DataFrame | None = None,
                                  at: datetime | None = None) -> int:
    """Replace the tenant's recommendations with `recs` (`pricing.recommend` output).

    `lines` (`lines.split_by_line` output) replaces the per-line rows in the same
    transaction, so a reader never sees lines of one run next to deals of another.
    """
    validate_tenant_id(tenant_id)
    frame = recs.copy()
    for column in ("fallback_reason", "clamp", "clamp_reason", "drivers", "comparables"):
        if column in frame.columns:
            frame[column] = frame[column].astype(object)
    fixed = {"tenant_id": tenant_id, "computed_at": at or utcnow(),
             "model_version": model_version}
    rows = _rows(frame, price_recommendation, fixed)
    line_rows = [] if lines is None else _rows(lines, price_recommendation_line, fixed)
    with engine.begin() as conn:
        for table in (price_recommendation_line, price_recommendation):
            conn.execute(sa.delete(table).where(table.c.tenant_id == tenant_id))
        if rows:
            conn.execute(sa.insert(price_recommendation), rows)
        if line_rows:
            conn.execute(sa.insert(price_recommendation_line), line_rows)
    return len(rows)


@dataclass(frozen=True)
class ModelFit:
    """The tenant's price model for some deals, and whether it was reused or fitted now."""

    model: PriceModel
    version: str  # price_model.model_version, carried by the recommendation rows
    data_hash: str
    fitted_at: datetime
    reused: bool
    why: str  # in words: reused (of when) or refitted (because)


def read_price_model(engine: Engine, tenant_id: str) -> dict[str, Any] | None:
    """The tenant's stored price-model row (parameters included), or None."""
    query = sa.select(price_model).where(price_model.c.tenant_id == validate_tenant_id(tenant_id))
    with engine.connect() as conn:
        row = conn.execute(query).mappings().one_or_none()
    return dict(row) if row is not None else None


def save_price_model(engine: Engine, tenant_id: str, model: PriceModel, data_hash: str,
                     *, at: datetime | None = None) -> dict[str, Any]:
    """Store the tenant's fitted model, replacing the previous one; returns the row.

    An upsert: two assets that fit the same new data at once both write, neither fails.
    """
    validate_tenant_id(tenant_id)
    row = {
        "tenant_id": tenant_id, "model_version": model_io.model_version(model, data_hash),
        "fit_version": model_io.FIT_VERSION, "data_hash": data_hash, "fitted_at": at or utcnow(),
        "decision": "curve" if model.usable else "bands",
        "decision_reason": None if model.usable else "; ".join(model.reasons),
        "n_closed": model.n_closed, "n_won": model.n_won, "n_lost": model.n_lost,
        "parameters": model_io.to_document(model),
    }
    stmt = dialect_insert(engine.dialect)(price_model).values(row)
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant_id"], set_={c: stmt.excluded[c] for c in row if c != "tenant_id"})
    with engine.begin() as conn:
        conn.execute(stmt)
    return row


def fitted_price_model(engine: Engine, tenant_id: str, deals: pd.DataFrame,
                       config: PricingConfig | None = None) -> ModelFit:
    """The tenant's model for these deals: the stored fit when its data hash matches, else
    a new fit, stored for the next reader (say which, in `why`)."""
    config = config or PricingConfig()
    data_hash = model_io.training_hash(deals, config)
    stored = read_price_model(engine, tenant_id)
    if stored is not None and stored["data_hash"] == data_hash:
        model = model_io.restore(stored["parameters"], deals)
        return ModelFit(model, stored["model_version"], data_hash, stored["fitted_at"], True,
                        f"reused the model fitted at {stored['fitted_at']:%Y-%m-%d %H:%M:%S} UTC "
                        f"(same training data and fit code, hash {data_hash[:12]})")
    if stored is None:
        why = "fitted: no stored model for this tenant"
    elif stored["fit_version"] != model_io.FIT_VERSION:
        why = "refitted: the fit code changed since the stored model"
    else:
        why = (f"refitted: the training data changed since the stored model (hash "
               f"{stored['data_hash'][:12]} → {data_hash[:12]})")
    model = fit_price_model(deals, config)
    row = save_price_model(engine, tenant_id, model, data_hash)
    return ModelFit(model, row["model_version"], data_hash, row["fitted_at"], False, why)


def replace_revenue_opportunities(engine: Engine, tenant_id: str, items: pd.DataFrame,
                                  *, at: datetime | None = None) -> int:
    """Replace the tenant's revenue opportunities (`opportunities.find_all` output)."""
    validate_tenant_id(tenant_id)
    unknown = set(items.get("kind", pd.Series(dtype=object))) - set(OPPORTUNITY_KINDS)
    if unknown:
        raise ValueError(f"unknown opportunity kinds {sorted(unknown)}")
    rows = _rows(items, revenue_opportunity, {"tenant_id": tenant_id,
                                               "computed_at": at or utcnow()})
    for row in rows:
        row.pop("id", None)
    with engine.begin() as conn:
        conn.execute(sa.delete(revenue_opportunity)
                     .where(revenue_opportunity.c.tenant_id == tenant_id))
        if rows:
            conn.execute(sa.insert(revenue_opportunity), rows)
    return len(rows)


def replace_seller_months(engine: Engine, tenant_id: str,
                          metrics_by_month: Mapping[str, pd.DataFrame], *, last_change_id: int,
                          full: bool, at: datetime | None = None) -> int:
    """Replace the given months of seller metrics and move the watermark, in one transaction.

    `full` replaces every month of the tenant (months absent from `metrics_by_month`
    are removed); otherwise only the given months are touched and the others' rows
    stay exactly as they were. The watermark moves with the rows, so a crash before
    the commit recomputes the same months and never skips one.
    """
    validate_tenant_id(tenant_id)
    stamp = at or utcnow()
    t = seller_month_metric
    rows: list[dict[str, Any]] = []
    for month, metrics in metrics_by_month.items():
        rows += _rows(metrics, t, {"tenant_id": tenant_id, "month": month, "computed_at": stamp})
    with engine.begin() as conn:
        stale = t.c.tenant_id == tenant_id
        if not full:
            stale = sa.and_(stale, t.c.month.in_(sorted(metrics_by_month)))
        conn.execute(sa.delete(t).where(stale))
        if rows:
            conn.execute(sa.insert(t), rows)
        _set_watermark(conn, tenant_id, SELLER_METRICS_ASSET, last_change_id, stamp)
    return len(rows)


def _set_watermark(conn: sa.Connection, tenant_id: str, asset_name: str, change_log_id: int,
                   at: datetime) -> None:
    w = analytics_watermark
    updated = conn.execute(
        sa.update(w).where(w.c.tenant_id == tenant_id, w.c.asset_name == asset_name)
        .values(change_log_id=change_log_id, updated_at=at)
    ).rowcount
    if not updated:
        conn.execute(sa.insert(w).values(tenant_id=tenant_id, asset_name=asset_name,
                                         change_log_id=change_log_id, updated_at=at))


def watermark(engine: Engine, tenant_id: str, asset_name: str) -> int | None:
    """The last change-log id whose effects are in the asset's rows; None before its first run."""
    w = analytics_watermark
    query = sa.select(w.c.change_log_id).where(w.c.tenant_id == validate_tenant_id(tenant_id),
                                               w.c.asset_name == asset_name)
    with engine.connect() as conn:
        return conn.execute(query).scalar_one_or_none()


def read_rows(engine: Engine, table: sa.Table, tenant_id: str,
              **filters: str) -> list[dict[str, Any]]:
    """A tenant's stored rows of an analytics table (optionally filtered by equal columns)."""
    validate_tenant_id(tenant_id)
    query = sa.select(table).where(table.c.tenant_id == tenant_id)
    for name, value in filters.items():
        query = query.where(table.c[name] == value)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


# Every analytics table holding a tenant's rows, children first (`delete_tenant`).
TENANT_TABLES: tuple[sa.Table, ...] = (
    price_recommendation_line, price_recommendation, price_model, revenue_opportunity,
    seller_month_metric, analytics_watermark,
)


def delete_tenant(engine: Engine, tenant_id: str) -> dict[str, int]:
    """Delete the tenant's results, with its synced data (results computed from deleted
    data must not outlive it); one transaction. Rows deleted per table."""
    validate_tenant_id(tenant_id)
    with engine.begin() as conn:
        return {table.name: int(conn.execute(
            sa.delete(table).where(table.c.tenant_id == tenant_id)).rowcount or 0)
            for table in TENANT_TABLES}


@dataclass(frozen=True)
class SellerChanges:
    """What the change-log versions after a watermark mean for seller metrics."""

    months: frozenset[str]  # close months touched by changed deals and line items
    sellers_changed: bool  # a user record changed: names, managers and quotas of every month
    last_change_id: int  # the new watermark (the old one when nothing changed)


def seller_changes(engine: Engine, tenant_id: str, after_id: int) -> SellerChanges:
    """Close-date months touched by change-log versions with id > after_id, and the max id.

    An opportunity version touches the month of its close date and the month of the
    previous version's close date (a deal moved from March to May touches both; a
    deleted deal touches the month it was in); a line-item version touches its
    opportunity's current close month. A changed user (seller) is reported apart:
    it changes the seller's rows in every month.
    """
    validate_tenant_id(tenant_id)
    warehouse = Warehouse(engine)
    changes = warehouse.log_after(tenant_id, after_id, SELLER_INPUT_OBJECTS)
    if not changes:
        return SellerChanges(frozenset(), False, after_id)
    opp_ids = {c["source_id"] for c in changes if c["object_name"] == "opportunity"}
    line_opps = {opp for c in changes if c["object_name"] == "opportunity_line"
                 and (opp := (c["fields"] or {}).get("opportunity_id")) is not None}
    versions: dict[str, list[tuple[datetime, Any]]] = {}
    for row in warehouse.versions_of(tenant_id, "opportunity", opp_ids | line_opps):
        versions.setdefault(row["source_id"], []).append(
            (row["source_modified_at"], (row["fields"] or {}).get("close_date")))
    for history in versions.values():
        history.sort(key=lambda v: v[0])
    months: set[str] = set()
    for change in changes:
        if change["object_name"] == "user":
            continue
        if change["object_name"] == "opportunity":
            history = versions.get(change["source_id"], [])
            at = change["source_modified_at"]
            earlier = [close for stamp, close in history if stamp < at]
            candidates: Iterable[Any] = [(change["fields"] or {}).get("close_date")]
            if earlier:
                candidates = [*candidates, earlier[-1]]
        else:
            history = versions.get(str((change["fields"] or {}).get("opportunity_id")), [])
            candidates = [history[-1][1]] if history else []
        months |= {str(c)[:7] for c in candidates if c}
    return SellerChanges(
        months=frozenset(months),
        sellers_changed=any(c["object_name"] == "user" for c in changes),
        last_change_id=max(c["id"] for c in changes),
    )
