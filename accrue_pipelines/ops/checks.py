"""The ops domain's check: is each tenant fresh, by its own sync frequency?

One verdict per tenant (the `tenant_fresh` check on its partition of `ops/tenant_health`),
computed from the roll-up in health.py: by the asset when it is materialized, and by the
on-call sensor (sensors.py) when it reports the asset without a run.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from accrue_pipelines.constants import TENANT_HEALTH_KEY
from accrue_pipelines.ops.health import STALE_INTERVALS, TenantHealth
from accrue_pipelines.platform import ui_metadata
from accrue_pipelines.platform.partitions import tenant_partitions

FRESH_CHECK = "tenant_fresh"


def fresh_verdict(health: TenantHealth) -> dict[str, Any]:
    """The `tenant_fresh` verdict: passes while a full sync succeeded within STALE_INTERVALS
    of the tenant's frequency (the fields of a check result or of a reported evaluation)."""
    limit = STALE_INTERVALS * health.frequency_minutes
    lag = "never" if health.lag_minutes is None else f"{health.lag_minutes:,.0f} min ago"
    return {
        "passed": not health.stale,
        "severity": (dg.AssetCheckSeverity.ERROR if health.status == "failing"
                     else dg.AssetCheckSeverity.WARN),
        "description": f"{health.tenant_id}: last full success {lag}, stale after {limit} min"
                       + ("" if not health.stale else f"; {health.reason}. {health.action}"),
        "metadata": {"tenant": dg.MetadataValue.text(health.tenant_id),
                     "figures": dg.MetadataValue.json({
                         "tenant": health.tenant_id, "lag_minutes": health.lag_minutes,
                         "stale_after_minutes": limit})},
    }


def fresh_result(health: TenantHealth) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name=FRESH_CHECK, **fresh_verdict(health))


with ui_metadata.partitioned_checks_allowed():
    FRESH_SPEC = dg.AssetCheckSpec(
        FRESH_CHECK, asset=TENANT_HEALTH_KEY, partitions_def=tenant_partitions,
        description=f"A full sync of the tenant succeeded within {STALE_INTERVALS} intervals "
                    "of its own sync frequency; otherwise why and what to do.")
