"""Analytics assets: price recommendations, revenue opportunities and seller metrics (F5).

Price recommendations and revenue opportunities are per tenant and recompute when
the deals they learn from change (data-version based, like `pipeline_summary`).
Seller metrics are per tenant and month; `seller_metrics_sensor` maps the records a
sync changed (the change log since its cursor) to the months they touch — the close
month of each changed deal's previous and new version — and requests only those.
"""

import base64
import hashlib
import io
import json
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import pandas as pd

from accrue.analytics import fit_price_model, recommend, store
from accrue.analytics import opportunities as opps_lib
from accrue.analytics import sellers as sellers_lib
from accrue.analytics.pricing import PriceModel
from accrue_pipelines.partitions import TENANT_PARTITIONS_NAME, tenant_partitions
from accrue_pipelines.resources import WarehouseResource
from accrue_pipelines.sensors import IN_FLIGHT
from accrue_pipelines.summary_assets import ON_UPSTREAM_CHANGE
from accrue_pipelines.sync_assets import sync_asset_key

ANALYTICS_GROUP = "analytics"
DEAL_OBJECTS = ("account", "opportunity", "opportunity_line", "product", "price_book_entry")
SELLER_OBJECTS = ("opportunity", "opportunity_line", "user")
MONTHS_START = "2023-01"
PREVIEW_ROWS = 10

month_partitions = dg.MonthlyPartitionsDefinition(
    start_date=MONTHS_START, end_offset=1, fmt="%Y-%m"
)
tenant_month_partitions = dg.MultiPartitionsDefinition(
    {"tenant": tenant_partitions, "month": month_partitions}
)


def _png_markdown(fig: object, alt: str) -> str:
    """A matplotlib figure as an embedded PNG in markdown (shown inline by the Dagster UI)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"![{alt}](data:image/png;base64,{encoded})"


def _figure() -> tuple[object, object]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 3.5))


def _md_table(frame: pd.DataFrame, columns: dict[str, str]) -> str:
    """A small markdown table; `columns` maps column → format spec ('' for str)."""
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)
    lines = [head]
    for row in frame.itertuples(index=False):
        cells = []
        for name, spec in columns.items():
            value = getattr(row, name)
            ok = value is not None and not (isinstance(value, float) and np.isnan(value))
            cells.append(format(value, spec) if ok and spec else (str(value) if ok else "—"))
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def model_version(model: PriceModel) -> str:
    """Identifies the training data and the outcome, so a reader can tell refits apart."""
    h = model.history
    basis = (h[["opportunity_id", "ratio", "is_won"]].to_csv(index=False)
             if not h.empty and "opportunity_id" in h else "")
    digest = hashlib.sha1(basis.encode(), usedforsecurity=False).hexdigest()[:12]
    return f"{'curve' if model.usable else 'bands'}-{model.n_closed}-{digest}"


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
        ax.plot(1 - grid, model.predict(probe, grid), label="model (tenant-wide)")  # type: ignore[attr-defined]
        ax.set_ylabel("win probability")  # type: ignore[attr-defined]
    if not h.empty:
        won = h[h["is_won"].astype(bool)]["ratio"]
        lost = h[~h["is_won"].astype(bool)]["ratio"]
        ax.hist([1 - won, 1 - lost], bins=20, density=True, alpha=0.35,  # type: ignore[attr-defined]
                label=["won deals", "lost deals"])
    ax.set_xlabel("discount off list")  # type: ignore[attr-defined]
    ax.set_title("Win probability vs discount" if model.usable  # type: ignore[attr-defined]
                 else "No price curve: won/lost discounts")
    ax.legend(fontsize=8)  # type: ignore[attr-defined]
    return _png_markdown(fig, "win probability curve")


@dg.asset(
    partitions_def=tenant_partitions,
    deps=[sync_asset_key(o) for o in DEAL_OBJECTS],
    group_name=ANALYTICS_GROUP,
    automation_condition=ON_UPSTREAM_CHANGE,
    kinds={"python", "sql"},
    metadata={"dagster/table_name": "price_recommendation"},
    description="Per open deal: recommended quote, win probabilities, uplift, the segment's "
                "Floor/Target/Start band, drivers and comparables (table price_recommendation).",
)
def price_recommendations(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    tenant_id = context.partition_key
    engine = warehouse.engine()
    data = store.load_tenant(engine, tenant_id)
    deals = data.deals
    model = fit_price_model(deals)
    open_deals = deals[~deals["is_closed"] & deals["exclusion"].isna()]
    recs = recommend(model, open_deals)
    version = model_version(model)
    written = store.replace_price_recommendations(engine, tenant_id, recs, version)
    top = recs.sort_values("expected_uplift", ascending=False, na_position="last").head(
        PREVIEW_ROWS)
    preview = _md_table(top, {
        "opportunity_id": "", "method": "", "current_discount": ".0%",
        "recommended_discount": ".0%", "win_probability_current": ".0%",
        "win_probability_recommended": ".0%", "expected_uplift": ",.0f", "clamp": "",
    })
    return dg.MaterializeResult(metadata={
        "recommendations": written,
        "by_model": int((recs["method"] == "model").sum()) if len(recs) else 0,
        "by_tenant_curve": int((recs["method"] == "tenant_curve").sum()) if len(recs) else 0,
        "by_band": int((recs["method"] == "segment band").sum()) if len(recs) else 0,
        "clamped": int(recs["clamp"].notna().sum()) if len(recs) else 0,
        "model_version": version,
        "model": dg.MetadataValue.md(model.explain()),
        "top_recommendations": dg.MetadataValue.md(preview),
        "win_curve": dg.MetadataValue.md(curve_plot(model)),
    })


@dg.asset(
    partitions_def=tenant_partitions,
    deps=[sync_asset_key(o) for o in DEAL_OBJECTS],
    group_name=ANALYTICS_GROUP,
    automation_condition=ON_UPSTREAM_CHANGE,
    kinds={"python", "sql"},
    metadata={"dagster/table_name": "revenue_opportunity"},
    description="Cross-sell, upsell, win-back and stalled deals with expected value and a "
                "one-line reason (table revenue_opportunity).",
)
def revenue_opportunities(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    tenant_id = context.partition_key
    engine = warehouse.engine()
    data = store.load_tenant(engine, tenant_id)
    model = fit_price_model(data.deals)
    items = opps_lib.find_all(model, data.deals, data.tables["opportunity_line"],
                              data.tables["product"], datetime.now(UTC))
    written = store.replace_revenue_opportunities(engine, tenant_id, items)
    counts = items["kind"].value_counts().to_dict() if len(items) else {}
    top = items.sort_values("expected_value", ascending=False).head(PREVIEW_ROWS)
    return dg.MaterializeResult(metadata={
        "opportunities": written,
        **{f"{kind}_count": int(counts.get(kind, 0)) for kind in
           ("cross_sell", "upsell", "win_back", "stalled")},
        "total_expected_value": float(items["expected_value"].sum()) if len(items) else 0.0,
        "top_opportunities": dg.MetadataValue.md(_md_table(top, {
            "kind": "", "account_id": "", "opportunity_id": "", "expected_value": ",.0f",
            "reason": ""})),
    })


def seller_plot(metrics: pd.DataFrame, month: str) -> str:
    """Each seller's win rate with its Wilson interval, the shrunk estimate and the team rate."""
    fig, ax = _figure()
    m = metrics[metrics["deals_closed"].astype(int) > 0].sort_values("win_rate_shrunk")
    y = np.arange(len(m))
    rate = m["win_rate"].astype(float).to_numpy()
    low, high = (m[c].astype(float).to_numpy() for c in ("win_rate_ci_low", "win_rate_ci_high"))
    labels = [str(n or s) for n, s in zip(m["seller_name"], m["seller_id"], strict=True)]
    ax.errorbar(rate, y, xerr=[rate - low, high - rate], fmt="o",  # type: ignore[attr-defined]
                label="win rate (95% Wilson)")
    ax.plot(m["win_rate_shrunk"].astype(float), y, "x", label="shrunk to team")  # type: ignore[attr-defined]
    if len(m):
        ax.axvline(float(m["team_win_rate"].iloc[0]), ls="--", c="grey", label="team")  # type: ignore[attr-defined]
    ax.set_yticks(y, labels, fontsize=7)  # type: ignore[attr-defined]
    ax.set_xlim(0, 1)  # type: ignore[attr-defined]
    ax.set_title(f"Win rate by seller, {month}")  # type: ignore[attr-defined]
    ax.legend(fontsize=7)  # type: ignore[attr-defined]
    return _png_markdown(fig, "seller comparison")


@dg.asset(
    partitions_def=tenant_month_partitions,
    deps=[
        dg.AssetDep(
            sync_asset_key(o),
            partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                partition_dimension_name="tenant"),
        )
        for o in SELLER_OBJECTS
    ],
    group_name=ANALYTICS_GROUP,
    kinds={"python", "sql"},
    metadata={"dagster/table_name": "seller_month_metric"},
    description="Per seller and month next to the team: win rate with Wilson interval, "
                "shrunk estimates, revenue, discount, cycle, pipeline, quota; flags only "
                "where significant. Re-run per touched month by seller_metrics_sensor.",
)
def seller_metrics(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    tenant_id, month = keys["tenant"], keys["month"]
    engine = warehouse.engine()
    data = store.load_tenant(engine, tenant_id, closed_lines_at_close=False)
    users = data.tables["user"]
    metrics = sellers_lib.monthly_metrics(
        data.deals, month, users, sellers_lib.quotas_from_users(users))
    written = store.replace_seller_month(engine, tenant_id, month, metrics)
    flagged = metrics[metrics["flag"].notna()] if len(metrics) else metrics
    preview = _md_table(metrics.head(25), {
        "seller_name": "", "deals_closed": "", "win_rate": ".0%", "win_rate_ci_low": ".0%",
        "win_rate_ci_high": ".0%", "win_rate_shrunk": ".0%", "revenue_won": ",.0f",
        "avg_discount": ".0%", "flag": ""}) if len(metrics) else "No seller activity."
    metadata: dict[str, object] = {
        "sellers": written,
        "flagged": len(flagged),
        "deals_closed": int(metrics["deals_closed"].astype(int).sum()) if len(metrics) else 0,
        "sellers_table": dg.MetadataValue.md(preview),
    }
    if len(metrics) and (metrics["deals_closed"].astype(int) > 0).any():
        metadata["comparison"] = dg.MetadataValue.md(seller_plot(metrics, month))
    return dg.MaterializeResult(metadata=metadata)  # type: ignore[arg-type]


def _in_flight_tenants(instance: dg.DagsterInstance) -> set[str]:
    runs = instance.get_runs(filters=dg.RunsFilter(job_name="sync_tenant", statuses=IN_FLIGHT))
    return {r.tags.get("dagster/partition", "") for r in runs}


@dg.sensor(
    asset_selection=[seller_metrics],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests seller_metrics for exactly the (tenant, month) partitions that the "
                "synced deal changes touch: the old and the new close month of each change.",
)
def seller_metrics_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    cursor: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    tenants = context.instance.get_dynamic_partitions(TENANT_PARTITIONS_NAME)
    valid_months = set(month_partitions.get_partition_keys())
    # A sync in flight may still commit rows with lower ids: wait until it has finished.
    busy = _in_flight_tenants(context.instance)
    engine = warehouse.engine()
    requests, new_cursor = [], {k: v for k, v in cursor.items() if k in tenants}
    for tenant_id in tenants:
        if tenant_id in busy:
            continue
        months, last_id = store.months_touched(engine, tenant_id, cursor.get(tenant_id, 0))
        new_cursor[tenant_id] = last_id
        for month in sorted(months & valid_months):
            key = dg.MultiPartitionKey({"tenant": tenant_id, "month": month})
            requests.append(dg.RunRequest(
                partition_key=key, run_key=f"{tenant_id}-{month}-{last_id}",
                tags={"accrue/tenant": tenant_id, "accrue/trigger": "deal-change"},
            ))
    state = json.dumps(new_cursor, sort_keys=True)
    if not requests:
        return dg.SensorResult(skip_reason=dg.SkipReason("no deal changes"), cursor=state)
    return dg.SensorResult(run_requests=requests, cursor=state)


analytics_assets = [price_recommendations, revenue_opportunities, seller_metrics]
