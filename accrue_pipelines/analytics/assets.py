"""Analytics assets: price recommendations, revenue opportunities and seller metrics (F5).

All three are partitioned by tenant only and re-run when a sync wrote rows of an
object they read (`sensors.py`, from the assets' own dependencies).
Price recommendations and revenue opportunities are computed for the tenant as a
whole on one price model per version of its closed deals: whichever runs first fits
and stores it (table `price_model`), the other reuses it (metadata `model_fit`
says which). Seller metrics are per seller and month, and a tenant has years of months:
the asset reads the change log since its watermark and recomputes only the months
those changes touch — the old and the new close month of each changed deal — so
the partition count stays one per tenant and F5's "only what is affected" holds
inside the partition.

numpy, pandas, scipy and matplotlib are imported inside the asset bodies, never
at module load: every process that loads the code location pays for what is
imported here.
"""

from datetime import UTC, datetime

import dagster as dg

from accrue_pipelines.constants import ANALYTICS_GROUP, sync_asset_key
from accrue_pipelines.platform.partitions import tenant_partitions
from accrue_pipelines.platform.resources import WarehouseResource

# Price-book entries are not read: an entry is a list price (the lines carry it), not a floor.
DEAL_OBJECTS = ("account", "opportunity", "opportunity_line", "product")
# Revenue opportunities also read activities (the stalled rule), when the tenant imports them.
OPPORTUNITY_OBJECTS = (*DEAL_OBJECTS, "activity")
SELLER_OBJECTS = ("opportunity", "opportunity_line", "user")
PREVIEW_ROWS = 10
# The months listed by name in the metadata; beyond this only the count is shown.
MONTHS_LISTED = 36


@dg.asset(
    partitions_def=tenant_partitions,
    deps=[sync_asset_key(o) for o in DEAL_OBJECTS],
    group_name=ANALYTICS_GROUP,
    kinds={"python", "sql"},
    metadata={"dagster/table_name": "price_recommendation"},
    description="Per open deal: recommended quote, win probabilities, uplift, the segment's "
                "Floor/Target/Start band, drivers and comparables, or why the deal cannot be "
                "priced (table price_recommendation).",
)
def price_recommendations(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    from accrue.analytics import recommend, store
    from accrue.analytics.lines import split_by_line
    from accrue_pipelines.analytics import render

    tenant_id = context.partition_key
    engine = warehouse.engine()
    data = store.load_tenant(engine, tenant_id)
    deals = data.deals
    fit = store.fitted_price_model(engine, tenant_id, deals)
    model = fit.model
    context.log.info(f"{tenant_id}: price model {fit.version}: {fit.why}")
    # Every open deal gets a row: a price, the band, or "excluded" with the reason.
    recs = recommend(model, deals[~deals["is_closed"]])
    recs, lines = split_by_line(recs, data.tables["opportunity_line"], data.tables["product"])
    version = fit.version
    written = store.replace_price_recommendations(engine, tenant_id, recs, version, lines=lines)
    top = recs.sort_values("expected_uplift", ascending=False, na_position="last").head(
        PREVIEW_ROWS)
    preview = render.table(top, {
        "opportunity_id": "", "method": "", "current_discount": "%",
        "recommended_discount": "%", "win_probability_current": "%",
        "win_probability_recommended": "%", "expected_uplift": "int", "clamp": "",
    })
    return dg.MaterializeResult(metadata={
        "recommendations": written,
        "by_model": int((recs["method"] == "model").sum()) if len(recs) else 0,
        "by_tenant_curve": int((recs["method"] == "tenant_curve").sum()) if len(recs) else 0,
        "by_band": int((recs["method"] == "segment band").sum()) if len(recs) else 0,
        "excluded": int((recs["method"] == "excluded").sum()) if len(recs) else 0,
        "clamped": int(recs["clamp"].notna().sum()) if len(recs) else 0,
        "line_rows": len(lines),
        "model_version": version,
        "model_decision": "curve" if model.usable else "bands",
        "model_reused": fit.reused,
        "model_fit": fit.why,
        "model": dg.MetadataValue.md(model.explain()),
        "top_recommendations": preview,
        "win_curve": dg.MetadataValue.md(render.curve_plot(model)),
    })


@dg.asset(
    partitions_def=tenant_partitions,
    deps=[sync_asset_key(o) for o in OPPORTUNITY_OBJECTS],
    group_name=ANALYTICS_GROUP,
    kinds={"python", "sql"},
    metadata={"dagster/table_name": "revenue_opportunity"},
    description="Cross-sell, upsell, win-back and stalled deals with expected value and a "
                "one-line reason (table revenue_opportunity); stalled means no activity "
                "when the tenant imports activities, else no change to the deal.",
)
def revenue_opportunities(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    from accrue import tenants
    from accrue.analytics import opportunities as opps_lib
    from accrue.analytics import store
    from accrue_pipelines.analytics import render

    tenant_id = context.partition_key
    engine = warehouse.engine()
    now = datetime.now(UTC)
    data = store.load_tenant(engine, tenant_id)
    # The model price_recommendations stored for the same data; refitted only if it changed.
    fit = store.fitted_price_model(engine, tenant_id, data.deals)
    context.log.info(f"{tenant_id}: price model {fit.version}: {fit.why}")
    last_activities = None
    tenant = tenants.get_tenant(engine, tenant_id)
    if tenant is not None and tenant.syncs("activity"):
        last_activities = opps_lib.last_activity(
            store.open_deal_activities(engine, tenant_id), now)
    items = opps_lib.find_all(fit.model, data.deals, data.tables["opportunity_line"],
                              data.tables["product"], now, last_activities)
    written = store.replace_revenue_opportunities(engine, tenant_id, items)
    counts = items["kind"].value_counts().to_dict() if len(items) else {}
    top = items.sort_values("expected_value", ascending=False).head(PREVIEW_ROWS)
    return dg.MaterializeResult(metadata={
        "opportunities": written,
        "model_version": fit.version,
        "model_reused": fit.reused,
        "model_fit": fit.why,
        "stalled_rule": "no activity" if last_activities is not None else "no change",
        **{f"{kind}_count": int(counts.get(kind, 0)) for kind in
           ("cross_sell", "upsell", "win_back", "stalled")},
        "total_expected_value": float(items["expected_value"].sum()) if len(items) else 0.0,
        "top_opportunities": render.table(top, {
            "kind": "", "account_id": "", "opportunity_id": "", "expected_value": "int",
            "reason": ""}),
    })


def _month_list(months: list[str]) -> str:
    if len(months) <= MONTHS_LISTED:
        return ", ".join(months) or "none"
    return f"{months[0]} … {months[-1]} ({len(months)} months)"


@dg.asset(
    partitions_def=tenant_partitions,
    deps=[sync_asset_key(o) for o in SELLER_OBJECTS],
    group_name=ANALYTICS_GROUP,
    kinds={"python", "sql"},
    metadata={"dagster/table_name": "seller_month_metric"},
    description="Per seller and month next to the team: win rate with Wilson interval, "
                "shrunk estimates, revenue, discount, cycle, pipeline, quota; flags only "
                "where significant. Each run recomputes only the months that the deal "
                "changes since the previous run touch (metadata `months_recomputed`).",
)
def seller_metrics(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    from accrue.analytics import sellers as sellers_lib
    from accrue.analytics import store
    from accrue_pipelines.analytics import render

    tenant_id = context.partition_key
    engine = warehouse.engine()
    # Read the watermark and the changes before the data: a change committed meanwhile is
    # either in both or is recomputed by the next run, never skipped.
    previous = store.watermark(engine, tenant_id, store.SELLER_METRICS_ASSET)
    changes = store.seller_changes(engine, tenant_id, previous or 0)
    data = store.load_tenant(engine, tenant_id, closed_lines_at_close=False)
    full = previous is None or changes.sellers_changed
    if full:
        months = sellers_lib.months_with_deals(data.deals)
        why = ("first run: every month with a deal" if previous is None
               else "a seller record changed: every month")
    else:
        months = sorted(changes.months)
        why = "the old and new close months of the deals changed since the last run"
    users = data.tables["user"]
    quotas = sellers_lib.quotas_from_users(users)
    metrics = {m: sellers_lib.monthly_metrics(data.deals, m, users, quotas) for m in months}
    written = store.replace_seller_months(engine, tenant_id, metrics,
                                          last_change_id=changes.last_change_id, full=full)
    context.log.info(f"{tenant_id}: recomputed {len(months)} month(s) ({why}): "
                     f"{_month_list(months)}")
    metadata: dict[str, object] = {
        "months_recomputed": len(months),
        "months": _month_list(months),
        "recompute_reason": why,
        "rows_written": written,
        "change_log_watermark": changes.last_change_id,
    }
    latest = max((m for m in months if len(metrics[m])), default=None)
    if latest is not None:
        frame = metrics[latest]
        metadata["latest_month"] = latest
        metadata["sellers_table"] = render.table(frame.head(25), {
            "seller_name": "", "deals_closed": "int", "win_rate": "%",
            "win_rate_ci_low": "%", "win_rate_ci_high": "%", "win_rate_shrunk": "%",
            "revenue_won": "int", "avg_discount": "%", "flag": ""})
        if (frame["deals_closed"].astype(int) > 0).any():
            metadata["comparison"] = dg.MetadataValue.md(render.seller_plot(frame, latest))
    return dg.MaterializeResult(metadata=metadata)  # type: ignore[arg-type]


analytics_assets = [price_recommendations, revenue_opportunities, seller_metrics]
