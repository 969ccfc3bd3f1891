"""What the Dagster UI shows per tenant: partitioned checks, typed metadata, quiet start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from accrue import tenants
from accrue.sync import SyncResult
from accrue_pipelines.analytics.summary_assets import pipeline_summary
from accrue_pipelines.constants import HEALTH_CHECK, sync_asset_key
from accrue_pipelines.platform.partitions import TENANT_PARTITIONS_NAME
from accrue_pipelines.platform.resources import CrmResource, WarehouseResource
from accrue_pipelines.platform.ui_metadata import for_tenant, sync_metadata
from accrue_pipelines.sync.assets import sync_assets


@pytest.fixture
def resources(database_url):
    warehouse = WarehouseResource(database_url=database_url)
    return {"warehouse": warehouse, "crm": CrmResource(warehouse=warehouse)}


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def _add_salesforce_tenant(engine, tenant_id, sandbox, password, minutes=60):
    tenants.add_tenant(engine, tenant_id, f"{tenant_id} Co", "salesforce",
                       sync_frequency_minutes=minutes)
    tenants.save_credentials(
        engine, tenant_id, "salesforce",
        {"username": sandbox.username, "password": password,
         "security_token": sandbox.security_token},
        {"sandbox_url": sandbox.url},
    )


def _sync(instance, resources, tenant_id):
    return dg.materialize(sync_assets, selection=[sync_asset_key("account")], instance=instance,
                          partition_key=tenant_id, resources=resources, raise_on_error=False)


def _report_failure(instance, result):
    from accrue_pipelines.sync.failure_sensor import sync_failure_sensor

    run = instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    sync_failure_sensor(dg.build_run_status_sensor_context(
        sensor_name="sync_failure_sensor", dagster_instance=instance, dagster_run=run,
        dagster_event=failure).for_run_failure())


@pytest.fixture
def two_tenants(instance, resources, engine, make_tenant_id, sf_sandbox):
    """One healthy tenant, one whose credentials the CRM refuses, both synced once."""
    healthy, failing = make_tenant_id(), make_tenant_id()
    _add_salesforce_tenant(engine, healthy, sf_sandbox, sf_sandbox.password)
    _add_salesforce_tenant(engine, failing, sf_sandbox, "not-the-password")
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [healthy, failing])
    assert _sync(instance, resources, healthy).success
    failed = _sync(instance, resources, failing)
    assert not failed.success
    _report_failure(instance, failed)
    return healthy, failing


def test_each_tenant_has_its_own_check_status_on_the_same_asset(instance, two_tenants):
    healthy, failing = two_tenants
    key = dg.AssetCheckKey(sync_asset_key("account"), HEALTH_CHECK)
    infos = instance.event_log_storage.get_asset_check_partition_info([key])
    status = {i.partition_key: i.latest_execution_status.value for i in infos}
    assert status == {healthy: "SUCCEEDED", failing: "FAILED"}
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
    evaluations = [r.event.dagster_event.event_specific_data for r in history]
    by_tenant = {e.partition: e for e in evaluations if isinstance(e, dg.AssetCheckEvaluation)}
    assert by_tenant[healthy].passed and by_tenant[healthy].description.startswith(healthy)
    assert by_tenant[healthy].metadata["tenant"].value == healthy
    assert not by_tenant[failing].passed
    assert by_tenant[failing].metadata["tenant"].value == failing
    assert failing in by_tenant[failing].description
    assert "not-the-password" not in repr(by_tenant[failing])  # S1


def test_a_tenant_that_fails_again_gets_a_second_red_verdict(instance, resources, two_tenants,
                                                             monkeypatch):
    """Runless evaluations of one partition collide in Dagster 1.13's index: the failure
    sensor records each under its failed run, which also ends that run's planned check."""
    _, failing = two_tenants
    again = _sync(instance, resources, failing)
    monkeypatch.setenv("ACCRUE_DAGSTER_URL", "https://dagster.example")
    _report_failure(instance, again)  # raised IntegrityError when reported runless
    key = dg.AssetCheckKey(sync_asset_key("account"), HEALTH_CHECK)
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
    runs = [r.run_id for r in history if r.status.value == "FAILED"]  # the failing tenant's
    assert again.run_id in runs and len(set(runs)) == 2
    assert not [r for r in history if r.run_id == again.run_id and r.status.value != "FAILED"]
    latest = history[0].event.dagster_event.event_specific_data
    assert latest.metadata["run"] == dg.MetadataValue.url(
        f"https://dagster.example/runs/{again.run_id}")  # a link, typed as one


def test_a_check_result_names_its_tenant_and_plots_no_figure():
    from accrue_pipelines.sync.checks import _matches_result

    class Store:
        def duplicate_keys(self, *_):
            return 0

        def orphans(self, *_):
            return {"account_id": 0}

    raw = _matches_result(Store(), "acme", "opportunity", 1200, 2000)
    check = for_tenant(raw, "acme")
    assert not check.passed and check.description.startswith("acme: 1,200 live rows")
    numeric = (dg.IntMetadataValue, dg.FloatMetadataValue)
    assert not [k for k, v in check.metadata.items() if isinstance(v, numeric)]
    figures = check.metadata["figures"].value
    assert figures == {"tenant": "acme", "duplicate_keys": 0, "warehouse_live": 1200,
                       "orphan_account_id": 0, "source_live": 2000, "difference": -800}


def test_sync_metadata_is_typed_rounded_and_has_no_empty_entries():
    result = SyncResult("acme", "account", records_read=12, upserted=10,
                        duration_seconds=12.279556874000036, write_seconds=0.04,
                        new_fields=[], removed_fields=["Fax"], state={"cursor": "2026-01-01"})
    meta = sync_metadata(result)
    assert meta["duration_seconds"] == dg.MetadataValue.float(12.3)
    assert meta["write_seconds"] == dg.MetadataValue.float(0.0)
    assert meta["records_read"] == dg.MetadataValue.int(12)
    assert isinstance(meta["complete"], dg.BoolMetadataValue)
    assert meta["removed_fields"] == dg.MetadataValue.text("Fax")
    for empty in ("new_fields", "stop_reason", "sync_run_id", "tenant_id"):
        assert empty not in meta


def test_a_materialization_carries_typed_metadata(instance, resources, engine, tenant_id,
                                                   sf_sandbox):
    _add_salesforce_tenant(engine, tenant_id, sf_sandbox, sf_sandbox.password)
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant_id])
    result = _sync(instance, resources, tenant_id)
    assert result.success
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert isinstance(meta["duration_seconds"], dg.FloatMetadataValue)
    assert meta["duration_seconds"].value == round(meta["duration_seconds"].value, 1)
    assert isinstance(meta["connect_seconds"], dg.FloatMetadataValue)
    for count in ("records_read", "upserted", "dagster/row_count", "source_live_count"):
        assert isinstance(meta[count], dg.IntMetadataValue), count
    assert not [k for k, v in meta.items() if getattr(v, "value", v) in ("", None)]
    summary = dg.materialize(
        [pipeline_summary],
        instance=instance, partition_key=tenant_id, resources=resources)
    table = summary.get_asset_materialization_events()[0].materialization.metadata["summary"]
    assert isinstance(table, dg.TableMetadataValue) and table.schema.columns
    assert {r.data["object"] for r in table.records} >= {"account"}


WARNINGS_AS_ERRORS = """
import warnings
from dagster_shared.utils.warnings import BetaWarning, PreviewWarning, SupersessionWarning
for category in (SupersessionWarning, BetaWarning, PreviewWarning):
    warnings.simplefilter("error", category)
from accrue_pipelines.definitions import defs
defs.resolve_asset_graph()
defs.resolve_job_def("sync_tenant")
"""


def test_loading_the_definitions_warns_of_nothing_a_user_cannot_act_on():
    """In a fresh interpreter (a module imported by another test would not warn again)."""
    done = subprocess.run([sys.executable, "-c", WARNINGS_AS_ERRORS], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]


def test_no_instructions_start_the_superseded_dagster_dev():
    """`dagster dev` warns of its supersession and of the repo's dagster.yaml it ignores;
    the README and the demo start the webserver and the daemon with DAGSTER_HOME set."""
    repo = Path(__file__).resolve().parents[2]
    for name in ("README.md", "Makefile", "accrue_cli/demo.py"):
        text = (repo / name).read_text()
        assert "bin/dagster dev" not in text and "dagster dev -w" not in text, name
    assert "DAGSTER_HOME" in (repo / "README.md").read_text()
