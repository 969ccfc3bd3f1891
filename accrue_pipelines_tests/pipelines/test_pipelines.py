"""The Dagster layer: definitions, a tenant partition materialized, sensors, refreshes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import dagster as dg
import pytest
import sqlalchemy as sa

from accrue import tenants
from accrue.warehouse import Warehouse
from accrue_pipelines.analytics.sensors import (
    EVERYTHING,
    assets_to_refresh,
    downstream_refresh_sensor,
)
from accrue_pipelines.analytics.sensors import MAX_RUN_REQUESTS_PER_TICK as MAX_REFRESH_REQUESTS
from accrue_pipelines.constants import SYNC_ASSET_KEYS, sync_asset_key
from accrue_pipelines.definitions import defs
from accrue_pipelines.platform.launch import run_tenant_sync
from accrue_pipelines.platform.partitions import TENANT_PARTITIONS_NAME, tenant_partitions
from accrue_pipelines.platform.resources import CrmResource, pipeline_resources
from accrue_pipelines.sync.assets import sync_assets
from connectors.base import Delete, Upsert
from connectors.common_model import COMMON_OBJECTS

EVERYTHING_NAMES = [k.to_user_string() for k in EVERYTHING]


@pytest.fixture
def resources(database_url):
    return pipeline_resources(database_url)


@pytest.fixture
def registered_tenant(engine, tenant_id, sf_sandbox):
    tenants.add_tenant(engine, tenant_id, "Test Co", "salesforce", sync_frequency_minutes=5)
    tenants.save_credentials(
        engine, tenant_id, "salesforce",
        {"username": sf_sandbox.username, "password": sf_sandbox.password,
         "security_token": sf_sandbox.security_token},
        {"sandbox_url": sf_sandbox.url},
    )
    return tenant_id


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {f"crm/{name}" for name in COMMON_OBJECTS} | {"pipeline_summary"} <= keys
    job = defs.resolve_job_def("sync_tenant")
    assert job.executor_def.name == dg.in_process_executor.name  # one process per run
    for name in ("tenant_sync_sensor", "downstream_refresh_sensor", "sync_failure_sensor",
                 "first_data_email_sensor"):
        assert defs.resolve_sensor_def(name) is not None
    assert not list(defs.schedules or [])  # the nightly reconciliation rides on the scheduler
    # Every tenant-scoped asset has one partition per tenant: no tenant × month explosion.
    # The one exception is the fleet's health table, one page for every tenant.
    for key in graph.get_all_asset_keys() - {dg.AssetKey(["ops", "fleet_health"])}:
        assert graph.get(key).partitions_def == tenant_partitions, key


def test_crm_assets_have_no_lineage_among_themselves():
    """Parents sync first inside the one step; as deps, Dagster would read another tenant's
    latest materialization for provenance ("data version mismatch" warnings in every run)."""
    graph = defs.resolve_asset_graph()
    for key in SYNC_ASSET_KEYS:
        assert not set(graph.get(key).parent_keys) & set(SYNC_ASSET_KEYS), key


class _Store:
    """What the warehouse answers the checks, as given."""

    def __init__(self, duplicates: int, orphans: dict[str, int]) -> None:
        self._duplicates, self._orphans = duplicates, orphans

    def duplicate_keys(self, _tenant: str, _object: str) -> int:
        return self._duplicates

    def orphans(self, _tenant: str, _object: str) -> dict[str, int]:
        return self._orphans


def test_the_matches_check_says_what_differs_and_fails_hard_only_on_duplicates():
    from accrue_pipelines.sync.checks import _matches_result

    both = _matches_result(_Store(2, {"account_id": 3}), "t", "opportunity", 10, 12)
    assert not both.passed and both.severity == dg.AssetCheckSeverity.ERROR
    assert both.description == ("2 CRM ids stored twice; 10 live rows, the CRM has 12; "
                                "3 account_id references point to no row")
    assert both.metadata["difference"].value == -2
    assert both.metadata["orphan_account_id"].value == 3
    counts_only = _matches_result(_Store(0, {"account_id": 0}), "t", "opportunity", 10, 12)
    assert not counts_only.passed and counts_only.severity == dg.AssetCheckSeverity.WARN
    stopped = _matches_result(_Store(0, {"account_id": 0}), "t", "opportunity", 10, None)
    assert stopped.passed and "not compared" in stopped.metadata["counts"].value
    assert _matches_result(_Store(0, {}), "t", "user", 5, 5).passed


def test_a_sync_stopped_at_the_quota_warns_on_sync_healthy_with_the_reason():
    from accrue.sync import SyncResult
    from accrue_pipelines.sync.checks import _health_result

    key = sync_asset_key("opportunity")
    stopped = _health_result(key, SyncResult("t", "opportunity", complete=False,
                                             stop_reason="API quota at 90%"))
    assert not stopped.passed and stopped.severity == dg.AssetCheckSeverity.WARN
    assert "API quota at 90%" in (stopped.description or "")
    assert _health_result(key, SyncResult("t", "opportunity")).passed


def test_tenant_partition_materializes_with_checks(
    instance, resources, registered_tenant, warehouse, sf_client
):
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [registered_tenant])
    result = dg.materialize(
        sync_assets, instance=instance, partition_key=registered_tenant, resources=resources
    )
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert len(checks) == sum(len(a.check_specs_by_output_name) for a in sync_assets)
    assert {c.check_name for c in checks} == {"sync_healthy", "warehouse_matches_crm",
                                              "quarantine_empty"}
    assert len(checks) == 3 * len(SYNC_ASSET_KEYS)  # three per object (see sync_assets)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    opp_matches = next(c for c in checks if c.asset_key == sync_asset_key("opportunity")
                       and c.check_name == "warehouse_matches_crm")
    figures = opp_matches.metadata["figures"].value  # one JSON entry: see ui_metadata
    assert figures["duplicate_keys"] == 0
    assert figures["orphan_account_id"] == 0  # references are checked
    opp = next(e.event_specific_data.materialization
               for e in result.get_asset_materialization_events()
               if e.asset_key == sync_asset_key("opportunity"))
    source = sf_client.query("SELECT COUNT() FROM Opportunity")["totalSize"]
    assert opp.metadata["dagster/row_count"].value == source
    assert opp.metadata["records_read"].value >= source
    assert warehouse.count(registered_tenant, "opportunity") == source
    # Login and describe happen once per step, reported once (the first object's metadata).
    connects = [e.event_specific_data.materialization.metadata["connect_seconds"].value
                for e in result.get_asset_materialization_events()
                if "connect_seconds" in e.event_specific_data.materialization.metadata]
    assert len(connects) == 1 and 0 <= connects[0] < 60  # seconds, to 0.1 s
    # S1: nothing secret in metadata or in the run's config.
    blob = repr([e.event_specific_data.materialization.metadata
                 for e in result.get_asset_materialization_events()])
    run = instance.get_run_by_id(result.run_id)
    for secret in ("sandbox-password", "SANDBOXTOKEN"):
        assert secret not in blob
        assert secret not in repr(run.run_config)


def _refresh_tick(instance, resources, cursor=None):
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as ctx:
        result = downstream_refresh_sensor(ctx)
    requested = {r.partition_key: {k.to_user_string() for k in r.asset_selection or []}
                 for r in result.run_requests or []}
    return requested, result.cursor


def test_downstream_refreshes_after_a_sync_that_changed_data_and_only_then(
    instance, resources, registered_tenant, sf_sandbox, sf_client, engine, database_url,
    monkeypatch,
):
    monkeypatch.setenv("ACCRUE_DATABASE_URL", database_url)
    # A two-day lookback: every sync re-reads the seeded org's newest records (stamped up
    # to a second before midnight), as an incremental sync re-reads its lookback. A re-read
    # of a stored version rewrites its row but is no change: only new versions count.
    tenants.save_credentials(
        engine, registered_tenant, "salesforce",
        {"username": sf_sandbox.username, "password": sf_sandbox.password,
         "security_token": sf_sandbox.security_token},
        {"sandbox_url": sf_sandbox.url, "lookback_seconds": 2 * 86_400},
    )
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [registered_tenant])
    requested, cursor = _refresh_tick(instance, resources)
    assert requested == {}  # nothing synced yet
    assert run_tenant_sync(registered_tenant, [], echo=lambda _: None, instance=instance)
    requested, cursor = _refresh_tick(instance, resources, cursor)
    assert requested == {registered_tenant: set(EVERYTHING_NAMES)}  # first data: everything
    run = instance.get_runs(filters=dg.RunsFilter(job_name="analyze_tenant"))
    assert run == []  # the test launches nothing: the request is what is checked
    requested, cursor = _refresh_tick(instance, resources, cursor)
    assert requested == {}  # the same finished run, re-read in the overlap, is not redone

    assert run_tenant_sync(registered_tenant, [], echo=lambda _: None, instance=instance)
    [reread] = Warehouse(engine).recent_runs(registered_tenant, 1, object_name="opportunity")
    assert reread["records_upserted"] > 0 and reread["versions_logged"] == 0  # re-read only
    requested, cursor = _refresh_tick(instance, resources, cursor)
    assert requested == {}  # nothing changed in the CRM

    account_id = sf_client.query("SELECT Id FROM Account LIMIT 1")["records"][0]["Id"]
    sf_client.Account.update(account_id, {"Name": "Changed Ltd"})
    assert run_tenant_sync(registered_tenant, [], echo=lambda _: None, instance=instance)
    requested, cursor = _refresh_tick(instance, resources, cursor)
    # Accounts feed the summary and the pricing, not the seller metrics.
    assert requested == {registered_tenant: {
        "pipeline_summary", "price_recommendations", "revenue_opportunities"}}


def test_refresh_waits_while_the_tenant_is_busy_and_caps_each_tick(instance, resources):
    tenants_pending = {f"tenant-{i:02d}": ["pipeline_summary"] for i in range(15)}
    cursor = json.dumps({"read_until": "2026-01-01T00:00:00+00:00", "handled": [],
                         "pending": tenants_pending})
    busy = dg.DagsterRun(job_name="sync_tenant", run_id=str(uuid.uuid4()),
                         status=dg.DagsterRunStatus.STARTED,
                         tags={"dagster/partition": "tenant-00"})
    instance.add_run(busy)
    requested, cursor = _refresh_tick(instance, resources, cursor)
    assert len(requested) == MAX_REFRESH_REQUESTS == 10
    assert "tenant-00" not in requested  # its sync will change the data again
    left = json.loads(cursor)["pending"]
    assert set(left) | set(requested) == set(tenants_pending)  # nothing dropped
    requested, cursor = _refresh_tick(instance, resources, cursor)
    assert set(requested) == set(left) - {"tenant-00"}
    instance.delete_run(busy.run_id)
    requested, cursor = _refresh_tick(instance, resources, cursor)
    assert set(requested) == {"tenant-00"} and json.loads(cursor)["pending"] == {}


def test_what_each_change_refreshes_follows_the_assets_dependencies():
    def run(tags, status=dg.DagsterRunStatus.SUCCESS):
        return dg.DagsterRun(job_name="sync_tenant", run_id=str(uuid.uuid4()), status=status,
                             tags={"dagster/partition": "acme", **tags})

    contacts = run({})
    assert assets_to_refresh([contacts], {contacts.run_id: {"contact"}}) == {
        "acme": {"pipeline_summary"}}
    users = run({})
    assert assets_to_refresh([users], {users.run_id: {"user"}}) == {
        "acme": {"pipeline_summary", "seller_metrics"}}
    # A first sync of an empty CRM still gives the tenant its (empty) results; a failed
    # one that wrote nothing asks for nothing.
    empty_first = run({"accrue/trigger": "first-sync"})
    assert assets_to_refresh([empty_first], {}) == {"acme": set(EVERYTHING_NAMES)}
    failed_first = run({"accrue/trigger": "first-sync"}, dg.DagsterRunStatus.FAILURE)
    assert assets_to_refresh([failed_first], {}) == {}


def test_run_ledger_reports_changes_only_for_the_runs_own_tenant(warehouse, make_tenant_id):
    mine, other = make_tenant_id(), make_tenant_id()
    at = datetime(2026, 1, 5, tzinfo=UTC)

    def sync(object_name, changes, status="succeeded"):
        run = warehouse.start_run(mine, object_name, run_id="run-1")
        stats = warehouse.apply(mine, object_name, changes, None, sync_run_id=run)
        warehouse.finish_run(run, status, stats, error="boom" if status == "failed" else None)

    sync("account", [Upsert(f"001{i}", at, {"name": "A"}, {"Id": f"001{i}"}) for i in range(3)])
    sync("contact", [])
    sync("user", [Delete("0051", at), Delete("0052", at)], "failed")  # kept what it wrote
    assert warehouse.objects_changed_by([(mine, "run-1")]) == {"run-1": {"account", "user"}}
    assert warehouse.objects_changed_by([(other, "run-1")]) == {}


def test_cli_sync_runs_in_the_instance(instance, registered_tenant, database_url, monkeypatch):
    monkeypatch.setenv("ACCRUE_DATABASE_URL", database_url)
    lines: list[str] = []
    ok = run_tenant_sync(registered_tenant, ["user"], echo=lines.append, instance=instance)
    assert ok
    assert any(line.startswith("crm/user:") for line in lines)
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"accrue/tenant": registered_tenant}))
    assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
    mat = instance.get_latest_materialization_event(sync_asset_key("user"))
    assert mat is not None


def test_cli_analyze_computes_the_tenants_analytics_on_demand(
    instance, registered_tenant, database_url, engine, monkeypatch
):
    """`accrue analyze TENANT`: the summary and analytics now, through Dagster (issue 10.5)."""
    from accrue.schema import price_recommendation
    from accrue_pipelines.platform.launch import run_tenant_analytics

    monkeypatch.setenv("ACCRUE_DATABASE_URL", database_url)
    assert run_tenant_sync(registered_tenant, [], echo=lambda _: None, instance=instance)
    lines: list[str] = []
    assert run_tenant_analytics(registered_tenant, echo=lines.append, instance=instance)
    assert {line.split(":")[0] for line in lines if ":" in line and not line.startswith("run ")} \
        == {"pipeline_summary", "price_recommendations", "revenue_opportunities",
            "seller_metrics"}
    assert any(line.startswith("price_recommendations: recommendations ") for line in lines)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(price_recommendation).where(
            price_recommendation.c.tenant_id == registered_tenant)).scalar_one()
    assert rows > 0
    runs = instance.get_runs(filters=dg.RunsFilter(
        tags={"accrue/tenant": registered_tenant, "accrue/trigger": "cli-analyze"}))
    assert len(runs) == 1 and runs[0].job_name == "analyze_tenant"


def test_failing_tenant_shows_why_on_its_sync_healthy_check(
    instance, resources, engine, tenant_id, sf_sandbox
):
    """Bad credentials fail fast (no pointless retries) and the check says what to do."""
    from accrue_pipelines.sync.failure_sensor import sync_failure_sensor

    tenants.add_tenant(engine, tenant_id, "Broken Co", "salesforce")
    tenants.save_credentials(
        engine,
        tenant_id,
        "salesforce",
        {
            "username": sf_sandbox.username,
            "password": "not-the-password",
            "security_token": sf_sandbox.security_token,
        },
        {"sandbox_url": sf_sandbox.url},
    )
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant_id])
    result = dg.materialize(
        sync_assets,
        selection=[sync_asset_key("account")],
        instance=instance,
        partition_key=tenant_id,
        resources=resources,
        raise_on_error=False,
    )
    assert not result.success
    retried = dg.DagsterEventType.STEP_UP_FOR_RETRY
    assert not [e for e in result.all_events if e.event_type == retried]
    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="sync_failure_sensor",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure,
    ).for_run_failure()
    sync_failure_sensor(context)
    check_key = dg.AssetCheckKey(sync_asset_key("account"), "sync_healthy")
    records = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=1)
    evaluation = records[0].event.dagster_event.event_specific_data
    assert evaluation.passed is False and evaluation.partition == tenant_id
    assert evaluation.metadata["error_kind"].value == "credentials"
    assert "re-enter" in evaluation.metadata["action"].value
    assert "not-the-password" not in repr(evaluation)  # S1
    # The refused login never reached the object's sync, yet the attempt is on record.
    from accrue.warehouse import Warehouse

    health = Warehouse(engine).sync_health(tenant_id)
    assert health["account"]["last_status"] == "failed"
    assert health["account"]["error_kind"] == "credentials"


def test_sync_steps_take_turns_in_their_crm_api_pool(resources, registered_tenant):
    """Per-CRM API limit: a full `crm_api_salesforce` pool holds the sync until a slot frees."""
    import threading

    from accrue_pipelines.platform.pools import crm_pool

    pool = crm_pool("salesforce")
    overrides = {"concurrency": {"pools": {"default_limit": 1}}}
    with dg.instance_for_test(overrides=overrides) as instance:
        instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [registered_tenant])
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default(pool)
        assert storage.claim_concurrency_slot(pool, "other-run", "other-step").is_claimed
        outcome: dict[str, object] = {}

        def sync() -> None:
            try:
                outcome["result"] = dg.materialize(
                    sync_assets, selection=[sync_asset_key("user")], instance=instance,
                    resources=resources, partition_key=registered_tenant)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc

        worker = threading.Thread(target=sync)
        worker.start()
        worker.join(timeout=6)
        assert worker.is_alive() and "result" not in outcome  # waiting for the slot
        info = storage.get_concurrency_info(pool)
        assert info.slot_count == 1 and info.pending_step_count == 1
        storage.free_concurrency_slot_for_step("other-run", "other-step")
        worker.join(timeout=300)  # a few seconds when idle; CI machines are busy
        assert not worker.is_alive(), "the sync did not finish after its slot was freed"
        assert "result" in outcome, outcome
        assert outcome["result"].success  # type: ignore[attr-defined]
        after = storage.get_concurrency_info(pool)
        assert after.active_slot_count == 0 and after.pending_step_count == 0  # slot returned


OPENED: list[str] = []  # tenants whose CRM FlakyCrm opened, in order
FAILED_READS: list[str] = []  # objects whose read FlakyCrm failed, in order


class FlakyCrm(CrmResource):
    """The tenant's real connector, except that reading `failing_object` raises `error`
    (the first `failures` times)."""

    failing_object: str
    error: str  # "outage" or "credentials"
    failures: int = 1_000

    def open(self, tenant_id):  # type: ignore[no-untyped-def]
        from connectors.base import AuthenticationError, SourceUnavailable

        connector = super().open(tenant_id)
        OPENED.append(tenant_id)
        read = connector.read

        def failing_read(object_name, state, **kwargs):  # type: ignore[no-untyped-def]
            if object_name == self.failing_object and len(FAILED_READS) < self.failures:
                FAILED_READS.append(object_name)
                if self.error == "credentials":
                    raise AuthenticationError("INVALID_LOGIN: session revoked",
                                              hint="re-enter the credentials")
                raise SourceUnavailable("the CRM did not answer (503)")
            return read(object_name, state, **kwargs)

        connector.read = failing_read  # type: ignore[method-assign]
        return connector


def test_one_step_syncs_every_object_and_one_failure_does_not_stop_the_others(
    instance, resources, registered_tenant, warehouse
):
    """One login per attempt; an object that fails is named and retried, the others are
    synced anyway in the same attempt."""
    from accrue_pipelines.sync.assets import sync_order

    assert set(sync_order()) == set(COMMON_OBJECTS)
    assert sync_order().index("product") < sync_order().index("opportunity_line")  # parents first
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [registered_tenant])
    crm = FlakyCrm(warehouse=resources["warehouse"], failing_object="contact", error="outage",
                   failures=1)
    OPENED.clear()
    FAILED_READS.clear()
    result = dg.materialize(sync_assets, instance=instance, partition_key=registered_tenant,
                            resources={**resources, "crm": crm})
    assert result.success  # the retry synced contact
    assert FAILED_READS == ["contact"]
    assert len(OPENED) == 2 and set(OPENED) == {registered_tenant}  # one login per attempt
    events = result.all_events
    retry = next(i for i, e in enumerate(events)
                 if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert "contact" in str(events[retry].event_specific_data.error)
    first_attempt = {e.asset_key for e in events[:retry]
                     if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION}
    every = {sync_asset_key(o) for o in COMMON_OBJECTS}
    assert first_attempt == every - {sync_asset_key("contact")}
    assert {e.asset_key for e in result.get_asset_materialization_events()} == every
    assert warehouse.count(registered_tenant, "contact") > 0
    steps = {e.step_key for e in events if e.event_type == dg.DagsterEventType.STEP_START}
    assert steps == {"crm_sync"}  # one step for all objects
def test_credentials_refused_midway_mark_only_the_unsynced_objects_red(
    instance, resources, registered_tenant
):
    from accrue_pipelines.sync.assets import sync_order
    from accrue_pipelines.sync.failure_sensor import sync_failure_sensor

    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [registered_tenant])
    crm = FlakyCrm(warehouse=resources["warehouse"], failing_object="opportunity",
                   error="credentials")
    FAILED_READS.clear()
    result = dg.materialize(sync_assets, instance=instance, partition_key=registered_tenant,
                            resources={**resources, "crm": crm}, raise_on_error=False)
    assert not result.success
    assert not [e for e in result.all_events
                if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]  # no pointless retry
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="sync_failure_sensor", dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id), dagster_event=failure,
    ).for_run_failure()
    sync_failure_sensor(context)

    def latest_health(object_name: str):  # type: ignore[no-untyped-def]
        key = dg.AssetCheckKey(sync_asset_key(object_name), "sync_healthy")
        records = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        return records[0].event.dagster_event.event_specific_data if records else None

    # Activities are an optional import the tenant did not choose: never synced, never red.
    assert "not selected" in (latest_health("activity").description or "")
    order = [name for name in sync_order() if name != "activity"]
    before = order[:order.index("opportunity")]
    assert before == ["account", "contact", "lead"]
    for name in before:  # synced before the refusal: their last word is a pass
        assert latest_health(name).passed is True, name
    for name in order[len(before):]:
        evaluation = latest_health(name)
        assert evaluation.passed is False and evaluation.partition == registered_tenant, name
        assert evaluation.metadata["error_kind"].value == "credentials"
    # Every object's attempt is on record: synced, failed at the refusal, or not reached.
    from accrue.warehouse import Warehouse

    health = Warehouse(resources["warehouse"].engine()).sync_health(registered_tenant)
    assert {name: health[name]["last_status"] for name in order} == {
        name: "succeeded" if name in before else "failed" for name in order}
    assert all(health[name]["error_kind"] == "credentials" for name in order[len(before):])
