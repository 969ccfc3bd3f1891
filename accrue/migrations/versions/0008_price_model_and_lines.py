"""The stored price model, per-line recommendations, and per-unit prices (issue 10).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

* `price_model`: one fitted model per tenant (parameters as JSON, the hash of the
  training data, the tenant-level curve-or-bands decision), so that every asset reading
  the same data reuses one fit instead of refitting.
* `price_recommendation_line`: the deal's recommended price split over its line items,
  adding up to the deal's price to the cent.
* `price_recommendation.n_lines` and `.recommended_unit_price` (one-line deals: the
  deal's price ÷ quantity). Existing rows keep NULL until the next analytics run.

Written out in full rather than built from `accrue.schema`, like the earlier revisions.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _f(name: str, *, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.Float(precision=53), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("price_recommendation") as batch:
        batch.add_column(sa.Column("n_lines", sa.Integer(), nullable=True))
        batch.add_column(_f("recommended_unit_price"))
    op.create_table(
        "price_recommendation_line",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("opportunity_id", sa.String(length=64), nullable=False),
        sa.Column("line_id", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=True),
        _f("quantity", nullable=False),
        _f("list_price"),
        _f("list_total", nullable=False),
        _f("recommended_line_total", nullable=False),
        _f("recommended_unit_price"),
        _f("recommended_discount"),
        _ts("computed_at"),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "opportunity_id"],
            ["price_recommendation.tenant_id", "price_recommendation.opportunity_id"],
            name=op.f("fk_price_recommendation_line_tenant_id_price_recommendation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "opportunity_id", "line_id", name=op.f("pk_price_recommendation_line")
        ),
    )
    op.create_table(
        "price_model",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("fit_version", sa.String(length=32), nullable=False),
        sa.Column("data_hash", sa.String(length=64), nullable=False),
        _ts("fitted_at"),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("n_closed", sa.Integer(), nullable=False),
        sa.Column("n_won", sa.Integer(), nullable=False),
        sa.Column("n_lost", sa.Integer(), nullable=False),
        sa.Column("parameters", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                  nullable=False),
        sa.CheckConstraint(
            "decision IN ('curve', 'bands')", name=op.f("ck_price_model_decision")
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_price_model")),
    )


def downgrade() -> None:
    op.drop_table("price_model")
    op.drop_table("price_recommendation_line")
    with op.batch_alter_table("price_recommendation") as batch:
        batch.drop_column("recommended_unit_price")
        batch.drop_column("n_lines")
