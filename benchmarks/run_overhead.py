"""What a run costs beyond the sync itself: code location load, daemon runs, `accrue sync`.

Why it exists: the issue found `accrue sync TENANT` taking 20-30 s for a small change
while the sync engine took 1-4 s, and set targets, measured on an otherwise idle
machine: code location load ≤ 5 s; run overhead (run wall minus the engine's own time)
≤ 20 % of the run's wall time for a 2,000-opportunity tenant, and ≤ 5 s for an
incremental sync with nothing changed.

How it measures:

1. Code location load: fresh processes of `python -c "import accrue_pipelines.definitions"`
   (what the code server and every run worker pay), median of `--repeat` (5), next to the
   interpreter alone and `import dagster` alone.
2. Through the real daemon (deploy/dagster/single-host.yaml on scratch PostgreSQL
   databases, as `make scale`): a tenant on a sandbox seeded like the demo (2,000
   opportunities) is activated; its first sync is the full load. Then `--repeat` no-change
   incremental syncs, each made due by moving the tenant's last success back one
   interval in tenant_sync_schedule (the sensor requests it at its next tick).
   Run wall = Dagster's run start_time → end_time; engine = the sync's own work as the
   run's crm/* materializations report it: the step's CRM connection (`connect_seconds`:
   login, describe) plus each object's `duration_seconds`; overhead = wall − engine.
   "Incl. launch" also counts the launch (process spawn and code load) as run time.
3. The daemon is stopped; `accrue sync TENANT` (in-process, recorded in the same
   instance) after a small change (5 opportunities), `--repeat` times: the command's
   wall (process start → exit) against the engine time of the run it printed.

Run: python -m benchmarks.run_overhead [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.scale_metrics import RunTiming
from benchmarks.scale_stack import BIN, REPO, SYNC_JOB, DaemonStack, change_sample
from benchmarks.support.measure import bench_dir, fmt, machine_line, md_table, median, say
from benchmarks.support.processes import interrupt_on_sigterm

TENANT = "overhead-co"
OPPORTUNITIES = 2000
LOAD_TARGET_S = 5.0
SHARE_TARGET = 0.20
NO_CHANGE_TARGET_S = 5.0
SMALL_CHANGE = 5
RUN_TIMEOUT_S = 900
FREQUENCY_MINUTES = 60


def timed_process(args: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True,
                          check=False, timeout=600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, done.stdout + done.stderr


def code_location_load(repeat: int) -> dict[str, Any]:
    python = sys.executable
    commands = {
        "interpreter alone": [python, "-c", "pass"],
        "import dagster": [python, "-c", "import dagster"],
        "import accrue_pipelines.definitions": [
            python, "-c", "import accrue_pipelines.definitions"],
        "… and build the repository": [
            python, "-c", "from accrue_pipelines.definitions import defs; "
            "defs.get_repository_def().get_all_jobs()"],
    }
    results: dict[str, Any] = {}
    for name, args in commands.items():
        walls = [timed_process(args)[0] for _ in range(repeat)]
        results[name] = {"median_s": median(walls), "min_s": min(walls), "max_s": max(walls),
                         "all_s": walls}
        say(f"code location load: {name}: median {median(walls):.2f} s")
    return results


class Overhead:
    def __init__(self, stack: DaemonStack) -> None:
        self.stack = stack

    def wait_for_sync(self, after: float, what: str) -> RunTiming:
        """The first finished sync run of TENANT created after `after`."""
        deadline = time.time() + RUN_TIMEOUT_S
        last = 0.0
        while time.time() < deadline:
            records = self.stack.run_records(after, job_name=SYNC_JOB,
                                             tags={"dagster/partition": TENANT})
            finished = [r for r in records if r.dagster_run.status.value in (
                "SUCCESS", "FAILURE", "CANCELED")]
            if finished:
                record = min(finished, key=lambda r: r.create_timestamp)
                time.sleep(1)  # the last events are written just after the status
                timing = self.stack.run_timing(record)
                if timing.status != "SUCCESS":
                    raise RuntimeError(f"{what}: run {timing.run_id} {timing.status}: "
                                       f"{timing.errors}")
                return timing
            if time.time() - last > 30:
                last = time.time()
                say(f"{what}: waiting ({len(records)} run(s) requested, "
                    f"{self.stack.queue_counts()})")
            time.sleep(2)
        raise TimeoutError(f"{what}: no finished sync within {RUN_TIMEOUT_S} s\n"
                           f"{self.stack.log_tail('daemon')}")

    def wait_idle(self, quiet_s: float = 40) -> None:
        """Until no run is queued or in progress for `quiet_s` (the analytics after a sync)."""
        since = None
        while True:
            if self.stack.idle():
                since = since or time.time()
                if time.time() - since >= quiet_s:
                    return
            else:
                since = None
            time.sleep(2)

    def make_due(self) -> None:
        """Move the last success back one interval, as if an hour had passed."""
        from dataclasses import replace

        from accrue import sync_schedule

        assert self.stack.engine is not None
        current = sync_schedule.load(self.stack.engine, [TENANT])[TENANT]
        assert current.last_success_at is not None
        sync_schedule.save(self.stack.engine, [replace(
            current, last_success_at=datetime.now(UTC) - timedelta(minutes=FREQUENCY_MINUTES))])

    def first_sync(self) -> RunTiming:
        big = self.stack.sandboxes["big"]
        self.stack.register(TENANT, big, FREQUENCY_MINUTES)
        activated = self.stack.activate([TENANT])
        say(f"first sync of {TENANT} ({OPPORTUNITIES:,} opportunities) through the daemon")
        timing = self.wait_for_sync(activated - 1, "first sync")
        say(f"first sync: wall {timing.wall_s:.1f} s, engine {timing.engine_s:.1f} s")
        self.wait_idle()
        return timing

    def no_change_sync(self, round_number: int) -> RunTiming:
        self.make_due()
        requested_after = time.time()
        timing = self.wait_for_sync(requested_after, f"no-change sync {round_number}")
        say(f"no-change sync {round_number}: wall {timing.wall_s:.1f} s, engine "
            f"{timing.engine_s:.1f} s, {timing.records_read} records read")
        self.wait_idle(15)
        return timing

    def cli_sync(self, round_number: int) -> dict[str, Any]:
        changed = change_sample(self.stack.sandboxes["big"], SMALL_CHANGE,
                                       1000 + round_number)
        env = {**self.stack.processes.env} if self.stack.processes else None
        started = time.time()
        wall, output = timed_process([str(BIN / "accrue"), "sync", TENANT], env)
        match = re.search(r"run ([0-9a-f-]{36}): succeeded", output)
        if not match:
            raise RuntimeError(f"accrue sync did not report a successful run:\n{output[-2000:]}")
        record = self.stack.instance.get_run_record_by_id(match.group(1))
        timing = self.stack.run_timing(record)
        before = (timing.start - started) if timing.start else None
        after = (started + wall - timing.end) if timing.end else None
        say(f"accrue sync {round_number} ({changed} opportunities changed): wall {wall:.1f} s, "
            f"run {fmt(timing.wall_s)} s, engine {timing.engine_s:.1f} s")
        return {"changed": changed, "cli_wall_s": wall, "before_run_s": before,
                "after_run_s": after, "timing": timing}


PROFILE_PATHS = re.compile(
    r"/(accrue|accrue_pipelines|connectors)/|simple_salesforce/|requests/sessions|"
    r"dagster/_core/(instance|storage|events)/|sqlalchemy/engine/base")


def profile_cli(stack: DaemonStack, top: int) -> list[str]:
    """`accrue sync TENANT` under cProfile: where a small sync's time goes, by function."""
    import pstats

    changed = change_sample(stack.sandboxes["big"], SMALL_CHANGE, 2000)
    out = stack.workdir / "cli.prof"
    env = {**stack.processes.env} if stack.processes else None
    wall, _ = timed_process([sys.executable, "-m", "cProfile", "-o", str(out), "-m",
                             "accrue_cli", "sync", TENANT], env)
    stats = pstats.Stats(str(out))
    rows = []
    for (path, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if PROFILE_PATHS.search(path):
            short = re.sub(r".*/(site-packages|main)/", "", path)
            rows.append((cumtime, tottime, calls, f"{short}:{line}({name})"))
    rows.sort(reverse=True)
    lines = [f"`accrue sync {TENANT}` under cProfile ({changed} opportunities changed; wall "
             f"{wall:.1f} s with the profiler): the {top} project, Dagster-storage, HTTP and SQL "
             "functions with the most cumulative time.", "",
             "| cumulative s | own s | calls | function |", "|---:|---:|---:|---|"]
    lines += [f"| {c:.2f} | {t:.2f} | {n} | `{f}` |" for c, t, n, f in rows[:top]]
    return lines


def run_row(label: str, timings: list[RunTiming]) -> list[str]:
    wall = median(t.wall_s for t in timings if t.wall_s is not None)
    engine = median(t.engine_s for t in timings)
    overhead = median(t.overhead_s for t in timings if t.overhead_s is not None)
    share = median(t.overhead_share for t in timings if t.overhead_share is not None)
    launch = median(t.launch_s for t in timings if t.launch_s is not None)
    incl = median(t.launched_overhead_share for t in timings
                  if t.launched_overhead_share is not None)
    return [label, str(len(timings)), fmt(launch), fmt(wall), fmt(engine), fmt(overhead),
            fmt(share, ".0%"), fmt(incl, ".0%")]


def step_table(timing: RunTiming) -> list[str]:
    lines = ["| step | wall s | engine s | rest s |", "|---|---:|---:|---:|"]
    for step, (wall, engine) in sorted(timing.per_step.items()):
        lines.append(f"| {step} | {wall:.2f} | {engine:.2f} | {wall - engine:.2f} |")
    steps = sum(w for w, _ in timing.per_step.values())
    lines.append(f"| all steps | {steps:.2f} | {timing.engine_s:.2f} | "
                 f"{steps - timing.engine_s:.2f} |")
    lines.append(f"| between steps (run wall − steps) | {fmt((timing.wall_s or 0) - steps, '.2f')}"
                 " | | |")
    return lines


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5,
                        help="fresh processes per load figure, and syncs per sync figure "
                             "(default 5)")
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile one `accrue sync` and list the top N functions")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    machine = machine_line()
    say(f"run overhead: {machine}")
    results_dir = bench_dir()
    output = args.output or results_dir / "run-overhead.json"
    log_dir = results_dir / "run-overhead-logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    load = code_location_load(args.repeat)
    workdir = Path(tempfile.mkdtemp(prefix="accrue-overhead-"))
    stack = DaemonStack(workdir, log_dir, args.postgres_url)
    try:
        with interrupt_on_sigterm():
            stack.open()
            stack.start_sandbox("big", OPPORTUNITIES)
            stack.wait_for_sandboxes()
            stack.start_daemon()
            bench = Overhead(stack)
            first = bench.first_sync()
            no_change = [bench.no_change_sync(i + 1) for i in range(args.repeat)]
            stack.stop_daemon()
            cli = [bench.cli_sync(i + 1) for i in range(args.repeat)]
            profile = profile_cli(stack, args.profile) if args.profile else []
    finally:
        say("stopping every process and dropping the scratch databases")
        stack.close()
        shutil.rmtree(workdir, ignore_errors=True)

    lines = [f"# Run overhead — {machine}", ""]
    lines.append("## Code location load (fresh processes, seconds)")
    lines.append("")
    lines += [md_table(["what", "median", "min", "max"], [
        [name, fmt(r["median_s"], ".2f"), fmt(r["min_s"], ".2f"), fmt(r["max_s"], ".2f")]
        for name, r in load.items()])]
    lines.append("")
    lines.append("## Sync runs through the daemon (medians, seconds)")
    lines.append("")
    lines.append("launch = RUN_STARTING → run start (process spawn, code load); wall = run "
                 "start → end; engine = connect_seconds + Σ duration_seconds of crm/*; overhead = "
                 "wall − engine.")
    lines.append("")
    lines += [md_table(
        ["run", "runs", "launch", "wall", "engine", "overhead", "overhead share",
         "share incl. launch"],
        [run_row(f"first sync, {OPPORTUNITIES:,} opportunities ({first.records_read:,} "
                 "records)", [first]),
         run_row("incremental, nothing changed", no_change)])]
    lines.append("")
    lines.append("Where the no-change sync's run time goes (the median run by wall):")
    lines.append("")
    typical = sorted(no_change, key=lambda t: t.wall_s or 0)[len(no_change) // 2]
    lines += step_table(typical)
    lines.append("")
    lines.append(f"## `accrue sync {TENANT}` (in-process CLI, daemon stopped, "
                 f"{SMALL_CHANGE} opportunities changed before each)")
    lines.append("")
    cli_wall = median(c["cli_wall_s"] for c in cli)
    cli_engine = median(c["timing"].engine_s for c in cli)
    lines += [md_table(
        ["runs", "command wall", "before the run starts", "run wall", "engine",
         "after the run ends", "wall − engine", "engine share"],
        [[str(len(cli)), fmt(cli_wall), fmt(median(c["before_run_s"] for c in cli)),
          fmt(median(c["timing"].wall_s for c in cli)), fmt(cli_engine),
          fmt(median(c["after_run_s"] for c in cli)),
          fmt(median(c["cli_wall_s"] - c["timing"].engine_s for c in cli)),
          fmt(cli_engine / cli_wall if cli_wall else None, ".0%")]])]
    lines.append("")
    load_s = load["import accrue_pipelines.definitions"]["median_s"]
    no_change_overhead = median(t.overhead_s for t in no_change if t.overhead_s is not None)
    lines.append("## Targets")
    lines.append("")
    lines += [md_table(["what", "target", "measured", ""], [
        ["code location load (import, fresh process)", "≤ 5 s", f"{load_s:.2f} s",
         verdict(load_s <= LOAD_TARGET_S)],
        [f"run overhead, {OPPORTUNITIES:,}-opportunity first sync", "≤ 20 % of wall",
         fmt(first.overhead_share, ".0%") + f" ({fmt(first.overhead_s)} of "
         f"{fmt(first.wall_s)} s)", verdict((first.overhead_share or 1) <= SHARE_TARGET)],
        ["run overhead, incremental with nothing changed", "≤ 5 s",
         f"{fmt(no_change_overhead)} s", verdict((no_change_overhead or 99) <= NO_CHANGE_TARGET_S)],
        ["`accrue sync`, small change: wall − engine", "(issue: 20-30 s for 1-4 s)",
         f"{fmt(median(c['cli_wall_s'] - c['timing'].engine_s for c in cli))} s", "—"],
    ])]
    if profile:
        lines += ["", "## Profile", "", *profile]
    print("\n".join(lines), flush=True)
    output.write_text(json.dumps({
        "machine": machine, "load": load, "first_sync": asdict(first),
        "no_change": [asdict(t) for t in no_change],
        "cli": [{**c, "timing": asdict(c["timing"])} for c in cli],
    }, indent=2, default=str))
    say(f"results in {output}")


if __name__ == "__main__":
    main()
