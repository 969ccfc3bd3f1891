"""What the status page says about each object's sync, in plain words, from the warehouse.

Imports neither Flask nor Dagster: the concierge's status page and the pipelines'
first-data e-mail sensor read it through `onboarding_notify.progress`.

* Syncing now: the sync engine writes a running sync's count to the `sync_run`
  ledger as it commits pages (`Warehouse.apply`, in each page's transaction), so the page shows the
  records read in this sync and, for a first load, a percentage of what the CRM
  counted at setup and the time left at this sync's average pace. A later sync
  reads changes whose number nobody knows in advance: it gets a count, never an
  invented percentage or ETA.
* Failed or stopped: the reason is the ledger's `error_kind` in words; when the
  next attempt comes is computed with the scheduler's own rules
  (`sync_schedule.next_due` over `tenant_sync_schedule`), so the page cannot promise
  a retry the scheduler will not make. Where that is not known, no time is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from accrue import sync_schedule
from accrue.tenants import Tenant

# An average pace over less than this is noise: no time left is shown before it.
MIN_ETA_ELAPSED = timedelta(seconds=5)
# A running sync that has read nothing for this long says so rather than "syncing".
QUIET_AFTER = timedelta(minutes=10)

# What went wrong, by the ledger's error_kind, as the end of "The last sync failed: ...".
REASONS = {
    "credentials": "the CRM refused the saved credentials",
    "quota": "the CRM's daily API limit is used up",
    "outage": "the CRM did not answer",
    "error": "an unexpected error stopped it",
}
# What the admin can do about it, where there is something to do.
ACTIONS = {
    "credentials": "Retries keep failing until the saved credentials are replaced: connect "
                   "the CRM again with a current password or sign-in.",
    "quota": "It carries on from where it stopped once the CRM's limit resets.",
}
STATE_LABELS = {
    "waiting": "Waiting to start", "syncing": "Syncing now", "done": "Done",
    "failed": "Failed", "paused": "Stopped early",
}


def clock(at: datetime) -> str:
    """A time of day as the pages print it (UTC: the app knows no viewer's time zone)."""
    return at.astimezone(UTC).strftime("%H:%M UTC")


def duration(delta: timedelta) -> str:
    """'less than a minute', 'about 3 minutes', 'about 2 hours'."""
    seconds = max(0.0, delta.total_seconds())
    if seconds < 60:
        return "less than a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    hours = round(seconds / 3600)
    return f"about {hours} hour{'s' if hours != 1 else ''}"


def explain(error_kind: str | None) -> str:
    """A failed run's reason and what to do, as sentences (the run page's "What happened")."""
    kind = error_kind if error_kind in REASONS else "error"
    text = REASONS[kind][0].upper() + REASONS[kind][1:] + "."
    return f"{text} {ACTIONS[kind]}" if kind in ACTIONS else text


def time_left(synced: int, expected: int, read: int, elapsed: timedelta) -> timedelta | None:
    """A first load's time left: what is still missing at this sync's average pace.

    `synced` counts the rows stored (earlier, stopped attempts included), `read` those
    read by this sync alone, which is what its pace is measured on.
    """
    if expected <= 0 or read <= 0 or elapsed < MIN_ETA_ELAPSED or synced >= expected:
        return None
    return timedelta(seconds=(expected - synced) * elapsed.total_seconds() / read)


@dataclass(frozen=True)
class NextAttempt:
    """When the scheduler tries a failed tenant again; `at` only when that is known."""

    words: str
    at: datetime | None = None
    retries: bool = True  # False while the tenant is paused


def next_attempt(engine: Engine, tenant: Tenant, failed_at: datetime | None,
                 syncing: bool, now: datetime) -> NextAttempt:
    """The next attempt after a failure, by the scheduler's rules and memory.

    The run that failed may have ended moments ago, before the scheduler's next tick
    recorded it: its outcome is applied here as the scheduler will apply it.
    """
    if tenant.status != "active":
        return NextAttempt("Syncing is paused: nothing is retried until it is resumed.",
                           retries=False)
    if syncing:
        return NextAttempt("Accrue tries again after the sync in progress ends.")
    schedule = sync_schedule.load(engine, [tenant.id]).get(tenant.id)
    if schedule is None:  # the scheduler has not seen this tenant: no time to give
        return NextAttempt("Accrue tries again by itself.")
    if failed_at is not None:
        schedule = schedule.with_outcome(
            sync_schedule.RunOutcome(tenant.id, failed_at, succeeded=False))
    due = sync_schedule.next_due(schedule, tenant.sync_frequency_minutes, now)
    if due is None:
        return NextAttempt("A new attempt has been requested and starts when a worker is free.")
    if due.at <= now:
        return NextAttempt("A new attempt is due now.", due.at)
    return NextAttempt(f"Next attempt at about {clock(due.at)} (in {duration(due.at - now)}).",
                       due.at)


def _state(run: Mapping[str, Any]) -> str:
    """The object's state from its latest run (an earlier success does not hide a failure)."""
    return {"running": "syncing", "failed": "failed", "stopped": "paused",
            "succeeded": "done"}.get(run.get("last_status") or "", "waiting")


def _syncing(run: Mapping[str, Any], synced: int, expected: int,
             now: datetime) -> tuple[int | None, str, float | None]:
    """Percent (None: unknown), the words, and the seconds left of a running sync."""
    read = int(run.get("records_read") or 0)
    started = run.get("last_started_at") or now
    elapsed = now - started
    if read == 0 and elapsed >= QUIET_AFTER:
        return None, f"Started at {clock(started)}; no records read yet.", None
    if run.get("last_success_at") is not None:
        return None, f"Reading the changes since the last sync: {read:,} so far.", None
    if expected <= 0:
        return None, f"First sync: {read:,} records read so far.", None
    percent = min(99, synced * 100 // expected)
    if synced >= expected:
        return 99, (f"{read:,} records read, more than the CRM counted at setup; "
                    "finishing."), None
    left = time_left(synced, expected, read, elapsed)
    pace = f"{duration(left)} left" if left else "working out the time left"
    return percent, f"First sync: {read:,} records read in this sync, {pace}.", (
        round(left.total_seconds()) if left else None)


def object_row(name: str, label: str, run: Mapping[str, Any], synced: int, expected: int,
               retry: Callable[[], NextAttempt], now: datetime) -> dict[str, Any]:
    """One object's line on the status page (and in progress.json)."""
    state = _state(run)
    had_success = run.get("last_success_at") is not None
    percent: int | None = 100 if had_success else (
        min(99, synced * 100 // expected) if expected else 0)
    detail: str | None = None
    hint: str | None = None
    eta: float | None = None
    attempt_at: datetime | None = None
    label_text = STATE_LABELS[state]
    if state == "syncing":
        percent, detail, eta = _syncing(run, synced, expected, now)
    elif state in ("failed", "paused"):
        kind = str(run.get("error_kind") or "error")
        kind = kind if kind in REASONS else "error"
        attempt = retry()
        attempt_at = attempt.at
        if state == "failed" and attempt.retries:
            label_text = "Failed, retrying"
        opening = "The last sync failed" if state == "failed" else "The last sync stopped early"
        detail = f"{opening}: {REASONS[kind]}. {attempt.words}"
        hint = ACTIONS.get(kind)
    elif state == "done" and run.get("last_finished_at") is not None:
        detail = f"Last synced at {clock(run['last_finished_at'])}."
    return {
        "name": name, "label": label, "synced": synced, "expected": expected,
        "percent": percent, "state": state, "state_label": label_text, "detail": detail,
        "hint": hint, "read": int(run.get("records_read") or 0) if state == "syncing" else None,
        "eta_seconds": eta, "next_attempt_at": attempt_at.isoformat() if attempt_at else None,
        "last_success_at": run["last_success_at"].isoformat() if had_success else None,
    }
