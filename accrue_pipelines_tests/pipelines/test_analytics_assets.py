"""The analytics assets on both backends, and F5: only the touched (tenant, month) re-run."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from accrue import tenants
from accrue.analytics import store
from accrue.schema import price_recommendation, revenue_opportunity, seller_month_metric
from accrue_pipelines.analytics.assets import (
    price_recommendations,
    revenue_opportunities,
    seller_metrics,
)
from accrue_pipelines.platform.partitions import TENANT_PARTITIONS_NAME
from accrue_pipelines.platform.resources import pipeline_resources
from accrue_pipelines.sync.assets import sync_assets


@pytest.fixture
def resources(database_url):
    return pipeline_resources(database_url)


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def synced_tenant(engine, tenant_id, sf_sandbox, instance, resources):
    tenants.add_tenant(engine, tenant_id, "Analytics Co", "salesforce")
    tenants.save_credentials(
        engine, tenant_id, "salesforce",
        {"username": sf_sandbox.username, "password": sf_sandbox.password,
         "security_token": sf_sandbox.security_token},
        {"sandbox_url": sf_sandbox.url},
    )
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant_id])
    _sync(instance, resources, tenant_id)
    return tenant_id


def _sync(instance, resources, tenant_id):
    assert dg.materialize(sync_assets, instance=instance, partition_key=tenant_id,
                          resources=resources).success


def _seller_run(instance, resources, tenant_id):
    result = dg.materialize([seller_metrics], instance=instance, partition_key=tenant_id,
                            resources=resources)
    assert result.success
    return result.asset_materializations_for_node("seller_metrics")[0].metadata


def test_assets_materialize_for_a_tenant(instance, resources, synced_tenant, engine):
    tenant_id = synced_tenant
    result = dg.materialize([price_recommendations, revenue_opportunities], instance=instance,
                            partition_key=tenant_id, resources=resources)
    assert result.success
    recs = store.read_rows(engine, price_recommendation, tenant_id)
    data = store.load_tenant(engine, tenant_id)
    # Every open deal has a row (issue 10.4), priced or with the reason it is not.
    open_deals = data.deals[~data.deals["is_closed"]]
    assert {r["opportunity_id"] for r in recs} == set(open_deals["opportunity_id"])
    for r in recs:
        assert r["method"] in ("model", "tenant_curve", "segment band", "excluded")
        assert r["model_version"]
        if r["method"] in ("segment band", "excluded"):
            assert r["fallback_reason"]
        if r["method"] == "excluded":
            assert r["recommended_price"] is None
        if r["band_floor"] is not None:
            assert r["band_floor"] <= r["band_target"] <= r["band_start"]
        if r["recommended_price"] is not None:
            assert r["recommended_price"] > 0
    mat = result.asset_materializations_for_node("price_recommendations")[0]
    assert mat.metadata["recommendations"].value == len(recs)
    assert "data:image/png;base64," in mat.metadata["win_curve"].value
    top = mat.metadata["top_recommendations"]  # a typed table, not markdown
    assert isinstance(top, dg.TableMetadataValue) and top.records
    types = {c.name: c.type for c in top.schema.columns}
    assert types["current_discount"] == "float" and types["expected_uplift"] == "int"
    for record in top.records:
        assert record.data["expected_uplift"] is None or isinstance(
            record.data["expected_uplift"], int)
        assert isinstance(record.data["opportunity_id"], str) and record.data["opportunity_id"]
    items = store.read_rows(engine, revenue_opportunity, tenant_id)
    assert all(i["expected_value"] >= 0 and i["reason"] for i in items)

    # Idempotent: a rerun replaces, never duplicates.
    assert dg.materialize([price_recommendations], instance=instance, partition_key=tenant_id,
                          resources=resources).success
    assert len(store.read_rows(engine, price_recommendation, tenant_id)) == len(recs)

    meta = _seller_run(instance, resources, tenant_id)
    month = data.deals.loc[data.deals["is_closed"], "close_date"].max().strftime("%Y-%m")
    rows = store.read_rows(engine, seller_month_metric, tenant_id, month=month)
    assert rows and sum(r["deals_closed"] for r in rows) == int(
        (data.deals["is_closed"] & (data.deals["close_date"].dt.strftime("%Y-%m") == month)).sum())
    # All history counts: every close month of an owned deal, past and future, no fixed start.
    months = {r["month"] for r in store.read_rows(engine, seller_month_metric, tenant_id)}
    owned = data.deals[data.deals["owner_id"].notna()]
    expected = set(owned["close_date"].dt.strftime("%Y-%m").dropna())
    assert months == expected
    assert meta["months_recomputed"].value == len(expected)
    assert min(expected) < "2025-01" and max(expected) > datetime.now(UTC).strftime("%Y-%m")


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_changed_deal_recomputes_only_its_old_and_new_month(
    instance, resources, synced_tenant, sf_client, engine
):
    """F5: moving one two-year-old closed deal recomputes exactly its old and new month."""
    tenant_id = synced_tenant
    first = _seller_run(instance, resources, tenant_id)
    assert first["recompute_reason"].value.startswith("first run")
    quiet = _seller_run(instance, resources, tenant_id)
    assert quiet["months_recomputed"].value == 0  # nothing changed since

    closed = sf_client.query_all(
        "SELECT Id, CloseDate FROM Opportunity WHERE IsClosed = true")["records"]
    deal = min(closed, key=lambda r: r["CloseDate"])
    old_month = deal["CloseDate"][:7]
    today = datetime.now(UTC)
    age_months = (today.year - int(old_month[:4])) * 12 + today.month - int(old_month[5:])
    assert age_months >= 18  # a deal from about two years ago
    moved_to = int(old_month[5:]) % 12 + 1
    new_date = f"{old_month[:4]}-{moved_to:02d}-15"
    before = {(r["month"], r["seller_id"]): r
              for r in store.read_rows(engine, seller_month_metric, tenant_id)}
    sf_client.Opportunity.update(deal["Id"], {"CloseDate": new_date})
    _sync(instance, resources, tenant_id)

    meta = _seller_run(instance, resources, tenant_id)
    touched = {old_month, new_date[:7]}
    assert meta["months"].value == ", ".join(sorted(touched))
    assert meta["months_recomputed"].value == 2
    after = {(r["month"], r["seller_id"]): r
             for r in store.read_rows(engine, seller_month_metric, tenant_id)}
    untouched = {k for k in before if k[0] not in touched}
    assert untouched and all(after[k] == before[k] for k in untouched)  # same computed_at too
    recomputed = {k for k in after if k[0] in touched}
    assert recomputed and all(after[k]["computed_at"] > before.get(k, after[k])["computed_at"]
                              or k not in before for k in recomputed)
    deals_in_new = sum(r["deals_closed"] for k, r in after.items() if k[0] == new_date[:7])
    deals_before = sum(r["deals_closed"] for k, r in before.items() if k[0] == new_date[:7])
    assert deals_in_new == deals_before + 1
    assert _seller_run(instance, resources, tenant_id)["months_recomputed"].value == 0
