"""Per-tenant health, freshness from each tenant's own frequency, and alerts once per incident."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from accrue import tenants
from accrue_pipelines.constants import FLEET_HEALTH_KEY, TENANT_HEALTH_KEY
from accrue_pipelines.ops import assets as ops_assets
from accrue_pipelines.ops import checks as ops_checks
from accrue_pipelines.ops import sensors as alerts
from accrue_pipelines.ops.health import tenant_health
from accrue_pipelines.platform.partitions import TENANT_PARTITIONS_NAME
from accrue_pipelines.platform.resources import WarehouseResource
from connectors.base import Delete, Upsert


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def _runs(warehouse, tenant_id, status, *, error_kind=None, run_id="dagster-run"):
    """One run per object that read 10 records: 3 new, 1 deleted, 6 re-read unchanged."""
    tenant = tenants.require_tenant(warehouse.engine, tenant_id)
    at = datetime(2026, 1, 5, tzinfo=UTC)
    for name in tenant.synced_objects():
        kept = [Upsert(f"{name[:3]}-old-{i}", at, {}, {}) for i in range(6)]
        warehouse.apply(tenant_id, name, kept)  # stored by an earlier sync
        row = warehouse.start_run(tenant_id, name, run_id=run_id)
        page = [*(Upsert(f"{name[:3]}-{run_id}-{i}", at, {}, {}) for i in range(3)),
                Delete(f"{name[:3]}-gone-{run_id}", at), *kept]
        warehouse.apply(tenant_id, name, page, sync_run_id=row, records_read=10)
        warehouse.finish_run(row, status, {"upserted": 9, "deleted": 1, "records_read": 10},
                             "Salesforce rejected the login" if status == "failed" else None,
                             error_kind=error_kind)


@pytest.fixture
def two_tenants(engine, warehouse, make_tenant_id):
    healthy, failing = make_tenant_id(), make_tenant_id()
    for tenant_id in (healthy, failing):
        tenants.add_tenant(engine, tenant_id, "Co", "salesforce", sync_frequency_minutes=60)
        tenants.set_status(engine, tenant_id, "active")
    _runs(warehouse, healthy, "succeeded")
    _runs(warehouse, failing, "failed", error_kind="credentials", run_id="run-of-failing")
    return healthy, failing


def test_a_60_minute_tenant_is_stale_after_two_intervals_without_success(
        warehouse, engine, tenant_id):
    tenants.add_tenant(engine, tenant_id, "Co", "salesforce", sync_frequency_minutes=60)
    _runs(warehouse, tenant_id, "succeeded")
    tenant = tenants.require_tenant(engine, tenant_id)
    now = datetime.now(UTC)
    fresh = tenant_health(warehouse, tenant, now + timedelta(minutes=30))
    assert fresh.status == "healthy" and not fresh.stale
    assert ops_checks.fresh_result(fresh).passed
    late = tenant_health(warehouse, tenant, now + timedelta(hours=3))
    assert late.status == "stale" and late.stale and 179 <= (late.lag_minutes or 0) <= 181
    check = ops_checks.fresh_result(late)
    assert not check.passed and check.description.startswith(tenant_id)
    assert "stale after 120 min" in check.description
    # The same three hours on a daily tenant is fresh: the frequency is the tenant's own.
    tenants.set_sync_frequency(engine, tenant_id, 1440)
    daily = tenant_health(warehouse, tenants.require_tenant(engine, tenant_id),
                          now + timedelta(hours=3))
    assert daily.status == "healthy" and not daily.stale


def test_a_tenant_never_synced_is_stale_two_intervals_after_it_was_added(
        warehouse, engine, tenant_id, monkeypatch):
    monkeypatch.delenv("ACCRUE_DAGSTER_URL", raising=False)
    tenants.add_tenant(engine, tenant_id, "Co", "salesforce", sync_frequency_minutes=15)
    tenant = tenants.require_tenant(engine, tenant_id)
    assert tenant_health(warehouse, tenant, datetime.now(UTC)).status == "never synced"
    late = tenant_health(warehouse, tenant, datetime.now(UTC) + timedelta(minutes=31))
    assert late.status == "stale" and late.stale and "daemon" in late.action
    incidents = alerts.current_incidents([late], {})
    assert list(incidents) == [f"{tenant_id}|stale"]
    assert incidents[f"{tenant_id}|stale"][3] is None  # no ACCRUE_DAGSTER_URL: no link
    monkeypatch.setenv("ACCRUE_DAGSTER_URL", "https://dagster.example/")
    link = alerts.current_incidents([late], {})[f"{tenant_id}|stale"][3]
    assert link == ("https://dagster.example/assets/ops/tenant_health?view=partitions"
                    f"&partition={tenant_id}")


def test_the_health_view_shows_each_tenant_and_the_fleet(
        instance, database_url, two_tenants, monkeypatch):
    healthy, failing = two_tenants
    monkeypatch.setattr(ops_assets, "now", lambda: datetime.now(UTC) + timedelta(hours=3))
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [healthy, failing])
    resources = {"warehouse": WarehouseResource(database_url=database_url)}
    checks = {}
    for tenant_id in (healthy, failing):
        result = dg.materialize([ops_assets.tenant_health_asset], instance=instance,
                                partition_key=tenant_id, resources=resources)
        meta = result.get_asset_materialization_events()[0].materialization.metadata
        checks[tenant_id] = result.get_asset_check_evaluations()[0]
        assert isinstance(meta["records_last_day"], dg.IntMetadataValue)
        assert isinstance(meta["last_success_at" if tenant_id == healthy else "reason"],
                          dg.TimestampMetadataValue if tenant_id == healthy
                          else dg.TextMetadataValue)
    assert checks[failing].partition == failing and not checks[failing].passed
    assert checks[failing].severity == dg.AssetCheckSeverity.ERROR
    assert "re-enter" in checks[failing].description  # the action, in words
    # Three hours after a 60-minute tenant's last success: stale too.
    assert not checks[healthy].passed and checks[healthy].severity == dg.AssetCheckSeverity.WARN
    fleet = dg.materialize([ops_assets.fleet_health_asset], instance=instance,
                           resources=resources)
    table = fleet.get_asset_materialization_events()[0].materialization.metadata["tenants"]
    rows = {r.data["tenant_id"]: r.data for r in table.records}
    assert rows[failing]["status"] == "failing" and rows[failing]["lag_minutes"] is None
    assert rows[healthy]["status"] == "stale" and rows[healthy]["lag_minutes"] >= 179
    objects = tenants.require_tenant(_engine(database_url), healthy).synced_objects()
    # 3 new versions and 1 delete each; the 6 re-read unchanged are no change
    assert rows[healthy]["changes_last_day"] == 4 * len(objects)
    assert {c.name for c in table.schema.columns} >= {"tenant_id", "lag_minutes", "action"}


def _engine(database_url):
    return WarehouseResource(database_url=database_url).engine()


class _FakeSlack:
    def __init__(self):
        self.posts = []

    def chat_postMessage(self, channel, text):  # noqa: N802 - slack_sdk's name
        self.posts.append((channel, text))


def _health_events(instance):
    counts = {}
    for key in (TENANT_HEALTH_KEY, FLEET_HEALTH_KEY):
        records = instance.fetch_materializations(key, limit=100).records
        for record in records:
            partition = record.partition_key
            counts[partition] = counts.get(partition, 0) + 1
    return counts


def _tick(instance, database_url, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"warehouse": WarehouseResource(
                                          database_url=database_url)})
    return alerts.tenant_health_sensor(context)


def test_alerts_reach_slack_once_per_incident_with_a_link_to_the_run(
        instance, database_url, warehouse, two_tenants, monkeypatch):
    healthy, failing = two_tenants
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [healthy, failing])
    monkeypatch.setenv("ACCRUE_DAGSTER_URL", "http://dagster.example:3000/")
    slack = _FakeSlack()
    monkeypatch.setattr(alerts, "notifier_factory",
                        lambda: [alerts.slack_notifier(slack, "#oncall")])
    first = _tick(instance, database_url, None)
    assert [(c, t.split("*")[1]) for c, t in slack.posts] == [
        ("#oncall", f"{failing}: sync failed: credentials: Salesforce rejected the login "
                    f"({len(tenants.require_tenant(warehouse.engine, failing).synced_objects())}"
                    " object(s))")]
    assert "http://dagster.example:3000/runs/run-of-failing" in slack.posts[0][1]
    # Both tenants' health and the fleet's table are reported, without a run.
    assert _health_events(instance) == {healthy: 1, failing: 1, None: 1}
    assert not instance.get_runs()
    fresh = instance.event_log_storage.get_asset_check_partition_info(
        [dg.AssetCheckKey(TENANT_HEALTH_KEY, ops_checks.FRESH_CHECK)])
    assert {i.partition_key: i.latest_execution_status.value for i in fresh} == {
        healthy: "SUCCEEDED", failing: "FAILED"}
    # Still failing: no second alert, and nothing reported again (no change; table fresh).
    second = _tick(instance, database_url, first.cursor)
    assert len(slack.posts) == 1 and _health_events(instance) == {healthy: 1, failing: 1, None: 1}
    # Healthy again clears the incident; the next failure is a new one, alerted again.
    _runs(warehouse, failing, "succeeded")
    cleared = _tick(instance, database_url, second.cursor)
    assert json.loads(cleared.cursor)["incidents"] == {} and len(slack.posts) == 1
    _runs(warehouse, failing, "failed", error_kind="quota", run_id="run-2")
    _tick(instance, database_url, cleared.cursor)
    assert len(slack.posts) == 2 and "/runs/run-2" in slack.posts[1][1]


def test_incidents_are_keyed_by_tenant_kind_and_start():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    problem = {"acme|stale": ("stale", "acme: stale", "check the daemon", None)}
    opened, new = alerts.reconcile({}, problem, now)
    assert [i.key for i in new] == ["acme|stale"] and opened == {
        "acme|stale": "2026-01-01T00:00:00+00:00"}
    again, none = alerts.reconcile(opened, problem, now + timedelta(hours=1))
    assert none == [] and again == opened  # the start stays the incident's first sighting
    assert alerts.reconcile(again, {}, now) == ({}, [])


def test_email_alert_uses_the_smtp_settings_and_a_stable_message_id(monkeypatch):
    sent = []
    monkeypatch.setattr("accrue.onboarding_notify.send_email",
                        lambda settings, to, subject, body, message_id=None:
                        sent.append((settings.host, to, subject, body, message_id)) or True)
    monkeypatch.setenv("ACCRUE_SMTP_HOST", "smtp.example")
    monkeypatch.setenv("ACCRUE_ONCALL_EMAIL", "oncall@example.com")
    monkeypatch.delenv("ACCRUE_SLACK_TOKEN", raising=False)
    notifiers = alerts.notifiers_from_env()
    assert len(notifiers) == 1
    incident = alerts.Incident("acme", "stale", "2026-01-01T00:00:00+00:00", "acme: stale",
                               "check the daemon", "http://d/runs")
    assert notifiers[0](incident)
    host, to, subject, body, message_id = sent[0]
    assert (host, to) == ("smtp.example", "oncall@example.com") and "acme" in subject
    assert "check the daemon" in body and "http://d/runs" in body
    assert message_id == "<acme.stale.2026-01-01T00:00:00+00:00@accrue>"
    monkeypatch.delenv("ACCRUE_ONCALL_EMAIL")
    assert alerts.notifiers_from_env() == []  # no recipient: alerts are off, nothing sent
