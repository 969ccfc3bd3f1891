"""A push tenant in the pipelines and the CLI (issue 13, F8): the sensor requests its sync
when batches wait, a Dagster run applies them like any CRM sync (sync_run rows, checks);
`accrue push credentials|process`."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask import Flask

from accrue import config, sync_schedule, tenants
from accrue.push import PUSH_CRM_TYPE, credentials, inbox
from accrue.schema import object_table, sync_run
from accrue.warehouse import Warehouse
from accrue_cli.commands import main
from accrue_pipelines.constants import sync_asset_key
from accrue_pipelines.platform import run_tags
from accrue_pipelines.platform.partitions import TENANT_PARTITIONS_NAME
from accrue_pipelines.platform.resources import pipeline_resources
from accrue_pipelines.sync import sensors
from accrue_pipelines.sync.assets import sync_assets
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    concierge_db_url_fixture,
    make_app,
)
from accrue_pipelines_tests.concierge.test_push_api import Pusher, record
from connectors.common_model import COMMON_OBJECTS


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def _store(engine, tenant_id, *records):
    body = json.dumps({"records": list(records)}).encode()
    return inbox.store(engine, tenant_id, f"msg_{uuid.uuid4().hex}", body, {}, len(records))


def _tick(instance, resources):
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        return sensors.tenant_sync_sensor(ctx)


def test_the_sensor_requests_a_push_tenants_sync_only_when_batches_wait(
        instance, private_engine, monkeypatch):
    resources = pipeline_resources(private_engine.url.render_as_string(False))
    for tenant_id in ("pushed-a", "pushed-b", "pushed-c"):
        tenants.add_tenant(private_engine, tenant_id, tenant_id, PUSH_CRM_TYPE)
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, ["pushed-a", "pushed-b",
                                                             "pushed-c"])
    result = _tick(instance, resources)
    assert not result.run_requests  # nothing pushed: nothing to do, whatever the frequency
    assert "3 fed by push or upload, 0 with records waiting" in (
        result.skip_reason.skip_message)

    _store(private_engine, "pushed-a", record("account", "A1", name="Acme"))
    _store(private_engine, "pushed-b", record("account", "B1", name="Beta"))
    monkeypatch.setattr(sensors, "MAX_RUN_REQUESTS_PER_TICK", 1)  # the cap holds for feeds
    first = _tick(instance, resources)
    [request] = first.run_requests
    assert request.partition_key == "pushed-a"
    assert request.tags[run_tags.TRIGGER] == "received"
    assert request.tags[run_tags.CRM] == PUSH_CRM_TYPE
    assert request.tags[run_tags.TENANT] == "pushed-a"  # serialised per tenant by the queue
    # The next tick: pushed-a's request is on its way (not asked twice), pushed-b's turn;
    # pushed-c has nothing waiting.
    second = _tick(instance, resources)
    assert [r.partition_key for r in second.run_requests] == ["pushed-b"]
    assert not _tick(instance, resources).run_requests


def test_a_push_tenants_batches_reach_the_warehouse_through_a_dagster_run(
        instance, database_url, engine, tenant_id, make_tenant_id):
    tenants.add_tenant(engine, tenant_id, "Pushed", PUSH_CRM_TYPE)
    other = make_tenant_id()
    tenants.add_tenant(engine, other, "Other", PUSH_CRM_TYPE)
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant_id, other])
    _store(engine, tenant_id, record("account", "A1", name="Acme"),
           record("opportunity", "O1", name="Deal", account_id="A1", deal_value=1200.0))
    _store(engine, other, record("account", "X1", name="Not yours"))
    result = dg.materialize(sync_assets, instance=instance, partition_key=tenant_id,
                            resources=pipeline_resources(database_url))
    assert result.success
    store = Warehouse(engine)
    assert store.count(tenant_id, "account") == 1 and store.count(tenant_id, "opportunity") == 1
    with engine.connect() as conn:
        table = object_table("opportunity")
        amount = conn.execute(sa.select(table.c.amount)
                              .where(table.c.tenant_id == tenant_id)).scalar_one()
    assert amount == 1200.0  # "deal_value" mapped to amount on the first push
    assert store.count(other, "account") == 0  # another tenant's batch is not touched
    assert inbox.pending_count(engine, tenant_id) == 0
    assert inbox.pending_count(engine, other) == 1
    materialized = {e.asset_key: e.event_specific_data.materialization
                    for e in result.get_asset_materialization_events()}
    assert materialized[sync_asset_key("opportunity")].metadata["records_read"].value == 1
    assert all(c.passed for c in result.get_asset_check_evaluations())
    with engine.connect() as conn:
        runs = conn.execute(sa.select(sync_run.c.object_name, sync_run.c.status)
                            .where(sync_run.c.tenant_id == tenant_id)).all()
    chosen = {o for o in COMMON_OBJECTS if o != "activity"}
    assert {name for name, _ in runs} == chosen
    assert {status for _, status in runs} == {"succeeded"}


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
    assert "3 record(s): 3 upserted" in processed.output
    assert "0 batch(es) still pending" in processed.output
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
    from accrue_pipelines_tests.concierge.test_concierge_integration import _connected

    app = make_app(concierge_db_url, sf_sandbox.url)
    admin = _connected(app, sf_sandbox)
    engine = app.extensions["accrue_warehouse"]
    tenants.set_crm_type(engine, admin.tenant_id, PUSH_CRM_TYPE)
    response = admin.client.get("/integration", follow_redirects=True)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Fed by the push API" in page and f"/v1/push/{admin.tenant_id}/records" in page
    assert admin.client.get("/status").status_code == 200


def test_a_failing_feed_waits_its_backoff_instead_of_running_every_tick():
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    failing = sync_schedule.TenantSchedule(
        "pushed-a", last_requested_at=now - timedelta(minutes=10),
        last_success_at=now - timedelta(hours=1), last_outcome_at=now - timedelta(minutes=1),
        consecutive_failures=8)
    new = sync_schedule.TenantSchedule("pushed-b")
    schedules = {"pushed-a": failing, "pushed-b": new}
    chosen, _ = sync_schedule.plan([], schedules, [], now, limit=10,
                                   waiting=["pushed-a", "pushed-b"])
    assert [(r.tenant_id, r.reason, r.priority) for r in chosen] == [
        ("pushed-b", sync_schedule.FEED_REASON, sync_schedule.PRIORITY_FIRST_SYNC)]
    later = now + sync_schedule.FEED_RETRY_CAP
    chosen, _ = sync_schedule.plan([], schedules, [], later, limit=10, waiting=["pushed-a"])
    assert [r.tenant_id for r in chosen] == ["pushed-a"]
    assert chosen[0].reason.startswith("records waiting, retry after 8 failed")
    # Not waiting: never due, however long since its last sync.
    chosen, _ = sync_schedule.plan([], schedules, [], later + timedelta(days=2), limit=10)
    assert chosen == []
