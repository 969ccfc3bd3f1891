"""When each tenant's next sync is due: the scheduler's rules and its memory.

The promise: every active tenant is synced within the frequency its admin chose, a
failing tenant is retried soon (with growing backoff) rather than a full interval
later, a new tenant's first sync goes first, and a crowd of tenants never turns
into a burst. The mechanism:

* Due times count from the end of the last *successful* full sync, minus a lead
  that covers queueing and the sync itself, so the gap between two successes stays
  within the frequency. The lead carries a per-tenant jitter, so tenants that
  started together drift apart instead of syncing in lockstep.
* A failed sync is retried after 1, 2, 4, ... minutes (capped at the frequency),
  also jittered per tenant, so a CRM outage does not end in a thundering herd.
* A tenant that has never synced is due at once, at the first-sync priority.
* The full id reconciliation runs once a night per tenant, in a slot spread over
  a four-hour window by a hash of the tenant id; it rides on the tenant's next sync.
* "Sync now" on the admin's settings page (`request_sync`) makes the tenant due at
  once, above routine syncs and past any backoff (the admin may just have fixed the
  credentials); one request is pending at a time, and it is honoured (no longer
  pending) as soon as the scheduler has requested a sync after it.
* A feed tenant (records pushed or uploaded, accrue.sources) has no schedule: it is due
  at once when it has input waiting (the caller asks the feed), and a failing one is
  retried with the same backoff, capped at FEED_RETRY_CAP instead of a frequency.
* Callers cap how many due tenants they request at once (see `plan`).

State lives in `tenant_sync_schedule` (this module is its one write path), not in a
sensor cursor: a cursor is copied into every tick record, and per-tenant state for
thousands of tenants would be copied thousands of times a day. The admin's "Sync now"
is the row's `admin_requested_at`, written by `request_sync` and `cancel_request`; `save`
never touches it, so the scheduler cannot lose a request it has not read.

Nothing here knows Dagster: the sensor in accrue_pipelines feeds it run outcomes
and turns its plan into run requests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue.db import dialect_insert
from accrue.schema import tenant_sync_schedule, utcnow

# Run priorities (Dagster's run queue starts higher values first).
PRIORITY_FIRST_SYNC = 10  # a new customer is waiting for the product's first output
PRIORITY_REQUESTED = 5  # an admin pressed "Sync now" and is watching the page
PRIORITY_ROUTINE = 0
REQUESTED_REASON = "requested by the admin"
FEED_REASON = "records received, waiting to be applied"
# A feed's input is waiting, so a failed run is retried sooner than a CRM's frequency
# would allow; still, a run that keeps failing waits up to this long, not every tick.
FEED_RETRY_CAP = timedelta(minutes=30)

# Lead before the frequency is up: max(1 minute, 10 %) plus up to 5 % of jitter. At 60
# minutes a sync is requested 51-54 minutes after the last success ended, leaving 6-9
# minutes for the queue and the sync itself.
MIN_LEAD = timedelta(minutes=1)
LEAD_SHARE = 0.10
JITTER_SHARE = 0.05
# Retries after a failure: 1, 2, 4, 8 ... minutes, never longer than the frequency.
BACKOFF_BASE = timedelta(minutes=1)
# A requested run that has neither started nor finished within this time was lost
# (e.g. the daemon stopped before submitting it): the tenant is due again.
REQUEST_GRACE = timedelta(minutes=5)
# The nightly reconciliation window (UTC): quiet hours for most CRMs' API quotas.
RECONCILE_WINDOW_START = time(1, 0)
RECONCILE_WINDOW = timedelta(hours=4)


@dataclass(frozen=True)
class RunOutcome:
    """A finished sync run of one tenant, as reported by the orchestrator."""

    tenant_id: str
    finished_at: datetime
    succeeded: bool
    reconciled: bool = False


@dataclass(frozen=True)
class TenantSchedule:
    """What the scheduler remembers about one tenant."""

    tenant_id: str
    last_requested_at: datetime | None = None
    last_success_at: datetime | None = None
    last_outcome_at: datetime | None = None
    consecutive_failures: int = 0
    last_reconciled_at: datetime | None = None
    # When the admin last asked for "Sync now" (not written by `save`: see `request_sync`).
    admin_request_at: datetime | None = None

    @property
    def admin_request_pending(self) -> bool:
        """An admin's request the scheduler has not acted on yet."""
        return self.admin_request_at is not None and (
            self.last_requested_at is None or self.last_requested_at < self.admin_request_at)

    def with_outcome(self, outcome: RunOutcome) -> TenantSchedule:
        """The schedule after a run ended; an outcome older than the last one seen is ignored.

        A tenant's first successful sync is a full load, which is as good as a
        reconciliation, so it also starts the reconciliation clock.
        """
        if self.last_outcome_at is not None and outcome.finished_at <= self.last_outcome_at:
            return self
        if not outcome.succeeded:
            return replace(self, last_outcome_at=outcome.finished_at,
                           consecutive_failures=self.consecutive_failures + 1)
        reconciled = outcome.reconciled or self.last_success_at is None
        return replace(
            self, last_outcome_at=outcome.finished_at, last_success_at=outcome.finished_at,
            consecutive_failures=0,
            last_reconciled_at=outcome.finished_at if reconciled else self.last_reconciled_at,
        )

    def with_request(self, at: datetime) -> TenantSchedule:
        return replace(self, last_requested_at=at)


@dataclass(frozen=True)
class Due:
    """When a tenant's next sync is due, how urgent it is and why."""

    at: datetime
    priority: int
    reason: str
    reconcile: bool = False


@dataclass(frozen=True)
class SyncRequest:
    tenant_id: str
    priority: int
    reason: str
    reconcile: bool
    overdue: timedelta


def _fraction(tenant_id: str, salt: str) -> float:
    """A stable number in [0, 1) per tenant: jitter that is the same in every process."""
    digest = hashlib.sha256(f"{salt}:{tenant_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def lead(tenant_id: str, frequency: timedelta) -> timedelta:
    return max(MIN_LEAD, frequency * LEAD_SHARE) + frequency * JITTER_SHARE * _fraction(
        tenant_id, "lead")


def backoff(tenant_id: str, failures: int, frequency: timedelta) -> timedelta:
    """Wait after `failures` failed syncs in a row: exponential, jittered ±25 %, capped."""
    base = min(frequency, BACKOFF_BASE * 2 ** min(max(failures - 1, 0), 16))
    jittered: timedelta = base * (0.75 + 0.5 * _fraction(tenant_id, f"backoff{failures}"))
    return min(frequency, jittered)


def reconcile_slot(tenant_id: str, now: datetime) -> datetime:
    """The tenant's most recent nightly reconciliation time at or before `now`."""
    offset = RECONCILE_WINDOW * _fraction(tenant_id, "reconcile")
    today = datetime.combine(now.astimezone(UTC).date(), RECONCILE_WINDOW_START, UTC) + offset
    return today if today <= now else today - timedelta(days=1)


def next_due(schedule: TenantSchedule, frequency_minutes: int, now: datetime, *,
             feed: bool = False) -> Due | None:
    """When the tenant should sync next; None while a request is still on its way.

    `feed`: a feed tenant with input waiting (due now, or after its failure backoff).

    An admin's pending "Sync now" makes it due now, at least at PRIORITY_REQUESTED, even
    during a backoff; a reconciliation that is due anyway still rides along.
    """
    s = schedule
    pending = s.last_requested_at is not None and (
        s.last_outcome_at is None or s.last_outcome_at < s.last_requested_at)
    if pending and now - s.last_requested_at < REQUEST_GRACE:  # type: ignore[operator]
        return None
    due = _received(s, now) if feed else _scheduled(s, frequency_minutes, now)
    if not s.admin_request_pending:
        return due
    return Due(now, max(due.priority, PRIORITY_REQUESTED), REQUESTED_REASON,
               reconcile=due.reconcile and due.at <= now)


def _scheduled(s: TenantSchedule, frequency_minutes: int, now: datetime) -> Due:
    """The due time from the frequency, the failures and the nightly reconciliation."""
    frequency = timedelta(minutes=frequency_minutes)
    if s.last_success_at is None:
        if s.consecutive_failures and s.last_outcome_at is not None:
            wait = backoff(s.tenant_id, s.consecutive_failures, frequency)
            return Due(s.last_outcome_at + wait, PRIORITY_FIRST_SYNC,
                       f"first sync, retry after {s.consecutive_failures} failure(s)")
        return Due(now, PRIORITY_FIRST_SYNC, "first sync")
    if s.consecutive_failures and s.last_outcome_at is not None:
        wait = backoff(s.tenant_id, s.consecutive_failures, frequency)
        due = Due(s.last_outcome_at + wait, PRIORITY_ROUTINE,
                  f"retry after {s.consecutive_failures} failed sync(s)")
    else:
        due = Due(s.last_success_at + frequency - lead(s.tenant_id, frequency),
                  PRIORITY_ROUTINE, f"every {frequency_minutes} min")
    slot = reconcile_slot(s.tenant_id, now)
    if s.last_reconciled_at is None or s.last_reconciled_at < slot:
        return Due(min(due.at, slot), due.priority, "nightly reconciliation", reconcile=True)
    return due


def _received(s: TenantSchedule, now: datetime) -> Due:
    """A feed with input waiting: due now (a first one at the first-sync priority), or
    after the backoff of its failures."""
    first = s.last_success_at is None
    priority = PRIORITY_FIRST_SYNC if first else PRIORITY_ROUTINE
    if s.consecutive_failures and s.last_outcome_at is not None:
        wait = backoff(s.tenant_id, s.consecutive_failures, FEED_RETRY_CAP)
        return Due(s.last_outcome_at + wait, priority,
                   f"records waiting, retry after {s.consecutive_failures} failed sync(s)")
    return Due(now, priority, FEED_REASON)


def plan(
    tenants: Iterable[tuple[str, int]],
    schedules: Mapping[str, TenantSchedule],
    busy: Iterable[str],
    now: datetime,
    *,
    limit: int,
    routine_limit: int | None = None,
    waiting: Iterable[str] = (),
) -> tuple[list[SyncRequest], int]:
    """The tenants to request now, most urgent first, and how many more are due but wait.

    `tenants` are (tenant id, frequency in minutes) of the active tenants; `busy` those
    with a run queued or in progress (never requested twice). At most `limit` requests
    are returned, of which at most `routine_limit` are routine syncs
    (the caller's back-pressure when the run queue is already long); an admin's "Sync
    now" is not held back by it (one pending request per tenant keeps those few).
    `waiting`: feed tenants with input waiting, planned alike (`next_due(feed=True)`).
    """
    in_flight = set(busy)
    due: list[SyncRequest] = []
    candidates = [(t, f, False) for t, f in tenants] + [(t, 0, True) for t in waiting]
    for tenant_id, frequency, feed in candidates:
        if tenant_id in in_flight:
            continue
        when = next_due(schedules.get(tenant_id, TenantSchedule(tenant_id)), frequency, now,
                        feed=feed)
        if when is None or when.at > now:
            continue
        due.append(SyncRequest(tenant_id, when.priority, when.reason, when.reconcile,
                               now - when.at))
    due.sort(key=lambda r: (-r.priority, -r.overdue, r.tenant_id))
    chosen: list[SyncRequest] = []
    routine = 0
    for request in due:
        if len(chosen) >= limit:
            break
        if request.priority < PRIORITY_REQUESTED:
            if routine_limit is not None and routine >= routine_limit:
                continue
            routine += 1
        chosen.append(request)
    return chosen, len(due) - len(chosen)


# -- the table's one write path ------------------------------------------------------------


def load(engine: Engine, tenant_ids: Sequence[str] | None = None) -> dict[str, TenantSchedule]:
    """Every tenant's schedule (or those of `tenant_ids`), with the admin's latest "Sync
    now"; tenants never seen and never requested are absent."""
    t = tenant_sync_schedule
    query = sa.select(t.c.tenant_id, t.c.last_requested_at, t.c.last_success_at,
                      t.c.last_outcome_at, t.c.consecutive_failures, t.c.last_reconciled_at,
                      t.c.admin_requested_at)
    if tenant_ids is not None:
        query = query.where(t.c.tenant_id.in_(list(tenant_ids)))
    with engine.connect() as conn:
        return {row.tenant_id: TenantSchedule(*row) for row in conn.execute(query)}


def save(engine: Engine, schedules: Iterable[TenantSchedule]) -> int:
    """Upsert the given schedules in one transaction; returns how many were written."""
    rows = [
        {"tenant_id": s.tenant_id, "last_requested_at": s.last_requested_at,
         "last_success_at": s.last_success_at, "last_outcome_at": s.last_outcome_at,
         "consecutive_failures": s.consecutive_failures,
         "last_reconciled_at": s.last_reconciled_at, "updated_at": utcnow()}
        for s in schedules
    ]
    if not rows:
        return 0
    stmt = dialect_insert(engine.dialect)(tenant_sync_schedule)
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant_id"],
        set_={c: stmt.excluded[c] for c in rows[0] if c != "tenant_id"},
    )
    with engine.begin() as conn:
        conn.execute(stmt, rows)
    return len(rows)


# -- the admin's "Sync now" ---------------------------------------------------------------


def request_sync(engine: Engine, tenant_id: str, at: datetime) -> bool:
    """Record the admin's "Sync now"; False, and nothing written, while one is pending."""
    t = tenant_sync_schedule
    with engine.begin() as conn:
        row = conn.execute(sa.select(t.c.last_requested_at, t.c.admin_requested_at)
                           .where(t.c.tenant_id == tenant_id).with_for_update()).first()
        current = TenantSchedule(tenant_id, last_requested_at=row[0] if row else None,
                                 admin_request_at=row[1] if row else None)
        if current.admin_request_pending:
            return False
        stamp = at.astimezone(UTC)
        if row is None:
            conn.execute(sa.insert(t).values(tenant_id=tenant_id, admin_requested_at=stamp,
                                             consecutive_failures=0, updated_at=utcnow()))
        else:
            conn.execute(sa.update(t).where(t.c.tenant_id == tenant_id)
                         .values(admin_requested_at=stamp, updated_at=utcnow()))
    return True


def cancel_request(engine: Engine, tenant_id: str) -> bool:
    """Drop the admin's request (pause, disconnect: nothing may sync); True if there was one."""
    t = tenant_sync_schedule
    with engine.begin() as conn:
        dropped = conn.execute(sa.update(t).where(
            t.c.tenant_id == tenant_id, t.c.admin_requested_at.is_not(None))
            .values(admin_requested_at=None, updated_at=utcnow())).rowcount
    return bool(dropped)


def forget(engine: Engine, tenant_id: str) -> int:
    """Delete the tenant's schedule and request, with its synced data: the next sync, if
    it ever reconnects, is a first sync again. Returns the schedule rows deleted."""
    with engine.begin() as conn:
        return int(conn.execute(sa.delete(tenant_sync_schedule).where(
            tenant_sync_schedule.c.tenant_id == tenant_id)).rowcount or 0)
