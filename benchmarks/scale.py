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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.scale_metrics import log_problems, tick_stats
from benchmarks.scale_report import (
    BIG_OPPORTUNITIES,
    FREQUENCY_MINUTES,
    Latency,
    Phase,
    overhead_summary,
    phase_from_dict,
    report,
    save,
)
from benchmarks.scale_stack import SYNC_JOB, CrmActivity, DaemonStack
from benchmarks.support.measure import bench_dir, fmt, machine_line, median, say
from benchmarks.support.processes import interrupt_on_sigterm

LATENCY_TIMEOUT_S = 1800.0
POLL_S = 10.0
PROGRESS_EVERY_S = 30.0
QUIET_S = 45.0  # the refresh sensor ticks every 15 s: idle this long means drained
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
        phase.ended = ended_at = time.time()
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
        ended = [t for t in timings if t.end is not None and t.end <= ended_at]
        busy_until = phase.warmed or ended_at
        in_warmup = [t for t in ended if t.end is not None and t.end <= busy_until]
        if in_warmup and phase.kind != "burst":
            phase.throughput_per_min = len(in_warmup) / ((busy_until - phase.started) / 60)
        elif phase.kind == "burst":
            phase.throughput_per_min = len(ended) / ((ended_at - phase.started) / 60)
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
    results_dir = bench_dir()
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
