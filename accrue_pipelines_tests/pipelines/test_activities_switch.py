"""The activities switch decides: stored on the tenant, obeyed by the sync and the milestones.

Why: "no switch may do nothing". A tenant that did not choose activities must cost its
CRM no Task or Event call and must never wait for them; one that chose them must get
them. The pipelines read the choice from the tenant, never from the concierge's wizard.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

import dagster as dg
import pytest
import sqlalchemy as sa

from accrue import onboarding_notify, tenants
from accrue.schema import onboarding_state, utcnow
from accrue.warehouse import Warehouse
from accrue_pipelines.analytics.sensors import READERS
from accrue_pipelines.constants import sync_asset_key
from accrue_pipelines.platform.partitions import TENANT_PARTITIONS_NAME
from accrue_pipelines.sync.assets import sync_assets
from accrue_pipelines.sync.failure_sensor import unsynced_objects
from accrue_pipelines_tests.pipelines import test_pipelines
from connectors.common_model import COMMON_OBJECTS, OPTIONAL_OBJECTS
from connectors.salesforce.sandbox import RequestContext, RunningSandbox

# The Dagster fixtures of the pipeline tests: a test instance, the warehouse and CRM resources.
instance = test_pipelines.instance
resources = test_pipelines.resources


def _register(engine, tenant_id, sandbox: RunningSandbox, *, password=None, **options):
    tenants.add_tenant(engine, tenant_id, "Test Co", "salesforce", **options)
    tenants.save_credentials(
        engine, tenant_id, "salesforce",
        {"username": sandbox.username, "password": password or sandbox.password,
         "security_token": sandbox.security_token},
        {"sandbox_url": sandbox.url},
    )


def _requests_seen(sandbox: RunningSandbox) -> list[str]:
    """Every REST call the sandbox answers from now on, as decoded path and query."""
    seen: list[str] = []

    def record(ctx: RequestContext) -> None:
        seen.append(unquote_plus(f"{ctx.request.path}?{ctx.request.query_string.decode()}"))

    sandbox.app.before_request(record)
    return seen


def _materialized(result, object_name):
    return next(e.event_specific_data.materialization
                for e in result.get_asset_materialization_events()
                if e.asset_key == sync_asset_key(object_name))


def test_the_choice_lives_on_the_tenant(engine, tenant_id) -> None:
    created = tenants.add_tenant(engine, tenant_id, "Test Co", "salesforce")
    assert created.optional_objects == () and not created.syncs("activity")
    assert created.synced_objects() == [o for o in COMMON_OBJECTS if o not in OPTIONAL_OBJECTS]
    chosen = tenants.set_optional_objects(engine, tenant_id, ["activity", "activity"])
    assert chosen.optional_objects == ("activity",) and chosen.syncs("activity")
    assert tenants.require_tenant(engine, tenant_id).synced_objects() == list(COMMON_OBJECTS)
    for bad in (["market_data"], "activity", None, ["opportunity"]):
        with pytest.raises(tenants.TenantError):
            tenants.set_optional_objects(engine, tenant_id, bad)
    assert tenants.set_optional_objects(engine, tenant_id, []).optional_objects == ()


def test_a_tenant_without_activities_makes_no_task_or_event_call(
    instance, resources, engine, tenant_id, sf_sandbox, warehouse
) -> None:
    _register(engine, tenant_id, sf_sandbox)
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant_id])
    seen = _requests_seen(sf_sandbox)
    result = dg.materialize(sync_assets, instance=instance, partition_key=tenant_id,
                            resources=resources)
    assert result.success
    api = [r for r in seen if r.startswith("/services/data/")]
    assert any("FROM Opportunity" in r for r in api)  # the others were read
    assert not [r for r in api if "Task" in r or "Event" in r]
    skipped = _materialized(result, "activity")
    assert skipped.metadata["selected_by_tenant"].value is False
    checks = [c for c in result.get_asset_check_evaluations()
              if c.asset_key == sync_asset_key("activity")]
    assert len(checks) == 3 and all(c.passed for c in checks)  # not selected, never failed
    assert "activity" not in warehouse.sync_health(tenant_id)  # no sync_run row for it
    assert warehouse.count(tenant_id, "activity", include_deleted=True) == 0


def test_a_tenant_with_activities_syncs_them(
    instance, resources, engine, tenant_id, sf_sandbox, sf_client, warehouse
) -> None:
    _register(engine, tenant_id, sf_sandbox, optional_objects=["activity"])
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant_id])
    result = dg.materialize(sync_assets, instance=instance, partition_key=tenant_id,
                            resources=resources)
    assert result.success
    source = sum(sf_client.query(f"SELECT COUNT() FROM {s}")["totalSize"]
                 for s in ("Task", "Event"))
    synced = _materialized(result, "activity")
    assert synced.metadata["dagster/row_count"].value == source > 0
    assert warehouse.count(tenant_id, "activity") == source
    checks = [c for c in result.get_asset_check_evaluations()
              if c.asset_key == sync_asset_key("activity")]
    assert all(c.passed for c in checks), checks  # counts equal, no orphan relation
    # An activity change refreshes revenue opportunities (the stalled rule reads them).
    assert {k.to_user_string() for k in READERS["activity"]} == {
        "pipeline_summary", "revenue_opportunities"}


def test_a_failed_sync_does_not_count_an_object_the_tenant_did_not_choose(
    instance, resources, engine, tenant_id, sf_sandbox
) -> None:
    """Refused credentials: every chosen object is unsynced, activities are not among them."""
    _register(engine, tenant_id, sf_sandbox, password="wrong")
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant_id])
    result = dg.materialize(sync_assets, instance=instance, partition_key=tenant_id,
                            resources=resources, raise_on_error=False)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    unsynced = {key.path[-1] for key in unsynced_objects(instance, run)}
    assert unsynced == set(COMMON_OBJECTS) - {"activity"}
    failed = {r["object_name"] for r in Warehouse(engine).recent_runs(tenant_id, limit=50)}
    assert "activity" not in failed and "opportunity" in failed


def _setup_answers(engine, tenant_id, objects) -> None:
    """The wizard's discovery, as the concierge saves it at setup (what the CRM offered)."""
    with engine.begin() as conn:
        conn.execute(sa.insert(onboarding_state).values(
            tenant_id=tenant_id, step="complete", completed_at=utcnow(),
            data={"discovery": {"objects": [
                {"name": name, "label": name, "source_name": name, "count": 3}
                for name in objects]}}))


@pytest.mark.parametrize("chosen", [False, True])
def test_first_data_waits_for_activities_only_when_chosen(engine, tenant_id, chosen) -> None:
    tenants.add_tenant(engine, tenant_id, "Test Co", "salesforce",
                       optional_objects=["activity"] if chosen else [])
    _setup_answers(engine, tenant_id, COMMON_OBJECTS)
    store = Warehouse(engine)
    for name in COMMON_OBJECTS:
        if name != "activity":
            store.finish_run(store.start_run(tenant_id, name), "succeeded")
    report = onboarding_notify.progress(engine, tenant_id)
    assert ("activity" in {o["name"] for o in report["objects"]}) is chosen
    assert report["first_data_ready"] is not chosen
    if chosen:
        store.finish_run(store.start_run(tenant_id, "activity"), "succeeded")
        assert onboarding_notify.progress(engine, tenant_id)["first_data_ready"]
