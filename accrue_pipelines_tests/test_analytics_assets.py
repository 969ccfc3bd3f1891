"""The analytics assets on both backends, and F5: only the touched (tenant, month) re-run."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from accrue import tenants
from accrue.analytics import store
from accrue.schema import price_recommendation, revenue_opportunity, seller_month_metric
from accrue_pipelines.analytics_assets import (
    price_recommendations,
    revenue_opportunities,
    seller_metrics,
    seller_metrics_sensor,
)
from accrue_pipelines.partitions import TENANT_PARTITIONS_NAME
from accrue_pipelines.resources import CrmResource, WarehouseResource
from accrue_pipelines.sync_assets import sync_assets


@pytest.fixture
def resources(database_url):
    warehouse = WarehouseResource(database_url=database_url)
    return {"warehouse": warehouse, "crm": CrmResource(warehouse=warehouse)}


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


def _tick(instance, resources, cursor=None):
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as ctx:
        return seller_metrics_sensor(ctx)


def _requested(result, tenant_id) -> set[str]:
    return {r.partition_key.keys_by_dimension["month"] for r in result.run_requests or []
            if r.partition_key.keys_by_dimension["tenant"] == tenant_id}


def test_assets_materialize_for_a_tenant(instance, resources, synced_tenant, engine):
    tenant_id = synced_tenant
    result = dg.materialize([price_recommendations, revenue_opportunities], instance=instance,
                            partition_key=tenant_id, resources=resources)
    assert result.success
    recs = store.read_rows(engine, price_recommendation, tenant_id)
    data = store.load_tenant(engine, tenant_id)
    open_priced = data.deals[~data.deals["is_closed"] & data.deals["exclusion"].isna()]
    assert {r["opportunity_id"] for r in recs} == set(open_priced["opportunity_id"])
    for r in recs:
        assert r["method"] in ("model", "tenant_curve", "segment band")
        assert r["model_version"]
        if r["method"] == "segment band":
            assert r["fallback_reason"]
        if r["band_floor"] is not None:
            assert r["band_floor"] <= r["band_target"] <= r["band_start"]
        if r["recommended_price"] is not None:
            assert r["recommended_price"] > 0
    mat = result.asset_materializations_for_node("price_recommendations")[0]
    assert mat.metadata["recommendations"].value == len(recs)
    assert "data:image/png;base64," in mat.metadata["win_curve"].value
    items = store.read_rows(engine, revenue_opportunity, tenant_id)
    assert all(i["expected_value"] >= 0 and i["reason"] for i in items)

    # Idempotent: a rerun replaces, never duplicates.
    assert dg.materialize([price_recommendations], instance=instance, partition_key=tenant_id,
                          resources=resources).success
    assert len(store.read_rows(engine, price_recommendation, tenant_id)) == len(recs)

    month = data.deals.loc[data.deals["is_closed"], "close_date"].max().strftime("%Y-%m")
    key = dg.MultiPartitionKey({"tenant": tenant_id, "month": month})
    result = dg.materialize([seller_metrics], instance=instance, partition_key=key,
                            resources=resources)
    assert result.success
    rows = store.read_rows(engine, seller_month_metric, tenant_id, month=month)
    assert rows and sum(r["deals_closed"] for r in rows) == int(
        (data.deals["is_closed"] & (data.deals["close_date"].dt.strftime("%Y-%m") == month)).sum())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_changed_deal_reruns_only_its_old_and_new_month(
    instance, resources, synced_tenant, sf_client
):
    tenant_id = synced_tenant
    first = _tick(instance, resources)
    initial = _requested(first, tenant_id)
    assert len(initial) > 6  # a new tenant: every month with deals
    quiet = _tick(instance, resources, first.cursor)
    assert not _requested(quiet, tenant_id)

    last_year = datetime.now(UTC).year - 1
    closed = sf_client.query_all(
        "SELECT Id, CloseDate FROM Opportunity WHERE IsClosed = true")["records"]
    deal = next(r for r in closed if r["CloseDate"].startswith(str(last_year)))
    old_month = deal["CloseDate"][:7]
    new_month_number = (int(old_month[5:]) + 5) % 12 + 1
    new_date = f"{last_year}-{new_month_number:02d}-15"
    sf_client.Opportunity.update(deal["Id"], {"CloseDate": new_date})
    _sync(instance, resources, tenant_id)

    result = _tick(instance, resources, quiet.cursor)
    assert _requested(result, tenant_id) == {old_month, new_date[:7]}
    assert not _requested(_tick(instance, resources, result.cursor), tenant_id)
