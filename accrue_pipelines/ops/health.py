"""One tenant's health in the words an on-call engineer needs: is it fresh, why not, what to do.

Freshness is per tenant, from the tenant's own sync frequency: stale after
STALE_INTERVALS intervals without a successful sync of every object it syncs. Dagster
1.13's `FreshnessPolicy` belongs to an asset, not to a partition (one tenant's success
would make every tenant look fresh), so freshness is computed here and shown on the
partitioned `ops/tenant_health` asset and its `tenant_fresh` check.

Everything is read through the warehouse's and the registry's read APIs; nothing here
writes a table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from accrue import tenants
from accrue.warehouse import Warehouse
from accrue.warehouse.runs import changes_of
from accrue_pipelines.constants import ACTIONS

# Two intervals: one late sync is noise (a queue, a slow CRM); two missed in a row is not.
STALE_INTERVALS = 2
DAY = timedelta(days=1)


@dataclass(frozen=True)
class TenantHealth:
    """The roll-up for one tenant; `status` is healthy, stale, failing or never synced."""

    tenant_id: str
    crm_type: str
    frequency_minutes: int
    status: str
    last_success_at: datetime | None
    lag_minutes: float | None  # since the oldest object's last successful sync
    records_last_day: int
    changes_last_day: int
    quarantined: int
    quota_stops_last_day: int  # runs stopped at the CRM's API quota (no call count is kept)
    failing_objects: tuple[str, ...]
    failed_run_id: str | None  # the Dagster run of the latest failed sync, for the alert's link
    reason: str
    action: str

    @property
    def stale(self) -> bool:
        """No full successful sync within STALE_INTERVALS of the tenant's frequency."""
        limit = STALE_INTERVALS * self.frequency_minutes
        return self.lag_minutes is None or self.lag_minutes > limit

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["last_success_at"] = (self.last_success_at.isoformat(timespec="seconds")
                                  if self.last_success_at else "never")
        row["failing_objects"] = ", ".join(self.failing_objects)
        row.pop("failed_run_id")
        return row


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def tenant_health(store: Warehouse, tenant: tenants.Tenant, now: datetime) -> TenantHealth:
    """The tenant's health at `now`, from its sync ledger, quarantine and frequency."""
    objects = tenant.synced_objects()
    health = {k: v for k, v in store.sync_health(tenant.id).items() if k in objects}
    successes = [_utc(h["last_success_at"]) for h in health.values()]
    # The tenant is as fresh as its least fresh object; one never synced makes it unknown.
    last_success = (min(s for s in successes if s) if successes and all(successes)
                    and len(health) == len(objects) else None)
    lag = round((now - last_success).total_seconds() / 60, 1) if last_success else None
    runs_per_day = len(objects) * (DAY // timedelta(minutes=tenant.sync_frequency_minutes) + 2)
    runs = store.recent_runs(tenant.id, limit=min(runs_per_day, 5000))  # newest first
    day_runs = [r for r in runs if (_utc(r["started_at"]) or now) >= now - DAY]
    failing = tuple(sorted(name for name, h in health.items() if h["last_status"] == "failed"))
    quarantined = store.quarantine_count(tenant.id)
    overdue = lag is None or lag > STALE_INTERVALS * tenant.sync_frequency_minutes
    if failing:
        first = health[failing[0]]
        kind = first["error_kind"] or "error"
        status, reason, action = ("failing", f"{kind}: {first['last_error'] or 'failed'}"
                                  f" ({len(failing)} object(s))", ACTIONS[kind])
    elif not health and (now - (_utc(tenant.created_at) or now)
                         <= STALE_INTERVALS * timedelta(minutes=tenant.sync_frequency_minutes)):
        status, reason, action = "never synced", "no sync has run yet", ACTIONS["never"]
    elif not health:  # added two intervals ago and still no sync: as stale as any
        status, reason, action = "stale", "no sync has run since the tenant was added", \
            ACTIONS["never"]
    elif overdue:
        status = "stale"
        reason = ("not every object has synced yet" if lag is None else
                  f"last full success {lag:,.0f} min ago, frequency "
                  f"{tenant.sync_frequency_minutes} min")
        action = ACTIONS["stale"]
    elif quarantined:
        status, reason, action = ("healthy", f"{quarantined:,} record(s) in quarantine",
                                  ACTIONS["quarantine"])
    else:
        status, reason, action = "healthy", "synced on time", "nothing to do"
    return TenantHealth(
        tenant_id=tenant.id, crm_type=tenant.crm_type,
        frequency_minutes=tenant.sync_frequency_minutes, status=status,
        last_success_at=last_success, lag_minutes=lag,
        records_last_day=sum(int(r["records_read"] or 0) for r in day_runs),
        changes_last_day=sum(map(changes_of, day_runs)),
        quarantined=quarantined,
        quota_stops_last_day=sum(1 for r in day_runs if r["error_kind"] == "quota"),
        failing_objects=failing, reason=reason[:500], action=action,
        failed_run_id=next((r["run_id"] for r in runs if r["status"] == "failed"
                            and r["object_name"] in failing), None) if failing else None,
    )


def fleet_health(store: Warehouse, now: datetime) -> list[TenantHealth]:
    """Every active tenant's health, most lagging first (never synced at the top)."""
    rows = [tenant_health(store, t, now) for t in tenants.list_tenants(store.engine)
            if t.status == "active"]
    return sorted(rows, key=lambda h: (h.lag_minutes is not None, -(h.lag_minutes or 0)))


