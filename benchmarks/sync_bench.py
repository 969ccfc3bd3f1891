"""`make bench`: initial load and 1 % incremental sync from the Salesforce sandbox.

Why it exists: the issue asks how fast a new tenant's CRM lands in the warehouse
and how cheap the hourly sync is afterwards, measured against the two limits that
matter (how fast the source can be read, how fast the database can take the same
rows), on SQLite and on PostgreSQL.

How it measures, and why that way:

* The sandbox org is seeded once per (opportunities, seed) and cached under
  `<ACCRUE_HOME>/bench/`, because seeding 100k opportunities takes ~25 s. Each
  run serves a scratch copy, so the cache stays pristine.
* The sandbox runs in its own process, and every timed phase runs in a fresh
  child process, so a phase's peak RSS (VmHWM) is the sync's alone.
* Two ceilings, measured in the same round (benchmarks/sync_ceilings.py): the
  write ceiling re-inserts the rows the initial load wrote into empty scratch
  tables shaped like the `crm_*` tables through the driver's own bulk path
  (sqlite3 executemany, PostgreSQL COPY), one transaction; the fetch ceiling reads
  every object with the connector's own read path (Bulk API 2.0 where it would be
  used) and writes nothing. The table shows the load against each.
* The 1 % change goes through the sandbox's REST API (sObject Collections) after
  both backends' initial loads, so both incremental syncs see the same changes.
* The machines are shared and noisy: with `--repeat R` every figure is the
  median over R runs, and ratios are computed within one run before taking the
  median.

Run `python -m benchmarks.sync_bench --help`; results are printed as tables and
written to `<ACCRUE_HOME>/bench/results.json`.
"""


from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.support import opportunity_changes
from benchmarks.support.databases import (
    BENCH_POSTGRES_ENV,
    DEFAULT_POSTGRES_URL,
    Backend,
    ScratchPostgres,
    default_postgres_url,
    parse_backends,
    postgres_backend,
    sqlite_backend,
    work_dir,
)
from benchmarks.support.measure import bench_dir, log, machine_info, rate
from benchmarks.support.processes import (
    REPO_ROOT,
    BenchError,
    close_and_reap,
    finish_benchmark,
    marked_result,
    read_first_line,
    report_result,
    run_child,
)
from benchmarks.sync_bench_phases import (
    PHASE_LABELS,
    PHASE_TIMEOUT_SECONDS,
    child_phase,
    round_ratios,
)
from benchmarks.sync_bench_report import report, summarize

DEFAULT_OPPORTUNITIES = 100_000
DEFAULT_SEED = 42
CHANGE_FRACTION = 0.01
SANDBOX_START_TIMEOUT_SECONDS = 120


# ============================================================ child processes

def _child_seed() -> None:
    """Entry of the seeding child: fills an empty state file, reports counts and time."""
    from connectors.salesforce.sandbox import SalesforceSandbox, seed

    spec = json.loads(sys.stdin.read())
    sandbox = SalesforceSandbox(spec["state_path"])
    try:
        summary = seed(sandbox, int(spec["opportunities"]), int(spec["seed"]),
                       activities=bool(spec["activities"]))
    finally:
        sandbox.close()
    report = {"counts": summary.counts, "seconds": summary.seconds}
    report_result(report)


def _child_sandbox() -> None:
    """Entry of the sandbox child: serve until stdin closes (the parent exited or is done)."""
    from connectors.salesforce.sandbox import running_sandbox

    state_path = sys.argv[2]
    sandbox = running_sandbox(state_path, port=0, page_size=2000)
    try:
        info = {
            "url": sandbox.url,
            "username": sandbox.username,
            "password": sandbox.password,
            "security_token": sandbox.security_token,
        }
        report_result(info)
        sys.stdin.read()
    finally:
        sandbox.stop()


CHILD_ENTRIES: dict[str, Callable[[], None]] = {
    "_phase": child_phase,
    "_seed": _child_seed,
    "_sandbox": _child_sandbox,
}


def _run_child(entry: str, spec: dict[str, Any], what: str) -> dict[str, Any]:
    return run_child("benchmarks.sync_bench", spec, what, PHASE_TIMEOUT_SECONDS, entry)


# ============================================================ the sandbox


def _cache_path(opportunities: int, seed: int, activities: bool = False) -> Path:
    kind = "-activities" if activities else ""
    return (bench_dir() / f"sandbox-salesforce-{opportunities}opps{kind}-seed{seed}.db")
    return bench_dir() / f"sandbox-salesforce-{opportunities}opps{kind}-seed{seed}.db"

def ensure_seeded(opportunities: int, seed: int,
                  activities: bool = False) -> tuple[Path, dict[str, Any]]:
    """The cached seeded org for (opportunities, seed), seeding it first when missing.

    Seeding writes to a temporary name and renames at the end, so an interrupted
    seed never leaves a half-filled file that later runs would take as cached.
    """
    path = _cache_path(opportunities, seed, activities)
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        meta["cached"] = True
        log(f"sandbox org: cached {path} (seeded in {meta['seconds']:.1f}s on {meta['date']})")
        return path, meta
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    for stale in (partial, *(Path(f"{partial}{s}") for s in ("-wal", "-shm"))):
        stale.unlink(missing_ok=True)
    log(f"sandbox org: seeding {opportunities:,} opportunities (seed {seed}) into {path} ...")
    started = time.perf_counter()
    seeded = _run_child(
        "_seed",
        {"state_path": str(partial), "opportunities": opportunities, "seed": seed,
         "activities": activities},
        "seeding the sandbox",
    )
    for suffix in ("-wal", "-shm"):
        if Path(f"{partial}{suffix}").exists():
            raise BenchError(f"seeding left {partial}{suffix} behind: the org was not closed")
    partial.replace(path)
    meta = {
        "opportunities": opportunities,
        "seed": seed,
        "activities": activities,
        "seconds": seeded["seconds"],
        "process_seconds": time.perf_counter() - started,
        "counts": seeded["counts"],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    meta["cached"] = False
    log(f"sandbox org: seeded in {seeded['seconds']:.1f}s: {seeded['counts']}")
    return path, meta


@dataclass
class SandboxProcess:
    """The sandbox serving a scratch copy of the org, in its own process."""

    process: subprocess.Popen[str]
    url: str
    credentials: dict[str, str]

    @classmethod
    def start(cls, state_path: Path) -> SandboxProcess:
        command = [sys.executable, "-m", "benchmarks.sync_bench", "_sandbox", str(state_path)]
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
        )
        try:
            info = cls._read_info(process)
        except BaseException:
            cls._kill(process)
            raise
        credentials = {k: info[k] for k in ("username", "password", "security_token")}
        return cls(process, info["url"], credentials)

    @staticmethod
    def _read_info(process: subprocess.Popen[str]) -> dict[str, Any]:
        """The line the child prints once it listens, with a timeout."""
        line = read_first_line(process, SANDBOX_START_TIMEOUT_SECONDS)
        info = marked_result(line)
        if info is None:
            code = process.poll()
            state = f"exited with code {code}" if code is not None else "did not answer"
            raise BenchError(
                f"the sandbox process {state} within {SANDBOX_START_TIMEOUT_SECONDS} s; "
                "its error is above"
            )
        return info

    def cpu_seconds(self) -> float:
        """CPU the sandbox process has used so far (all its threads)."""
        import psutil

        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        self._kill(self.process)

    @staticmethod
    def _kill(process: subprocess.Popen[str]) -> None:
        close_and_reap(process)


def change_opportunities(sandbox: SandboxProcess, fraction: float, seed: int,
                         round_number: int) -> dict[str, Any]:
    """Update a deterministic sample of opportunities through sObject Collections.

    The same sample every round, so repeated rounds re-read the same records.
    """
    started = time.perf_counter()
    with opportunity_changes.sandbox_client(sandbox.url, sandbox.credentials) as sf:
        ids = opportunity_changes.opportunity_ids(sf)
        count = max(1, round(len(ids) * fraction))
        sample = sorted(random.Random(seed).sample(ids, min(count, len(ids))))
        failures = opportunity_changes.change_opportunities(
            sf, sample, round_number, f"accrue benchmark change, round {round_number + 1}")
    if failures:
        raise BenchError(f"{len(failures)} opportunity updates failed, e.g. {failures[0]}")
    return {"changed": len(sample), "seconds": time.perf_counter() - started}


# ============================================================ orchestration


def run_phase(
    backend: Backend | None, phase: str, db_url: str, sandbox: SandboxProcess, round_label: str
) -> dict[str, Any]:
    """Run one timed phase in a fresh child and add the sandbox's CPU time during it
    (`backend` None: the fetch-only phase, which writes nowhere)."""
    name = backend.name if backend is not None else "source"
    log(f"== {name}: {PHASE_LABELS[phase]} ({round_label}) ==")
    spec = {
        "phase": phase,
        "backend": name,
        "db_url": db_url,
        "sandbox_url": sandbox.url,
        **sandbox.credentials,
    }
    cpu_before = sandbox.cpu_seconds()
    result = _run_child("_phase", spec, f"{name} {PHASE_LABELS[phase]}")
    result["sandbox_cpu_seconds"] = sandbox.cpu_seconds() - cpu_before
    result["records_per_second"] = rate(result["records"], result["wall_seconds"])
    log(
        f"   {result['records']:,} records in {result['wall_seconds']:.1f}s "
        f"({result['records_per_second']:,.0f}/s), peak RSS {result['peak_rss_mb']:.0f} MB"
    )
    return result



def run(args: argparse.Namespace) -> dict[str, Any]:
    """Seed (or reuse) the org, serve it, and run every round on every backend."""
    notes: list[str] = []
    with work_dir("accrue-bench-") as workdir:
        cache, seeding = ensure_seeded(args.opportunities, args.seed, args.activities)
        state = workdir / "sandbox.db"
        shutil.copyfile(cache, state)
        backends: list[Backend] = []
        server: ScratchPostgres | None = None
        if "sqlite" in args.backends:
            backends.append(sqlite_backend(workdir))
        if "postgresql" in args.backends:
            backend, server, message = postgres_backend(args.postgres_url)
            log(message)
            if backend is None:
                notes.append(message)
            else:
                backends.append(backend)
        if not backends:
            raise BenchError("no backend to benchmark")
        sandbox = SandboxProcess.start(state)
        log(f"sandbox serving {sandbox.url} (pid {sandbox.process.pid})")
        rounds: list[dict[str, Any]] = []
        change: dict[str, Any] = {}
        try:
            for round_number in range(args.repeat):
                label = f"round {round_number + 1}/{args.repeat}"
                urls = {}
                phases: dict[str, dict[str, Any]] = {}
                for backend in backends:
                    urls[backend.name] = backend.create(round_number)
                    phases[backend.name] = {
                        phase: run_phase(backend, phase, urls[backend.name], sandbox, label)
                        for phase in ("initial", "raw")
                    }
                fetch = run_phase(None, "fetch", "", sandbox, label)
                for backend in backends:
                    phases[backend.name]["fetch"] = fetch
                log(f"== changing {CHANGE_FRACTION:.0%} of the opportunities ({label}) ==")
                change = change_opportunities(sandbox, CHANGE_FRACTION, args.seed, round_number)
                for backend in backends:
                    phases[backend.name]["incremental"] = run_phase(
                        backend, "incremental", urls[backend.name], sandbox, label
                    )
                    backend.drop(urls[backend.name])
                for phase_results in phases.values():
                    phase_results["ratios"] = round_ratios(phase_results)
                rounds.append({"backends": phases, "change": change})
        finally:
            sandbox.stop()
            if server is not None:
                server.drop_all()
    names = [b.name for b in backends]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "opportunities": args.opportunities,
        "seed": args.seed,
        "activities": args.activities,
        "repeat": args.repeat,
        "backends": {b.name: b.note for b in backends},
        "notes": notes,
        "sandbox": {k: seeding[k] for k in ("seconds", "counts", "date", "cached")},
        "change": change,
        "summary": summarize(rounds, names),
        "rounds": rounds,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sync_bench",
        description="Initial load and 1%% incremental sync from the Salesforce sandbox into "
        "SQLite and PostgreSQL, against a raw bulk insert of the same rows.",
    )
    parser.add_argument(
        "--opportunities",
        type=int,
        default=DEFAULT_OPPORTUNITIES,
        help="opportunities in the sandbox org (default %(default)s; e.g. 5000 for a quick run)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed of the org")
    parser.add_argument(
        "--activities",
        action="store_true",
        help="seed Tasks and Events too (~1.8x the records); without them 100,000 "
        "opportunities are the ~395,000 records issue 15's targets are stated for",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of every timed phase; figures are medians (default %(default)s: the "
        "machines are shared, one round is noise)",
    )
    parser.add_argument(
        "--backends",
        default="sqlite,postgresql",
        help="comma-separated: sqlite, postgresql (default %(default)s)",
    )
    parser.add_argument(
        "--postgres-url",
        default=default_postgres_url(BENCH_POSTGRES_ENV),
        help=f"server to create scratch databases on (default ${BENCH_POSTGRES_ENV} or "
        f"{DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="results JSON (default <ACCRUE_HOME>/bench/results.json)",
    )
    args = parser.parse_args(argv)
    if args.opportunities < 1:
        parser.error("--opportunities must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.backends, unknown = parse_backends(args.backends)
    if unknown:
        parser.error(f"unknown backend(s) {unknown}: use sqlite and/or postgresql")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in CHILD_ENTRIES:
        CHILD_ENTRIES[argv[0]]()
        return 0
    args = parse_args(argv)
    return finish_benchmark(lambda: run(args), report, args.output, "results.json")


if __name__ == "__main__":
    sys.exit(main())
