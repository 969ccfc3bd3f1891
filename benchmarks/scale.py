"""`make scale`: the real daemon with 10, 100, 200 and 1,000 tenants on one 2-core host.

Why it exists: the issue asks whether one host running deploy/dagster/single-host.yaml
keeps its promises as tenants pile up: every tenant synced within its interval, no failed
runs, sensor ticks under 5 s, and a new customer's first price recommendation within
minutes of activation. Not part of `make test`: it takes about an hour.

What it does (all through the real `dagster-daemon run`, never in-process):

1. A scratch PostgreSQL database each for the Dagster instance and the warehouse, the
   single-host instance config, a fresh key, an SMTP sink, K small Salesforce sandboxes
   (30-60 opportunities each; tenant i syncs sandbox i % K into its own warehouse rows)
   and one seeded like the demo (2,000 opportunities) for new tenants.
2. Idle machine: one new 2,000-opportunity tenant is activated with nothing else
   registered; activation → its first price_recommendation rows.
3. For each N (`--tenants`): the tenants are registered the concierge's way and
   activated together; the daemon does every first sync and the analytics that follow
   (warm-up), then the phase is observed:
   * N below `--steady-tenants`: a few minutes of ticks with nothing due;
   * N = `--steady-tenants` (200): the steady-state check. Last successes are rewritten
     to lie uniformly within each tenant's cycle (see `spread_last_successes`), as on a
     system that has run for hours, then `--window-minutes` are observed: every tenant
     whose deadline (last success + frequency) falls in the window must have a
     successful sync ended before it. A new 2,000-opportunity tenant is activated one
     minute in (first recommendation with the others active);
   * N above it (1,000): activated together, ticks and queue observed for
     `--burst-minutes` (no warm-up: it would take hours on 2 cores).
   A thread changes a few opportunities in every small sandbox every few minutes
   (`--crm-changes`), as real CRMs change between syncs, so routine syncs carry data
   and are followed by analytics runs.
4. Prints the tables (markdown), the targets with PASS/MISS, an estimate for 10,000
   tenants from the measured growth, daemon-log problems and failed runs; writes
   everything to <ACCRUE_HOME>/bench/scale-results.json; the daemon's log stays in
   <ACCRUE_HOME>/bench/scale-logs/. Every process is stopped and both databases are
   dropped at the end, on Ctrl-C, SIGTERM and errors.

Run: python -m benchmarks.scale --tenants 10 100 200 1000 --window-minutes 15
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.scale_support import (
    SENSORS,
    SYNC_JOB,
    CrmActivity,
    DaemonStack,
    RunTiming,
    TickStats,
    accrue_home_dir,
    fmt,
    interrupt_on_sigterm,
    log_problems,
    machine_line,
    median,
    percentile,
    say,
    tick_stats,
)

FREQUENCY_MINUTES = 60
BIG_OPPORTUNITIES = 2000  # the demo's seed: the new tenants of the latency measurements
TICK_TARGET_S = 5.0
IDLE_LATENCY_TARGET_S = 180.0
BUSY_LATENCY_TARGET_S = 600.0
LATENCY_TIMEOUT_S = 1800.0
ANALYTICS_ASSETS = 4  # pipeline_summary, price_recommendations, revenue_opportunities,
# seller_metrics; plus the 8 crm/* sync assets: 12 partitions per tenant
ASSETS_PER_TENANT = 12
POLL_S = 10.0
PROGRESS_EVERY_S = 30.0
QUIET_S = 45.0  # the refresh sensor ticks every 15 s: idle this long means drained


@dataclass
class Latency:
    tenant: str
    total_s: float | None
    steps: dict[str, float | None] = field(default_factory=dict)
    recommendations: int = 0
    note: str = ""


@dataclass
class Phase:
    name: str
    n: int
    kind: str  # observe | steady | burst
    started: float
    warmed: float | None = None
    window_started: float | None = None
    ended: float | None = None
    ticks_warmup: dict[str, TickStats] = field(default_factory=dict)
    ticks_steady: dict[str, TickStats] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)
    run_errors: list[str] = field(default_factory=list)
    throughput_per_min: float | None = None
    overhead: dict[str, float | None] = field(default_factory=dict)
    rss: dict[str, float | None] = field(default_factory=dict)
    queue_max: int = 0
    queue_end: int = 0
    interval: dict[str, Any] | None = None
    latency: Latency | None = None


# -- phases ----------------------------------------------------------------------------------


class Bench:
    def __init__(self, stack: DaemonStack, args: argparse.Namespace) -> None:
        self.stack = stack
        self.args = args
        self.small = [stack.sandboxes[n] for n in sorted(stack.sandboxes) if n.startswith("sf")]
        self.big = stack.sandboxes["big"]
        self.active: list[str] = []
        self.queue_peak = 0
        self.began = time.time()

    # helpers

    def progress(self, phase: str, started: float, extra: str = "") -> None:
        counts = self.stack.queue_counts()
        self.queue_peak = max(self.queue_peak, counts["queued"])
        say(f"{phase}: {time.time() - started:5.0f} s, {counts['queued']} queued, "
            f"{counts['in progress']} in progress{extra}")

    def register(self, first: int, count: int) -> list[str]:
        ids = [f"scale-{i:05d}" for i in range(first, first + count)]
        began = time.time()
        for i, tenant_id in enumerate(ids, start=first):
            self.stack.register(tenant_id, self.small[i % len(self.small)], FREQUENCY_MINUTES)
        say(f"registered {count} tenants (pending) in {time.time() - began:.0f} s")
        return ids

    def wait_warm(self, phase: str, ids: list[str], started: float) -> float:
        """Until every tenant's first sync succeeded and nothing has waited in the run queue
        for QUIET_S (the analytics after the first syncs have started)."""
        deadline = started + self.args.warmup_timeout_minutes * 60
        quiet_since: float | None = None
        last_print = 0.0
        while True:
            synced = self.stack.synced_tenants(ids)
            counts = self.stack.queue_counts()
            self.queue_peak = max(self.queue_peak, counts["queued"])
            now = time.time()
            if now - last_print >= PROGRESS_EVERY_S:
                last_print = now
                ended = len(self.stack.run_records(started))
                say(f"{phase} warm-up: {now - started:5.0f} s, first syncs {synced}/{len(ids)}, "
                    f"{counts['queued']} queued, {counts['in progress']} in progress, "
                    f"{ended} runs so far")
            # Runs in progress are allowed: by now routine syncs of earlier tenants (and the
            # analytics after them) come and go, and the system never falls fully idle.
            if synced == len(ids) and counts["queued"] == 0:
                quiet_since = quiet_since or now
                if now - quiet_since >= QUIET_S:
                    return quiet_since
            else:
                quiet_since = None
            if now > deadline:
                raise TimeoutError(f"{phase}: warm-up not done after "
                                   f"{self.args.warmup_timeout_minutes} min ({synced}/{len(ids)} "
                                   "synced); raise --warmup-timeout-minutes")
            time.sleep(POLL_S)

    def new_tenant_latency(self, tenant_id: str, activated: float, phase: str) -> Latency:
        """Activation → the tenant's first price_recommendation rows, with the steps between."""
        last_print = 0.0
        while True:
            rows = self.stack.recommendations(tenant_id)
            now = time.time()
            if rows:
                break
            if now - activated > LATENCY_TIMEOUT_S:
                return Latency(tenant_id, None, note="no recommendation within "
                               f"{LATENCY_TIMEOUT_S / 60:.0f} min")
            if now - last_print >= PROGRESS_EVERY_S:
                last_print = now
                self.progress(phase, activated, f"; waiting for {tenant_id}'s recommendations")
            time.sleep(1.0)
        total = time.time() - activated
        runs = [self.stack.run_timing(r) for r in self.stack.run_records(
            activated - 1, tags={"dagster/partition": tenant_id})]
        sync = next((r for r in sorted(runs, key=lambda r: r.created) if r.job == SYNC_JOB), None)
        analytics = next((r for r in sorted(runs, key=lambda r: r.created)
                          if r.job != SYNC_JOB), None)

        def rel(value: float | None) -> float | None:
            return None if value is None else value - activated

        steps: dict[str, float | None] = {}
        if sync is not None:
            steps.update({"sync requested": rel(sync.created), "sync launched": rel(sync.starting),
                          "sync started": rel(sync.start), "sync ended": rel(sync.end),
                          "sync engine s": sync.engine_s})
        if analytics is not None:
            steps.update({"analytics requested": rel(analytics.created),
                          "analytics launched": rel(analytics.starting),
                          "analytics started": rel(analytics.start),
                          "analytics ended": rel(analytics.end)})
        return Latency(tenant_id, total, steps, rows)

    def finish_phase(self, phase: Phase) -> None:
        phase.ended = time.time()
        stack = self.stack
        steady_from = phase.window_started or phase.warmed or phase.started
        if phase.warmed or phase.window_started:
            phase.ticks_warmup = {n: tick_stats(t) for n, t in
                                  stack.sensor_ticks(phase.started, steady_from).items()}
        phase.ticks_steady = {n: tick_stats(t) for n, t in
                              stack.sensor_ticks(steady_from, phase.ended).items()}
        records = stack.run_records(phase.started, phase.ended)
        timings = [stack.run_timing(r) for r in records]
        sync = [t for t in timings if t.job == SYNC_JOB]
        other = [t for t in timings if t.job != SYNC_JOB]
        done = ("SUCCESS", "FAILURE", "CANCELED")
        phase.runs = {
            "sync requested": len(sync), "analytics requested": len(other),
            "launched": sum(t.starting is not None or t.start is not None for t in timings),
            "succeeded": sum(t.status == "SUCCESS" for t in timings),
            "failed": sum(t.status == "FAILURE" for t in timings),
            "canceled": sum(t.status == "CANCELED" for t in timings),
            "unfinished": sum(t.status not in done for t in timings),
        }
        phase.run_errors = [f"{t.job} {t.partition} {t.run_id[:8]}: {e}"
                            for t in timings if t.status == "FAILURE" for e in t.errors[:2]]
        ended = [t for t in timings if t.end is not None and t.end <= phase.ended]
        busy_until = phase.warmed or phase.ended
        in_warmup = [t for t in ended if t.end <= busy_until]
        if in_warmup and phase.kind != "burst":
            phase.throughput_per_min = len(in_warmup) / ((busy_until - phase.started) / 60)
        elif phase.kind == "burst":
            phase.throughput_per_min = len(ended) / ((phase.ended - phase.started) / 60)
        phase.overhead = overhead_summary([t for t in sync if t.status == "SUCCESS"])
        phase.rss = stack.rss.between(phase.started, phase.ended)
        phase.queue_max = self.queue_peak
        phase.queue_end = stack.queue_counts()["queued"]
        self.queue_peak = 0

    # the measurements

    def idle_latency(self) -> Phase:
        phase = Phase("idle", 0, "idle", time.time())
        tenant_id = "newco-idle"
        self.stack.register(tenant_id, self.big, FREQUENCY_MINUTES)
        say(f"idle machine: activating {tenant_id} ({BIG_OPPORTUNITIES:,} opportunities)")
        activated = self.stack.activate([tenant_id])
        phase.started = activated
        phase.latency = self.new_tenant_latency(tenant_id, activated, "idle")
        say(f"idle machine: first recommendation {fmt(phase.latency.total_s)} s after activation")
        phase.warmed = self.wait_warm("idle", [tenant_id], activated)
        self.finish_phase(phase)
        # Paused: it keeps its partition but no longer syncs, so N below counts small orgs.
        self.stack.set_status(tenant_id, "paused")
        return phase

    def grow(self, n: int, kind: str) -> Phase:
        ids = self.register(len(self.active), n - len(self.active))
        phase = Phase(f"N={n}", n, kind, time.time())
        phase.started = self.stack.activate(ids)
        self.active += ids
        say(f"N={n}: activated {len(ids)} tenants ({len(self.active)} active)")
        if kind == "burst":
            self.observe(phase, self.args.burst_minutes * 60, f"N={n} (no warm-up)")
            self.finish_phase(phase)
            return phase
        phase.warmed = self.wait_warm(f"N={n}", self.active, phase.started)
        say(f"N={n}: warm-up done in {(phase.warmed - phase.started) / 60:.1f} min")
        if kind == "steady":
            self.steady_state(phase)
        else:
            self.observe(phase, self.args.observe_minutes * 60, f"N={n} steady")
        self.finish_phase(phase)
        return phase

    def observe(self, phase: Phase, seconds: float, label: str) -> None:
        until = time.time() + seconds
        while time.time() < until:
            self.progress(label, phase.started)
            time.sleep(min(PROGRESS_EVERY_S, max(0.0, until - time.time())))

    def steady_state(self, phase: Phase) -> None:
        stack = self.stack
        newcomer = "newco-busy"
        stack.register(newcomer, self.big, FREQUENCY_MINUTES)
        spread = spread_last_successes(stack, self.active, FREQUENCY_MINUTES, self.args.seed)
        window = self.args.window_minutes * 60
        phase.window_started = start = time.time()
        inside = sum(1 for d in spread.values() if d <= start + window)
        say(f"N={phase.n}: last successes spread over each tenant's cycle; observing "
            f"{self.args.window_minutes} min ({inside} deadlines fall inside)")
        self.observe(phase, 60, f"N={phase.n} window")
        activated = stack.activate([newcomer])
        say(f"N={phase.n}: activating {newcomer} ({BIG_OPPORTUNITIES:,} opportunities)")
        phase.latency = self.new_tenant_latency(newcomer, activated, f"N={phase.n} window")
        say(f"N={phase.n}: {newcomer}'s first recommendation "
            f"{fmt(phase.latency.total_s)} s after activation")
        self.observe(phase, max(0.0, start + window - time.time()), f"N={phase.n} window")
        phase.interval = interval_check(stack, spread, start, start + window)
        phase.interval["natural"] = natural_gaps(stack, self.active, self.began, time.time())


def spread_last_successes(stack: DaemonStack, ids: list[str], frequency_minutes: int,
                          seed: int) -> dict[str, float]:
    """Move each tenant's last success to a uniform point of its cycle; deadlines (epoch s).

    On a system that has run for hours, a tenant's last success is anywhere between
    "just now" and "when its next sync is requested" (frequency minus the scheduler's
    lead), so `last_success_at` becomes now − u·(frequency − lead), u uniform in [0, 1).
    `last_outcome_at` keeps its real value (the end of the warm-up sync): the sensor
    re-reads the last two minutes of outcomes every tick, and an older `last_outcome_at`
    would let it put the real success back. Written through accrue.sync_schedule.save.
    """
    from dataclasses import replace

    from accrue import sync_schedule

    assert stack.engine is not None
    rng = random.Random(seed)
    frequency = timedelta(minutes=frequency_minutes)
    now = datetime.now(UTC)
    schedules = sync_schedule.load(stack.engine, ids)
    updated = []
    for tenant_id in ids:
        current = schedules[tenant_id]
        cycle = frequency - sync_schedule.lead(tenant_id, frequency)
        updated.append(replace(current, last_success_at=now - cycle * rng.random()))
    sync_schedule.save(stack.engine, updated)
    time.sleep(20)  # a tick or two; then read back what holds
    stored = sync_schedule.load(stack.engine, ids)
    # With 200 tenants syncing hourly, some syncs end during the rewrite: their real success
    # is newer than the rewritten one and wins (the scheduler keeps the latest); their
    # deadline is then a full interval away. Anything else changed would be a scheduler bug.
    moved = [s.tenant_id for s in updated
             if stored[s.tenant_id].last_success_at != s.last_success_at]
    wrong = [t for t in moved if (stored[t].last_success_at or now) < now]
    if wrong:
        raise RuntimeError(f"a sensor tick moved {len(wrong)} tenants' last success backwards")
    if moved:
        say(f"{len(moved)} tenants synced during the rewrite: their real success stands")
    return {t: (s.last_success_at + frequency).timestamp() for t, s in stored.items()
            if s.last_success_at is not None}


def interval_check(stack: DaemonStack, deadlines: dict[str, float], start: float,
                   end: float) -> dict[str, Any]:
    """Every tenant whose deadline fell inside [start, end]: a successful sync ended before it?"""
    ends: dict[str, list[float]] = {}
    for record in stack.run_records(start - 60, job_name=SYNC_JOB):
        run = record.dagster_run
        if run.status.value == "SUCCESS" and record.end_time and record.end_time >= start:
            ends.setdefault(run.tags.get("dagster/partition", ""), []).append(record.end_time)
    due = {t: d for t, d in deadlines.items() if d <= end}
    late: dict[str, float] = {}
    margins = []
    for tenant_id, deadline in due.items():
        first = min(ends.get(tenant_id, []), default=None)
        if first is not None and first <= deadline:
            margins.append(deadline - first)
        else:
            late[tenant_id] = (first if first is not None else end) - deadline
    synced = sum(1 for t in deadlines if t in ends)
    return {
        "deadlines_in_window": len(due), "on_time": len(due) - len(late),
        "share": (len(due) - len(late)) / len(due) if due else None,
        "worst_late_s": max(late.values(), default=None),
        "late": dict(sorted(late.items(), key=lambda kv: -kv[1])[:10]),
        "smallest_margin_s": min(margins, default=None),
        "median_margin_s": median(margins),
        "tenants_synced_in_window": synced,
    }


def natural_gaps(stack: DaemonStack, ids: list[str], since: float, until: float
                 ) -> dict[str, Any]:
    """Without any rewrite: the longest time each tenant went without a successful sync.

    From its first successful sync to `until`, through every successful sync run in
    between (the window's rewrite only makes syncs come earlier, never later).
    """
    ends: dict[str, list[float]] = {}
    for record in stack.run_records(since, job_name=SYNC_JOB):
        run = record.dagster_run
        if run.status.value == "SUCCESS" and record.end_time:
            ends.setdefault(run.tags.get("dagster/partition", ""), []).append(record.end_time)
    limit = FREQUENCY_MINUTES * 60
    worst: dict[str, float] = {}
    for tenant_id in ids:
        times = sorted(ends.get(tenant_id, []))
        if not times:
            continue
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)] + [until - times[-1]]
        worst[tenant_id] = max(gaps)
    over = {t: g for t, g in worst.items() if g > limit}
    return {"tenants": len(worst), "over_interval": len(over),
            "longest_gap_min": max(worst.values(), default=0) / 60,
            "examples": {t: round(g / 60, 1) for t, g in
                         sorted(over.items(), key=lambda kv: -kv[1])[:5]}}


def overhead_summary(runs: list[RunTiming]) -> dict[str, float | None]:
    walls = [r for r in runs if r.wall_s]
    return {
        "runs": float(len(walls)),
        "share_median": median(r.overhead_share for r in walls),  # type: ignore[misc]
        "share_p95": percentile((r.overhead_share for r in walls), 0.95),  # type: ignore[misc]
        "launched_share_median": median(
            s for r in walls if (s := r.launched_overhead_share) is not None),
        "wall_median_s": median(r.wall_s for r in walls),  # type: ignore[misc]
        "engine_median_s": median(r.engine_s for r in walls),
        "launch_median_s": median(s for r in walls if (s := r.launch_s) is not None),
        "queue_median_s": median(s for r in walls if (s := r.queue_s) is not None),
        "steps_outside_engine_median_s": median(r.steps_s - r.engine_s for r in walls),
        "between_steps_median_s": median(r.wall_s - r.steps_s for r in walls),  # type: ignore[operator]
    }


# -- the report ------------------------------------------------------------------------------


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
            for r in rows]
    return "\n".join([line, rule, *body])


def tick_cell(stats: TickStats | None) -> str:
    if stats is None or not stats.count:
        return "—"
    return f"{fmt(stats.p50, '.2f')} / {fmt(stats.p95, '.2f')} / {fmt(stats.max, '.1f')}"


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least squares (intercept, slope); None with fewer than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return my - slope * mx, slope


def report(phases: list[Phase], meta: dict[str, Any]) -> list[str]:
    """The printed tables, from the phases and `meta` (both also in the results file)."""
    out = [f"# make scale — {meta['machine']}", ""]
    out.append(
        f"Production single-host config (PostgreSQL instance and warehouse, dagster-daemon, "
        f"max 4 concurrent runs, 3 per CRM); {meta['sandboxes']} small sandboxes "
        f"({meta['sandbox_opportunities']} opportunities) shared by the tenants; sync "
        f"frequency {FREQUENCY_MINUTES} min; "
        + (f"CRM activity: {meta['changes_per_round']} opportunities changed in one small "
           f"sandbox (round robin) every {meta['change_every_minutes']:g} min "
           f"({meta['changes']} changes, {meta['change_errors']} errors): about "
           f"{change_share(meta):.0%} of hourly syncs bring changes, and an analytics run "
           "follows each of those." if meta["crm_changes"] else
           "no CRM activity (routine syncs find nothing new)."))
    out.append("")
    # sensor ticks
    out.append("## Sensor ticks (seconds: p50 / p95 / max; ticks)")
    out.append("")
    headers = ["phase", "part", *SENSORS]
    rows = []
    for phase in phases:
        for part, ticks in (("warm-up", phase.ticks_warmup), ("steady", phase.ticks_steady)):
            if not ticks:
                continue
            label = ("burst (queue growing)" if phase.kind == "burst" else
                     "window" if part == "steady" and phase.kind == "steady" else part)
            rows.append([phase.name, label, *(
                f"{tick_cell(ticks.get(s))} ({ticks[s].count if s in ticks else 0})"
                for s in SENSORS)])
    out += [md_table(headers, rows), ""]
    out.append("Ticks that requested runs (or backfills): how many, median requests per tick, "
               "median seconds per request; p95 of the ticks that requested nothing.")
    out.append("")
    rows = []
    for phase in phases:
        for part, ticks in (("warm-up", phase.ticks_warmup), ("steady", phase.ticks_steady)):
            label = ("burst" if phase.kind == "burst" else
                     "window" if part == "steady" and phase.kind == "steady" else part)
            for sensor in ("tenant_sync_sensor", "downstream_refresh_sensor"):
                st = ticks.get(sensor)
                if st is None or not st.count:
                    continue
                rows.append([phase.name, label, sensor, f"{st.with_requests} of {st.count}",
                             fmt(st.requests_median, ".0f"),
                             fmt(st.seconds_per_request_median, ".2f"),
                             fmt(st.without_requests_p95, ".2f")])
    out += [md_table(["phase", "part", "sensor", "ticks with requests", "requests / tick",
                      "s per request", "p95 without requests"], rows), ""]
    # runs, overhead, memory
    out.append("## Runs, overhead, memory")
    out.append("")
    headers = ["phase", "minutes", "runs requested: sync / analytics", "launched", "succeeded",
               "failed", "unfinished", "runs ended/min", "queue max / end",
               "overhead share (median)", "daemon RSS MB med / max", "worker RSS MB med / max"]
    rows = []
    for p in phases:
        r = p.runs
        rows.append([
            p.name, fmt(((p.ended or p.started) - p.started) / 60, ".1f"),
            f"{r.get('sync requested', 0)} / {r.get('analytics requested', 0)}",
            str(r.get("launched", 0)), str(r.get("succeeded", 0)), str(r.get("failed", 0)),
            str(r.get("unfinished", 0)),
            fmt(p.throughput_per_min, ".1f"), f"{p.queue_max} / {p.queue_end}",
            fmt(p.overhead.get("share_median"), ".0%"),
            f"{fmt(p.rss.get('daemon_median'), '.0f')} / {fmt(p.rss.get('daemon_max'), '.0f')}",
            f"{fmt(p.rss.get('worker_median'), '.0f')} / {fmt(p.rss.get('worker_max'), '.0f')}",
        ])
    out += [md_table(headers, rows), ""]
    out.append("Sync-run timeline (medians, seconds): queue = requested → launched; launch = "
               "process spawn + code load; wall = run start → end (Dagster's start_time → "
               "end_time); engine = the crm/* materializations' `connect_seconds` (login, "
               "describe) + Σ `duration_seconds`; overhead = wall − engine.")
    out.append("")
    headers = ["phase", "sync runs", "queue", "launch", "wall", "engine", "in steps, not engine",
               "between steps", "overhead share p50 / p95", "incl. launch"]
    rows = []
    for p in phases:
        o = p.overhead
        if not o.get("runs"):
            continue
        rows.append([p.name, f"{o['runs']:.0f}", fmt(o["queue_median_s"]),
                     fmt(o["launch_median_s"]), fmt(o["wall_median_s"]),
                     fmt(o["engine_median_s"]), fmt(o["steps_outside_engine_median_s"]),
                     fmt(o["between_steps_median_s"]),
                     f"{fmt(o['share_median'], '.0%')} / {fmt(o['share_p95'], '.0%')}",
                     fmt(o["launched_share_median"], ".0%")])
    out += [md_table(headers, rows), ""]
    # latency
    latencies = [p for p in phases if p.latency is not None]
    if latencies:
        out.append("## New tenant: activation → first price recommendation (through the daemon)")
        out.append("")
        headers = ["when", "tenant", "total s", "sync requested", "sync started", "sync ended",
                   "analytics requested", "analytics started", "analytics ended",
                   "recommendations"]
        rows = []
        for p in latencies:
            lat = p.latency
            assert lat is not None
            s = lat.steps
            rows.append([
                "idle machine" if p.kind == "idle" else f"{p.n} others active", lat.tenant,
                fmt(lat.total_s), fmt(s.get("sync requested")), fmt(s.get("sync started")),
                fmt(s.get("sync ended")), fmt(s.get("analytics requested")),
                fmt(s.get("analytics started")), fmt(s.get("analytics ended")),
                str(lat.recommendations) + (f" ({lat.note})" if lat.note else "")])
        out += [md_table(headers, rows), ""]
    # interval
    for p in phases:
        if p.interval is None:
            continue
        i = p.interval
        out.append(f"## Synced within the interval ({p.name}, "
                   f"{meta['window_minutes']:g}-min window)")
        out.append("")
        out.append(
            "After the warm-up each tenant's last success was moved to a uniform point of its "
            f"cycle (now − u·({FREQUENCY_MINUTES} min − the scheduler's lead)), as on a system "
            "that has run for hours; a tenant is on time when a successful sync run ended "
            "before last success + frequency.")
        out.append("")
        out.append(md_table(
            ["deadlines in window", "on time", "share", "worst lateness s",
             "smallest margin s", "median margin s", "tenants synced in window"],
            [[str(i["deadlines_in_window"]), str(i["on_time"]), fmt(i["share"], ".1%"),
              fmt(i["worst_late_s"], ".0f"), fmt(i["smallest_margin_s"], ".0f"),
              fmt(i["median_margin_s"], ".0f"), str(i["tenants_synced_in_window"])]]))
        if i["late"]:
            out.append("")
            out.append("Late: " + ", ".join(f"{t} {s:.0f} s" for t, s in i["late"].items()))
        natural = i.get("natural")
        if natural:
            out.append("")
            out.append(
                f"Without the rewrite, over the whole run up to the window's end: "
                f"{natural['over_interval']} of {natural['tenants']} tenants went longer than "
                f"{FREQUENCY_MINUTES} min without a successful sync (longest gap "
                f"{natural['longest_gap_min']:.0f} min"
                + (f"; e.g. {natural['examples']}" if natural["examples"] else "") + ").")
        out.append("")
    out += targets(phases)
    out += estimate(phases, meta)
    out += problems(phases, meta)
    return out


def change_share(meta: dict[str, Any]) -> float:
    """The share of a tenant's hourly syncs that find a change in its org."""
    return min(1.0, FREQUENCY_MINUTES / (meta["sandboxes"] * meta["change_every_minutes"]))


def _steady_worst_p95(phase: Phase) -> tuple[float | None, str]:
    values = [(s.p95, name) for name, s in phase.ticks_steady.items() if s.p95 is not None]
    if not values:
        return None, ""
    value, name = max(values)
    return value, name


def targets(phases: list[Phase]) -> list[str]:
    rows: list[list[str]] = []

    def add(what: str, target: str, value: str, ok: bool | None) -> None:
        rows.append([what, target, value, "—" if ok is None else ("PASS" if ok else "MISS")])

    for p in phases:
        if p.kind == "idle" and p.latency:
            total = p.latency.total_s
            add("new tenant's first recommendation, idle machine", "< 180 s",
                f"{fmt(total, '.0f')} s", total is not None and total < IDLE_LATENCY_TARGET_S)
        if p.kind == "steady":
            if p.interval:
                share = p.interval["share"]
                add(f"{p.n} active, synced within interval", "100 %",
                    f"{fmt(share, '.1%')} of {p.interval['deadlines_in_window']}",
                    None if share is None else share >= 1.0)
            add(f"{p.n} active, failed runs (warm-up + window)", "0",
                str(p.runs.get("failed", 0)), p.runs.get("failed", 0) == 0)
            worst, name = _steady_worst_p95(p)
            add(f"{p.n} active, every sensor's tick p95 (window)", "< 5 s",
                f"{fmt(worst, '.2f')} s ({name})", worst is not None and worst < TICK_TARGET_S)
            if p.latency:
                total = p.latency.total_s
                add(f"new tenant's first recommendation, {p.n} others active", "< 600 s",
                    f"{fmt(total, '.0f')} s",
                    total is not None and total < BUSY_LATENCY_TARGET_S)
        if p.kind == "burst":
            worst, name = _steady_worst_p95(p)
            add(f"{p.n} registered, every sensor's tick p95", "< 5 s",
                f"{fmt(worst, '.2f')} s ({name})", worst is not None and worst < TICK_TARGET_S)
        if p.kind == "observe":
            worst, name = _steady_worst_p95(p)
            add(f"{p.n} active, every sensor's tick p95 (steady)", "< 5 s",
                f"{fmt(worst, '.2f')} s ({name})", worst is not None and worst < TICK_TARGET_S)
    return ["## Targets", "", md_table(["what", "target", "measured", ""], rows), ""]


def estimate(phases: list[Phase], meta: dict[str, Any]) -> list[str]:
    """10,000 tenants from the measured growth: a straight line through tick p50/p95 vs N."""
    out = ["## Estimate for 10,000 tenants", ""]
    out.append("A least-squares line through the steady ticks (after each warm-up; the N=200 "
               "window) against N, extrapolated; the burst phase is left out (its ticks "
               "measure run submission under a growing queue, not N).")
    out.append("")
    rows = []
    measured = [p for p in phases if p.n and p.ticks_steady and p.kind != "burst"]
    for sensor in SENSORS:
        for label, attr in (("p50", "p50"), ("p95", "p95")):
            points = [(float(p.n), getattr(p.ticks_steady[sensor], attr))
                      for p in measured if sensor in p.ticks_steady
                      and getattr(p.ticks_steady[sensor], attr) is not None]
            line = fit_line(points)
            if line is None:
                continue
            intercept, slope = line
            rows.append([sensor, label, ", ".join(f"{int(x)}: {y:.2f}" for x, y in points),
                         f"{slope * 1000:.2f}", f"{intercept + slope * 10_000:.1f}"])
    out.append(md_table(["sensor", "tick", "measured (N: s)", "s per 1,000 tenants",
                         "at 10,000 (s)"], rows))
    out.append("")
    throughput = [p.throughput_per_min for p in phases
                  if p.throughput_per_min and p.kind in ("observe", "steady")]
    runs_per_min = max(throughput) if throughput else None
    needed = 10_000 / FREQUENCY_MINUTES
    share = change_share(meta) if meta.get("crm_changes") else 0.0
    runs_per_tenant_hour = (1 + share) * 60 / FREQUENCY_MINUTES
    per_host = runs_per_min * 60 / runs_per_tenant_hour if runs_per_min else None
    out.append(f"* Partitions: {ASSETS_PER_TENANT} tenant-partitioned assets "
               f"(8 crm/* + {ANALYTICS_ASSETS} downstream) → {ASSETS_PER_TENANT * 10_000:,} asset "
               "partitions, one dynamic-partition key per tenant.")
    from accrue_pipelines.sync.sensors import MAX_RUN_REQUESTS_PER_TICK as cap

    out.append(f"* Runs: 10,000 tenants every {FREQUENCY_MINUTES} min need {needed:.0f} sync "
               f"runs/min (plus one analytics run per sync that brings changes). The sensor "
               f"requests at most {cap} per 15-s tick ({cap * 4}/min), and this host finished "
               f"{fmt(runs_per_min, '.1f')} runs/min at best (warm-up, 4 concurrent runs), "
               f"i.e. about {fmt(per_host, '.0f')} tenants per host at "
               f"{runs_per_tenant_hour:.2f} runs per tenant and hour (a sync, and analytics "
               f"after the {share:.0%} that bring changes); 10,000 tenants would need about "
               f"{fmt(10_000 / per_host if per_host else None, '.0f')} such hosts' worth of "
               "run capacity.")
    out.append("")
    return out


def problems(phases: list[Phase], meta: dict[str, Any]) -> list[str]:
    out = ["## Problems seen", ""]
    errors = [e for p in phases for e in p.run_errors]
    failures = [(p.name, s, e) for p in phases for part in (p.ticks_warmup, p.ticks_steady)
                for s, st in part.items() for e in st.errors]
    out.append(f"* Failed runs: {sum(p.runs.get('failed', 0) for p in phases)}"
               + ("" if not errors else ", e.g.:"))
    out += [f"  * {e}" for e in errors[:10]]
    out.append(f"* Failed sensor ticks: {len(failures)}" + ("" if not failures else ", e.g.:"))
    out += [f"  * {p} {s}: {e}" for p, s, e in failures[:10]]
    found = meta.get("log_problems", [])
    out.append(f"* Daemon log ({meta.get('daemon_log')}): {meta.get('tracebacks', 0)} "
               "tracebacks; " + ("ERROR/WARNING lines (numbers and ids masked):" if found
                                 else "no ERROR/WARNING lines."))
    out += [f"  * {count}× {text}" for text, count in found]
    out.append("")
    return out


def phase_from_dict(data: dict[str, Any]) -> Phase:
    data = dict(data)
    for key in ("ticks_warmup", "ticks_steady"):
        data[key] = {k: TickStats(**v) for k, v in data[key].items()}
    if data.get("latency"):
        data["latency"] = Latency(**data["latency"])
    return Phase(**data)


def save(output: Path, phases: list[Phase], meta: dict[str, Any]) -> None:
    output.write_text(json.dumps({"meta": meta, "phases": [asdict(p) for p in phases]},
                                 indent=2, default=str))


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, nargs="+", default=[10, 100, 200, 1000],
                        help="active tenants per phase, growing (default: 10 100 200 1000)")
    parser.add_argument("--steady-tenants", type=int, default=200,
                        help="the N of the steady-state window and the busy new-tenant "
                             "measurement; larger N are burst phases (default 200)")
    parser.add_argument("--window-minutes", type=float, default=15)
    parser.add_argument("--observe-minutes", type=float, default=3,
                        help="steady observation after the warm-up of smaller N (default 3)")
    parser.add_argument("--burst-minutes", type=float, default=7,
                        help="observation of the largest N without warm-up (default 7)")
    parser.add_argument("--warmup-timeout-minutes", type=float, default=120)
    parser.add_argument("--sandboxes", type=int, default=8, help="small sandboxes (default 8)")
    parser.add_argument("--crm-changes", action=argparse.BooleanOptionalAction, default=True,
                        help="change a few opportunities in every small sandbox regularly")
    parser.add_argument("--change-every-minutes", type=float, default=20,
                        help="one small sandbox (round robin) changes this often; with 8 "
                             "sandboxes about 3 in 8 hourly syncs bring changes (default 20)")
    parser.add_argument("--changes-per-round", type=int, default=3)
    parser.add_argument("--skip-idle", action="store_true",
                        help="skip the idle-machine new-tenant measurement")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres-url", default=None,
                        help="server for the scratch databases (default ACCRUE_BENCH_POSTGRES_URL "
                             "or postgresql://postgres@127.0.0.1:5432/test)")
    parser.add_argument("--output", type=Path, default=None,
                        help="results file (default <ACCRUE_HOME>/bench/scale-results.json)")
    parser.add_argument("--report-from", type=Path, default=None,
                        help="print the tables of a saved results file and exit")
    args = parser.parse_args(argv)
    args.tenants = sorted(set(args.tenants))
    return args


def small_org_sizes(k: int) -> list[int]:
    """Opportunities of the K small sandboxes: 30 to 60, evenly spread."""
    return [30 + (30 * i) // max(1, k) for i in range(k)]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.report_from:
        saved = json.loads(args.report_from.read_text())
        print("\n".join(report([phase_from_dict(p) for p in saved["phases"]], saved["meta"])))
        return
    machine = machine_line()
    say(f"make scale: {machine}")
    results_dir = accrue_home_dir("bench")
    log_dir = results_dir / "scale-logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    output = args.output or results_dir / "scale-results.json"
    workdir = Path(tempfile.mkdtemp(prefix="accrue-scale-"))
    stack = DaemonStack(workdir, log_dir, args.postgres_url)
    activity: CrmActivity | None = None
    phases: list[Phase] = []
    sizes = small_org_sizes(args.sandboxes)
    meta: dict[str, Any] = {
        "machine": machine, "sandboxes": args.sandboxes,
        "sandbox_opportunities": f"{min(sizes)}-{max(sizes)}", "crm_changes": args.crm_changes,
        "changes_per_round": args.changes_per_round,
        "change_every_minutes": args.change_every_minutes,
        "window_minutes": args.window_minutes, "changes": 0, "change_errors": 0,
        "daemon_log": str(log_dir / "daemon.log"), "args": vars(args) | {"output": str(output)},
    }

    def checkpoint() -> None:
        if activity is not None:
            meta["changes"], meta["change_errors"] = activity.changed, len(activity.errors)
            meta["change_error_samples"] = activity.errors[:5]
        found, tracebacks = log_problems(log_dir / "daemon.log")
        meta["log_problems"], meta["tracebacks"] = list(found.items()), tracebacks
        save(output, phases, meta)

    try:
        with interrupt_on_sigterm():
            stack.open()
            for k, size in enumerate(sizes):
                stack.start_sandbox(f"sf{k:02d}", size)
            stack.start_sandbox("big", BIG_OPPORTUNITIES)
            stack.wait_for_sandboxes()
            stack.start_daemon()
            say("daemon up")
            bench = Bench(stack, args)
            if not args.skip_idle:
                phases.append(bench.idle_latency())
                checkpoint()
            if args.crm_changes:
                activity = CrmActivity(bench.small, args.change_every_minutes * 60,
                                       args.changes_per_round)
                activity.start()
            for n in args.tenants:
                kind = ("steady" if n == args.steady_tenants else
                        "burst" if n > args.steady_tenants else "observe")
                phases.append(bench.grow(n, kind))
                checkpoint()
                if kind == "burst":
                    break
            if activity is not None:
                activity.stop()
            checkpoint()
            print("\n".join(report(phases, meta)), flush=True)
            say(f"results in {output}; daemon log in {log_dir}")
    finally:
        if activity is not None:
            activity.stop()
        say("stopping every process and dropping the scratch databases")
        stack.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
