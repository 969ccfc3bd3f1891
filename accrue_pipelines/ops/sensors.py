"""The on-call hears of a failing, stale or red-checked tenant once per incident, with a link.

`tenant_health_sensor` computes every active tenant's health (ops/health.py), then:
1. reports `ops/tenant_health` (materialization and `tenant_fresh` check) for each tenant
   whose status changed, and `ops/fleet_health` when any did or the table is older than
   FLEET_REFRESH_SECONDS, without a run: the figures are already computed here;
2. opens an incident per (tenant, kind) — kinds: failed_sync, stale, failed_check — and
   alerts when one opens, by e-mail (the ACCRUE_SMTP_* settings, to ACCRUE_ONCALL_EMAIL)
   and Slack (dagster-slack, when ACCRUE_SLACK_TOKEN and ACCRUE_SLACK_CHANNEL are set);
   an incident that stays open is not alerted again, and one that clears is forgotten,
   so the next failure is a new incident.

Each tick reads every active tenant's sync ledger: 200 tenants (8 objects, a day of hourly
runs each) took 1.0-1.7 s on SQLite on a busy 2-core machine, so 1,000 stay well inside a
tick's 60 s.

The open incidents (tenant|kind -> start) live in the sensor's cursor, written last: a
tick that fails before returning alerts again at the next tick (at least once, never
silently dropped). Secrets (SMTP password, Slack token) come from the environment and
are never logged or put in metadata.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import dagster as dg

from accrue import onboarding_notify
from accrue_pipelines.constants import (
    FLEET_HEALTH_KEY,
    HEALTH_CHECK,
    MATCHES_CHECK,
    QUARANTINE_CHECK,
    SYNC_ASSET_KEYS,
    TENANT_HEALTH_KEY,
)
from accrue_pipelines.ops import assets as ops_assets
from accrue_pipelines.ops.checks import FRESH_CHECK, fresh_verdict
from accrue_pipelines.ops.health import TenantHealth, fleet_health
from accrue_pipelines.platform import ui_metadata
from accrue_pipelines.platform.partitions import tenant_partitions
from accrue_pipelines.platform.resources import WarehouseResource

# A changed status refreshes its tenant's partition; the fleet table follows at least this
# often so its lag column does not age on screen.
FLEET_REFRESH_SECONDS = 600
# Tenants one tick reports (two instance writes each): the first tick on a large fleet
# would otherwise write for every tenant at once; the rest follow at the next ticks.
MAX_REFRESHES_PER_TICK = 50
KINDS = ("failed_sync", "stale", "failed_check")


@dataclass(frozen=True)
class Incident:
    tenant_id: str
    kind: str
    started_at: str  # ISO time the sensor first saw it: part of its identity
    summary: str
    action: str
    link: str | None

    @property
    def key(self) -> str:
        return f"{self.tenant_id}|{self.kind}"


class Notifier(Protocol):
    def __call__(self, incident: Incident) -> bool: ...


def current_incidents(
    fleet: list[TenantHealth], red_checks: Mapping[str, list[str]]
) -> dict[str, tuple[str, str, str, str | None]]:
    """key -> (kind, summary, action, link) for every problem open now."""
    open_now: dict[str, tuple[str, str, str, str | None]] = {}
    for h in fleet:
        health_page = ui_metadata.tenant_link(h.tenant_id)
        if h.status == "failing":
            open_now[f"{h.tenant_id}|failed_sync"] = (
                "failed_sync", f"{h.tenant_id}: sync failed: {h.reason}", h.action,
                ui_metadata.run_link(h.failed_run_id) or health_page)
        if h.status == "stale":  # a failing tenant is stale too: one incident, not two
            open_now[f"{h.tenant_id}|stale"] = (
                "stale", f"{h.tenant_id}: stale: {h.reason}", h.action, health_page)
        if red_checks.get(h.tenant_id):
            checks = ", ".join(red_checks[h.tenant_id])
            open_now[f"{h.tenant_id}|failed_check"] = (
                "failed_check", f"{h.tenant_id}: failed checks: {checks}",
                "Open the asset's Checks tab, filter by the tenant's partition: each check's "
                "description says what differs (docs/operations.md).", health_page)
    return open_now


def reconcile(
    known: Mapping[str, str], open_now: Mapping[str, tuple[str, str, str, str | None]],
    now: datetime,
) -> tuple[dict[str, str], list[Incident]]:
    """(open incidents key -> start, the ones that opened now). Cleared ones are dropped."""
    still: dict[str, str] = {}
    new: list[Incident] = []
    for key, (kind, summary, action, link) in open_now.items():
        started = known.get(key)
        if started is None:
            started = now.isoformat(timespec="seconds")
            new.append(Incident(key.split("|")[0], kind, started, summary, action, link))
        still[key] = started
    return still, new


def email_notifier(settings: onboarding_notify.SmtpSettings, to: str) -> Notifier:
    def send(incident: Incident) -> bool:
        body = f"{incident.summary}\n\nWhat to do: {incident.action}\n"
        if incident.link:
            body += f"\nDagster: {incident.link}\n"
        body += f"\nIncident {incident.key} since {incident.started_at}.\n"
        return onboarding_notify.send_email(
            settings, to, f"[Accrue] {incident.summary}"[:200], body,
            message_id=f"<{incident.key.replace('|', '.')}.{incident.started_at}@accrue>")
    return send


def slack_notifier(client: Any, channel: str) -> Notifier:
    """Posts with a slack_sdk WebClient (dagster_slack.SlackResource.get_client())."""
    def send(incident: Incident) -> bool:
        text = f":rotating_light: *{incident.summary}*\n{incident.action}"
        if incident.link:
            text += f"\n<{incident.link}|Open in Dagster>"
        try:
            client.chat_postMessage(channel=channel, text=text)
        except Exception as exc:  # noqa: BLE001 - a Slack outage must not stop e-mail
            dg.get_dagster_logger().warning(f"Slack alert not sent: {type(exc).__name__}")
            return False
        return True
    return send


def notifiers_from_env() -> list[Notifier]:
    """E-mail and Slack, each when configured; none configured means alerts are off."""
    found: list[Notifier] = []
    settings = onboarding_notify.SmtpSettings.from_env()
    oncall = os.environ.get("ACCRUE_ONCALL_EMAIL")
    if settings.host and oncall:
        found.append(email_notifier(settings, oncall))
    token, channel = os.environ.get("ACCRUE_SLACK_TOKEN"), os.environ.get("ACCRUE_SLACK_CHANNEL")
    if token and channel:
        from dagster_slack import SlackResource

        found.append(slack_notifier(SlackResource(token=token).get_client(), channel))
    return found


def red_checks_by_tenant(
    instance: dg.DagsterInstance, tenant_ids: list[str]
) -> dict[str, list[str]]:
    """Failed crm/* checks per tenant, except sync_healthy (that is a failed_sync)."""
    keys = [dg.AssetCheckKey(asset, name) for asset in SYNC_ASSET_KEYS
            for name in (MATCHES_CHECK, QUARANTINE_CHECK)]
    red: dict[str, list[str]] = {}
    for info in instance.event_log_storage.get_asset_check_partition_info(
            keys, partition_keys=tenant_ids):
        if info.partition_key and info.latest_execution_status.value == "FAILED" \
                and info.check_key.name != HEALTH_CHECK:
            red.setdefault(info.partition_key, []).append(
                f"{info.check_key.asset_key.to_user_string()}:{info.check_key.name}")
    return {tenant: sorted(names) for tenant, names in red.items()}


NotifierFactory = Callable[[], list[Notifier]]
notifier_factory: NotifierFactory = notifiers_from_env  # tests replace it with fakes


def report_health(instance: dg.DagsterInstance, changed: list[TenantHealth],
                  fleet: list[TenantHealth] | None) -> None:
    """The health assets' new state, reported without a run (the figures are computed)."""
    for h in changed:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=TENANT_HEALTH_KEY, partition=h.tenant_id,
            metadata=ops_assets.health_metadata(h)))
        # A run id of its own per verdict: see ui_metadata.report_check_evaluation.
        ui_metadata.report_check_evaluation(instance, dg.AssetCheckEvaluation(
            asset_key=TENANT_HEALTH_KEY, check_name=FRESH_CHECK,
            partition=h.tenant_id, **fresh_verdict(h)),
            f"tenant-health-{uuid.uuid4().hex}")
    if fleet is not None:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=FLEET_HEALTH_KEY, metadata=ops_assets.fleet_metadata(fleet)))


@dg.sensor(
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reports ops/tenant_health for each tenant whose status changed and "
                "ops/fleet_health, and alerts the on-call once per incident (failed sync, "
                "stale, failed check).",
)
def tenant_health_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult:
    now = ops_assets.now()
    state = json.loads(context.cursor) if context.cursor else {}
    # Only tenants with a partition: the health partitions are the tenants'.
    known = set(tenant_partitions.get_partition_keys(dynamic_partitions_store=context.instance))
    fleet = [h for h in fleet_health(warehouse.warehouse(), now) if h.tenant_id in known]
    red = red_checks_by_tenant(context.instance, [h.tenant_id for h in fleet])
    # What a person would see change (not the lag, which moves every tick).
    statuses = {h.tenant_id: f"{h.status}|{h.stale}|{','.join(h.failing_objects)}|"
                f"{h.quarantined}" for h in fleet}
    changed = [h for h in fleet if state.get("statuses", {}).get(h.tenant_id)
               != statuses[h.tenant_id]][:MAX_REFRESHES_PER_TICK]
    fleet_due = now.timestamp() - float(state.get("fleet_at", 0)) >= FLEET_REFRESH_SECONDS
    report_health(context.instance, changed, fleet if changed or fleet_due else None)
    incidents, new = reconcile(state.get("incidents", {}),
                               current_incidents(fleet, red), now)
    notifiers = notifier_factory() if new else []
    for incident in new:
        sent = [notify(incident) for notify in notifiers]
        context.log.info(f"incident {incident.key}: alerted {sum(sent)}/{len(sent)} channel(s)")
    # A status counts as shown once reported; the rest are reported at the next ticks.
    seen = {**state.get("statuses", {}), **{h.tenant_id: statuses[h.tenant_id] for h in changed}}
    cursor = {"statuses": {t: s for t, s in seen.items() if t in statuses},
              "incidents": incidents,
              "fleet_at": now.timestamp() if changed or fleet_due else state.get("fleet_at", 0)}
    return dg.SensorResult(
        skip_reason=dg.SkipReason(f"{len(fleet)} tenant(s): {len(changed)} status change(s), "
                                  f"{len(new)} new incident(s)"),
        cursor=json.dumps(cursor, sort_keys=True))
