"""The analytics outputs (accrue.analytics.store is their one write path)."""

from __future__ import annotations

import sqlalchemy as sa

from accrue.schema.base import (
    UtcDateTime,
    big_id,
    json_type,
    metadata,
    one_of,
    tenant_id_column,
)
from connectors.common_model import ID_LENGTH

OPPORTUNITY_KINDS: tuple[str, ...] = ("cross_sell", "upsell", "win_back", "stalled")
MONTH_LENGTH = 7  # 'YYYY-MM'


def _f(name: str, *, nullable: bool = True) -> sa.Column[float]:
    return sa.Column(name, sa.Float(53), nullable=nullable)


# One row per open opportunity: what to quote, why, and how sure we are (replaced per tenant).
price_recommendation = sa.Table(
    "price_recommendation",
    metadata,
    tenant_id_column(primary_key=True),
    sa.Column("opportunity_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("computed_at", UtcDateTime(), nullable=False),
    sa.Column("method", sa.String(32), nullable=False),  # model | tenant_curve | segment band
    sa.Column("objective", sa.String(32), nullable=True),
    _f("list_total"),
    _f("current_price"),
    _f("current_discount"),
    _f("recommended_price"),  # the whole deal, to the cent
    _f("recommended_discount"),
    sa.Column("n_lines", sa.Integer(), nullable=True),
    _f("recommended_unit_price"),  # one-line deals only; see price_recommendation_line
    _f("win_probability_current"),
    _f("win_probability_recommended"),
    _f("expected_uplift"),
    _f("curve_a"),  # the win curve used: P(win | x) = 1/(1 + exp(a + b·x)), x = price ÷ list
    _f("curve_b"),
    sa.Column("band_segment", sa.String(255), nullable=True),
    _f("band_floor"),
    _f("band_target"),
    _f("band_start"),
    sa.Column("clamp", sa.String(64), nullable=True),
    sa.Column("clamp_reason", sa.Text(), nullable=True),  # the guardrail in words
    sa.Column("fallback_reason", sa.Text(), nullable=True),
    sa.Column("drivers", sa.Text(), nullable=True),
    sa.Column("comparables", sa.Text(), nullable=True),
    sa.Column("model_version", sa.String(64), nullable=False),
)

# The deal's recommendation split over its line items (replaced with the deals' rows):
# the line totals add up to the deal's recommended_price to the cent.
price_recommendation_line = sa.Table(
    "price_recommendation_line",
    metadata,
    tenant_id_column(primary_key=True),
    sa.Column("opportunity_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("line_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("product_id", sa.String(ID_LENGTH), nullable=True),
    _f("quantity", nullable=False),
    _f("list_price"),  # per unit
    _f("list_total", nullable=False),  # quantity × list price
    _f("recommended_line_total", nullable=False),
    _f("recommended_unit_price"),
    _f("recommended_discount"),
    sa.Column("computed_at", UtcDateTime(), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "opportunity_id"],
                            ["price_recommendation.tenant_id",
                             "price_recommendation.opportunity_id"], ondelete="CASCADE"),
)

PRICE_MODEL_DECISIONS: tuple[str, ...] = ("curve", "bands")

# A tenant's fitted price model, stored so that every reader of the same training data
# reuses one fit (`accrue.analytics.model_io`); replaced when the data hash changes.
price_model = sa.Table(
    "price_model",
    metadata,
    tenant_id_column(primary_key=True),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("fit_version", sa.String(32), nullable=False),
    sa.Column("data_hash", sa.String(64), nullable=False),
    sa.Column("fitted_at", UtcDateTime(), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),  # curve | bands, for the tenant
    sa.Column("decision_reason", sa.Text(), nullable=True),
    sa.Column("n_closed", sa.Integer(), nullable=False),
    sa.Column("n_won", sa.Integer(), nullable=False),
    sa.Column("n_lost", sa.Integer(), nullable=False),
    sa.Column("parameters", json_type(), nullable=False),
    sa.CheckConstraint(one_of("decision", PRICE_MODEL_DECISIONS), name="decision"),
)

# Deal-specific revenue opportunities (replaced per tenant).
revenue_opportunity = sa.Table(
    "revenue_opportunity",
    metadata,
    big_id(),
    tenant_id_column(),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("account_id", sa.String(ID_LENGTH), nullable=True),
    sa.Column("opportunity_id", sa.String(ID_LENGTH), nullable=True),
    sa.Column("product_id", sa.String(ID_LENGTH), nullable=True),
    _f("expected_value", nullable=False),
    _f("score"),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("computed_at", UtcDateTime(), nullable=False),
    sa.CheckConstraint(one_of("kind", OPPORTUNITY_KINDS), name="kind"),
    sa.Index("ix_revenue_opportunity_tenant_id_kind", "tenant_id", "kind"),
)

# Per seller and month, next to the team (replaced per tenant and month).
seller_month_metric = sa.Table(
    "seller_month_metric",
    metadata,
    tenant_id_column(primary_key=True),
    sa.Column("month", sa.String(MONTH_LENGTH), primary_key=True),
    sa.Column("seller_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("seller_name", sa.String(255), nullable=True),
    sa.Column("manager_id", sa.String(ID_LENGTH), nullable=True),
    sa.Column("deals_closed", sa.Integer(), nullable=False),
    sa.Column("won", sa.Integer(), nullable=False),
    _f("win_rate"),
    _f("win_rate_ci_low"),
    _f("win_rate_ci_high"),
    _f("win_rate_shrunk"),
    _f("team_win_rate"),
    _f("win_rate_percentile"),
    _f("revenue_won", nullable=False),
    _f("revenue_percentile"),
    _f("avg_deal_size"),
    _f("avg_discount"),
    _f("avg_discount_shrunk"),
    _f("team_avg_discount"),
    _f("cycle_days"),
    _f("open_pipeline", nullable=False),
    _f("quota"),
    _f("quota_attainment"),
    sa.Column("flag", sa.Text(), nullable=True),
    sa.Column("computed_at", UtcDateTime(), nullable=False),
)


# How far into crm_change_log an incremental analytics asset has read, per tenant. Written in
# the same transaction as the rows computed from those changes, so the rows and the mark
# never disagree (a crash recomputes, never skips).
analytics_watermark = sa.Table(
    "analytics_watermark",
    metadata,
    tenant_id_column(primary_key=True),
    sa.Column("asset_name", sa.String(64), primary_key=True),
    sa.Column("change_log_id", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)


# Who writes each table declared here (see accrue.schema.writers).
WRITERS: dict[str, str] = {
    t.name: "accrue/analytics/store.py"
    for t in (price_recommendation, price_recommendation_line, price_model,
              revenue_opportunity, seller_month_metric, analytics_watermark)
}
