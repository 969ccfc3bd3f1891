"""Sensors that e-mail tenant admins about milestones, whether or not a page is open.

The concierge's status page sends "your first data is ready" when it notices
the milestone, but an admin who closed the page would never hear of it. This
sensor runs the same check (`accrue.onboarding_notify`) for every tenant
still waiting for that e-mail. The "notified" mark in `onboarding_state` is
the only notification state: it is claimed in the database before sending, so
the page and the sensor never both send, and a tick that repeats after a crash
finds it set. The cursor holds only a position: the last tenant id checked, so
successive ticks walk round every waiting tenant and none is starved by others
whose data is slow to arrive.
"""

from __future__ import annotations

from collections import Counter

import dagster as dg

from accrue import onboarding_notify
from accrue_pipelines.platform.resources import WarehouseResource

ACTOR = "dagster:first_data_email_sensor"
# Bounds one tick's work (each tenant costs a few small queries, one e-mail at most); the
# cursor carries the round on, so every waiting tenant is checked every N/200 ticks.
MAX_TENANTS_PER_TICK = 200


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "E-mails a tenant's admin once when the first sync of every object has "
        "succeeded (the concierge status page's milestone), for admins who are not "
        "looking at the page."
    ),
)
def first_data_email_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    settings = onboarding_notify.SmtpSettings.from_env()
    if not settings.host:
        return dg.SkipReason("e-mail is off: ACCRUE_SMTP_HOST is not set")
    engine = warehouse.engine()
    waiting = onboarding_notify.awaiting_first_data_email(
        engine, limit=MAX_TENANTS_PER_TICK, after=context.cursor or "")
    status_url = onboarding_notify.public_status_url()
    outcomes: Counter[str] = Counter()
    for tenant_id in waiting:
        outcome = onboarding_notify.notify_first_data(
            engine, tenant_id, settings, actor=ACTOR, status_url=status_url)
        outcomes[outcome] += 1
        if outcome in ("sent", "failed"):
            context.log.info(f"first-data e-mail for {tenant_id}: {outcome}")
    summary = ", ".join(f"{n} {word}" for word, n in sorted(outcomes.items())) or "none"
    return dg.SensorResult(
        skip_reason=dg.SkipReason(
            f"{len(waiting)} tenant(s) awaiting the first-data e-mail checked; outcomes: "
            f"{summary}"),
        cursor=waiting[-1] if waiting else context.cursor,
    )
