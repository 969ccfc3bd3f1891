"""Making a failing tenant visible at a glance, with an error a person can act on.

A sync that fails never materializes, so its in-asset checks cannot speak.
This run-failure sensor reports the `sync_healthy` check as failed on the
tenant's partition of every object the run was meant to sync but did not
(all of them when the credentials were refused; only the failing ones when the
others synced), with the kind of error and the action it calls for; the next
successful sync turns it green again.
"""

import dagster as dg

from accrue_pipelines.constants import ACTIONS, HEALTH_CHECK, SYNC_ASSET_KEYS
from accrue_pipelines.platform import ui_metadata
from accrue_pipelines.sync.jobs import sync_tenant_job

ERROR_KINDS = {
    "AuthenticationError": "credentials",
    "QuotaExceeded": "quota",
    "SourceUnavailable": "outage",
}


def classify(error: "dg.SerializableErrorInfo | None") -> tuple[str, str]:
    """(kind, message) from a step failure, looking through Dagster's wrapping errors."""
    message = ""
    while error is not None:
        if error.cls_name in ERROR_KINDS:
            return ERROR_KINDS[error.cls_name], error.message.strip()
        message = message or error.message.strip()
        error = error.cause
    return "error", message


def unsynced_objects(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[dg.AssetKey]:
    """The crm/* assets the run was meant to materialize and did not (in any attempt)."""
    meant = [k for k in SYNC_ASSET_KEYS if not run.asset_selection or k in run.asset_selection]
    records = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=1000
    ).records
    done = {r.event_log_entry.dagster_event.asset_key for r in records
            if r.event_log_entry.dagster_event is not None}
    return [key for key in meant if key not in done]


@dg.run_failure_sensor(
    monitored_jobs=[sync_tenant_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Marks a failing tenant's sync_healthy check red with the reason and action.",
)
def sync_failure_sensor(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    tenant_id = run.tags.get("dagster/partition")
    failures = context.get_step_failure_events()
    if not tenant_id or not failures:
        return
    kind, message = classify(failures[-1].step_failure_data.error)
    for asset_key in unsynced_objects(context.instance, run):
        ui_metadata.report_check_evaluation(  # under the failed run: one verdict per run
            context.instance,
            dg.AssetCheckEvaluation(
                asset_key=asset_key,
                check_name=HEALTH_CHECK,
                passed=False,
                partition=tenant_id,
                severity=dg.AssetCheckSeverity.ERROR,
                description=f"{tenant_id}: sync failed ({kind}): {ACTIONS[kind]}",
                metadata={
                    "tenant": tenant_id,
                    "error_kind": kind,
                    "error": message[:2000],
                    "action": ACTIONS[kind],
                    "run_id": run.run_id,
                    **({"run": dg.MetadataValue.url(link)}
                       if (link := ui_metadata.run_link(run.run_id)) else {}),
                },
            ),
            run.run_id,
        )
        context.log.warning(f"{tenant_id} {asset_key.to_user_string()}: {kind}: {message}")
