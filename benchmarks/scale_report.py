"""What `make scale` (benchmarks/scale.py) measures per phase, and what it prints: the
tables, the targets with PASS/MISS, the estimate for 10,000 tenants and the problems.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.scale_metrics import RunTiming, TickStats
from benchmarks.scale_stack import SENSORS
from benchmarks.support.measure import fmt, md_table, median, percentile

FREQUENCY_MINUTES = 60
BIG_OPPORTUNITIES = 2000  # the demo's seed: the new tenants of the latency measurements
TICK_TARGET_S = 5.0
IDLE_LATENCY_TARGET_S = 180.0
BUSY_LATENCY_TARGET_S = 600.0
ANALYTICS_ASSETS = 4  # pipeline_summary, price_recommendations, revenue_opportunities,
# seller_metrics; plus the 8 crm/* sync assets: 12 partitions per tenant
ASSETS_PER_TENANT = 12


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



def overhead_summary(runs: list[RunTiming]) -> dict[str, float | None]:
    walls = [r for r in runs if r.wall_s]
    return {
        "runs": float(len(walls)),
        "share_median": median(r.overhead_share for r in walls),
        "share_p95": percentile((r.overhead_share for r in walls), 0.95),
        "launched_share_median": median(
            s for r in walls if (s := r.launched_overhead_share) is not None),
        "wall_median_s": median(r.wall_s for r in walls),
        "engine_median_s": median(r.engine_s for r in walls),
        "launch_median_s": median(s for r in walls if (s := r.launch_s) is not None),
        "queue_median_s": median(s for r in walls if (s := r.queue_s) is not None),
        "steps_outside_engine_median_s": median(r.steps_s - r.engine_s for r in walls),
        "between_steps_median_s": median(r.wall_s - r.steps_s for r in walls),  # type: ignore[operator]
    }



# -- the report ------------------------------------------------------------------------------


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


