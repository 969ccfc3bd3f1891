"""Making a failing tenant visible at a glance, with an error a person can act on.

A sync that fails never materializes, so its in-asset checks cannot speak.
This run-failure sensor reports the `sync_healthy` check as failed on the
tenant's partition of every asset whose step failed, with the kind of error
and the action it calls for; the next successful sync turns it green again.
"""

import dagster as dg

from accrue_pipelines.jobs import sync_tenant_job
from accrue_pipelines.sync_assets import HEALTH_CHECK

ERROR_KINDS = {
    "AuthenticationError": "credentials",
    "QuotaExceeded": "quota",
    "SourceUnavailable": "outage",
}
ACTIONS = {
    "credentials": "The CRM rejected the stored credentials: ask the tenant's admin to "
                   "re-enter them in the concierge.",
    "quota": "The CRM's API quota is spent: the sync resumes from its checkpoint once it "
             "resets; raise the quota or lower the sync frequency if this repeats.",
    "outage": "The CRM did not answer after retries: nothing to do unless it persists; "
              "check the CRM's status page.",
    "error": "Unexpected error: read the run's logs.",
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


@dg.run_failure_sensor(
    monitored_jobs=[sync_tenant_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Marks a failing tenant's sync_healthy check red with the reason and action.",
)
def sync_failure_sensor(context: dg.RunFailureSensorContext) -> None:
    tenant_id = context.dagster_run.tags.get("dagster/partition")
    if not tenant_id:
        return
    failures = context.get_step_failure_events()
    for event in failures:
        asset_key = dg.AssetKey(event.step_key.split("__")) if event.step_key else None
        if asset_key is None:
            continue
        kind, message = classify(event.step_failure_data.error)
        context.instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=asset_key,
                check_name=HEALTH_CHECK,
                passed=False,
                partition=tenant_id,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "error_kind": kind,
                    "error": message[:2000],
                    "action": ACTIONS[kind],
                    "run_id": context.dagster_run.run_id,
                },
            )
        )
        context.log.warning(f"{tenant_id} {asset_key.to_user_string()}: {kind}: {message}")
