"""Analytics outputs: price recommendations, revenue opportunities, seller metrics.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

* `price_recommendation`: one row per open opportunity (replaced per tenant).
* `revenue_opportunity`: cross-sell, upsell, win-back and stalled deals (per tenant).
* `seller_month_metric`: per seller and month, with the team comparison
  (replaced per tenant and month, so a changed month is recomputed alone).

Written out in full rather than built from `accrue.schema`, like the earlier revisions.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _f(name: str, *, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.Float(precision=53), nullable=nullable)


def _id(name: str, *, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.String(length=64), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "price_recommendation",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        _id("opportunity_id", nullable=False),
        _ts("computed_at"),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("objective", sa.String(length=32), nullable=True),
        _f("list_total"),
        _f("current_price"),
        _f("current_discount"),
        _f("recommended_price"),
        _f("recommended_discount"),
        _f("win_probability_current"),
        _f("win_probability_recommended"),
        _f("expected_uplift"),
        sa.Column("band_segment", sa.String(length=255), nullable=True),
        _f("band_floor"),
        _f("band_target"),
        _f("band_start"),
        sa.Column("clamp", sa.String(length=64), nullable=True),
        sa.Column("fallback_reason", sa.Text(), nullable=True),
        sa.Column("drivers", sa.Text(), nullable=True),
        sa.Column("comparables", sa.Text(), nullable=True),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "opportunity_id", name=op.f("pk_price_recommendation")
        ),
    )
    op.create_table(
        "revenue_opportunity",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        _id("account_id"),
        _id("opportunity_id"),
        _id("product_id"),
        _f("expected_value", nullable=False),
        _f("score"),
        sa.Column("reason", sa.Text(), nullable=False),
        _ts("computed_at"),
        sa.CheckConstraint(
            "kind IN ('cross_sell', 'upsell', 'win_back', 'stalled')",
            name=op.f("ck_revenue_opportunity_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revenue_opportunity")),
    )
    op.create_index(
        "ix_revenue_opportunity_tenant_id_kind", "revenue_opportunity", ["tenant_id", "kind"]
    )
    op.create_table(
        "seller_month_metric",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        _id("seller_id", nullable=False),
        sa.Column("seller_name", sa.String(length=255), nullable=True),
        _id("manager_id"),
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
        _ts("computed_at"),
        sa.PrimaryKeyConstraint(
            "tenant_id", "month", "seller_id", name=op.f("pk_seller_month_metric")
        ),
    )


def downgrade() -> None:
    op.drop_table("seller_month_metric")
    op.drop_index("ix_revenue_opportunity_tenant_id_kind", table_name="revenue_opportunity")
    op.drop_table("revenue_opportunity")
    op.drop_table("price_recommendation")
