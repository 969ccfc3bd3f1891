"""A push tenant in the pipelines and the CLI (issue 13, F8): the scheduled CRM sync skips
it with a clear reason and never builds a connector; `accrue push credentials|process`."""

from __future__ import annotations

import json
import re

import dagster as dg
import pytest
from click.testing import CliRunner
from flask import Flask

from accrue import config, tenants
from accrue.cli import main
from accrue.push import PUSH_CRM_TYPE, credentials
from accrue.warehouse import Warehouse
from accrue_pipelines import sensors
from accrue_pipelines.partitions import TENANT_PARTITIONS_NAME
from accrue_pipelines.resources import CrmResource, WarehouseResource
from accrue_pipelines.sync_assets import sync_asset_key, sync_assets
from accrue_pipelines_tests.test_concierge_app import (  # noqa: F401 - fixtures
    concierge_db_url_fixture,
    make_app,
)
from accrue_pipelines_tests.test_push_api import Pusher, record
from connectors.common_model import COMMON_OBJECTS


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_the_sensor_skips_push_tenants_with_a_reason(instance, private_engine):
    warehouse = WarehouseResource(database_url=private_engine.url.render_as_string(False))
    resources = {"warehouse": warehouse, "crm": CrmResource(warehouse=warehouse)}
    tenants.add_tenant(private_engine, "pushed-co", "Pushed Co", PUSH_CRM_TYPE)
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, ["pushed-co"])
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        result = sensors.tenant_sync_sensor(ctx)
    assert not result.run_requests
    assert "1 fed by the push API, not synced" in result.skip_reason.skip_message
    tenants.add_tenant(private_engine, "crm-co", "CRM Co", "salesforce")
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, ["crm-co"])
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        result = sensors.tenant_sync_sensor(ctx)
    assert [r.partition_key for r in result.run_requests] == ["crm-co"]


def test_a_sync_of_a_push_tenant_reads_no_crm_and_succeeds(instance, database_url, engine,
                                                           tenant_id):
    tenants.add_tenant(engine, tenant_id, "Pushed", PUSH_CRM_TYPE)
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant_id])
    warehouse = WarehouseResource(database_url=database_url)
    result = dg.materialize(sync_assets, instance=instance, partition_key=tenant_id,
                            resources={"warehouse": warehouse,
                                       "crm": CrmResource(warehouse=warehouse)})
    assert result.success
    materialized = {e.asset_key: e.event_specific_data.materialization
                    for e in result.get_asset_materialization_events()}
    chosen = {sync_asset_key(o) for o in COMMON_OBJECTS if o != "activity"}
    assert chosen <= set(materialized)
    assert all(materialized[k].metadata["fed_by_push"].value for k in chosen)
    assert all(c.passed for c in result.get_asset_check_evaluations())


def test_cli_credentials_and_process(database_url, engine, tenant_id, monkeypatch):
    monkeypatch.setenv(config.DATABASE_URL_ENV, database_url)
    runner = CliRunner()
    created = runner.invoke(main, ["push", "credentials", tenant_id, "--name", "Push Co"])
    assert created.exit_code == 0, created.output
    assert "registered (fed by the push API)" in created.output
    secret = re.search(r"Secret:\s+(whsec_\S+)", created.output).group(1)
    client_id = re.search(r"Client id:\s+(pc_\w+)", created.output).group(1)
    assert tenants.require_tenant(engine, tenant_id).crm_type == PUSH_CRM_TYPE

    app: Flask = make_app(database_url)
    issued = credentials.IssuedSecret(tenant_id, client_id, secret, 0)
    pusher = Pusher(app.test_client(), tenant_id, issued)
    assert pusher.push([record("account", "A1", name="Acme")]).status_code == 202

    rotated = runner.invoke(main, ["push", "credentials", tenant_id])
    assert rotated.exit_code == 0 and "1 older secret(s) still work" in rotated.output
    new_secret = re.search(r"Secret:\s+(whsec_\S+)", rotated.output).group(1)
    assert pusher.push([record("account", "A2", name="Old key")]).status_code == 202
    retired = runner.invoke(main, ["push", "credentials", tenant_id, "--retire-old"])
    assert retired.exit_code == 0 and "retired 1" in retired.output
    assert pusher.push([record("account", "A3")]).status_code == 401
    assert pusher.push([record("account", "A3", name="New key")],
                       secret=new_secret).status_code == 202

    processed = runner.invoke(main, ["push", "process", tenant_id])
    assert processed.exit_code == 0, processed.output
    assert "3 batch(es), 3 record(s): 3 upserted" in processed.output
    assert Warehouse(engine).count(tenant_id, "account") == 3
    assert secret not in processed.output + retired.output


def test_cli_refuses_to_turn_a_crm_tenant_into_push_silently(database_url, engine, tenant_id,
                                                            monkeypatch):
    monkeypatch.setenv(config.DATABASE_URL_ENV, database_url)
    tenants.add_tenant(engine, tenant_id, "CRM Co", "salesforce")
    runner = CliRunner()
    refused = runner.invoke(main, ["push", "credentials", tenant_id])
    assert refused.exit_code != 0 and "pass --switch" in refused.output
    assert credentials.list_credentials(engine, tenant_id) == []
    switched = runner.invoke(main, ["push", "credentials", tenant_id, "--switch"])
    assert switched.exit_code == 0 and "now fed by the push API" in switched.output
    assert json.dumps(tenants.require_tenant(engine, tenant_id).crm_type) == '"push"'


def test_the_integration_page_of_a_push_tenant_says_so(concierge_db_url, sf_sandbox):
    from accrue_pipelines_tests.test_concierge_integration import _connected

    app = make_app(concierge_db_url, sf_sandbox.url)
    admin = _connected(app, sf_sandbox)
    engine = app.extensions["accrue_warehouse"]
    tenants.set_crm_type(engine, admin.tenant_id, PUSH_CRM_TYPE)
    response = admin.client.get("/integration", follow_redirects=True)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Fed by the push API" in page and f"/v1/push/{admin.tenant_id}/records" in page
    assert admin.client.get("/status").status_code == 200
