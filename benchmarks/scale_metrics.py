"""The figures `make scale` and `benchmarks.run_overhead` read from where Dagster keeps
them: sensor ticks (start and end timestamps), run records and run events (queue, launch,
run wall, the engine's own `connect_seconds` and `duration_seconds`), psutil samples of
the daemon's tree and run workers, and the daemon log's problems.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from accrue_cli.localstack import process_tree
from benchmarks.support.measure import median, percentile

# -- ticks ---------------------------------------------------------------------------------


def tick_seconds(tick: Any) -> float | None:
    end = getattr(tick, "end_timestamp", None)
    return None if end is None else max(0.0, end - tick.timestamp)


@dataclass
class TickStats:
    count: int
    p50: float | None
    p95: float | None
    max: float | None
    failures: int
    errors: list[str]
    # Ticks that requested runs (or backfills) spend most of their time submitting them.
    with_requests: int = 0
    requests_median: float | None = None
    seconds_per_request_median: float | None = None
    without_requests_p95: float | None = None


def tick_requests(tick: Any) -> int:
    data = tick.tick_data
    return max(len(data.run_requests or []), len(tick.run_ids or []))


def tick_stats(ticks: Sequence[Any]) -> TickStats:
    timed = [(d, tick_requests(t)) for t in ticks if (d := tick_seconds(t)) is not None]
    durations = [d for d, _ in timed]
    busy = [(d, n) for d, n in timed if n]
    failed = [t for t in ticks if str(getattr(t.status, "value", t.status)) == "FAILURE"]
    errors = []
    for tick in failed:
        error = getattr(tick, "error", None)
        if error is not None:
            errors.append(f"{error.cls_name}: {error.message.strip().splitlines()[0][:200]}")
    return TickStats(
        len(ticks), percentile(durations, 0.5), percentile(durations, 0.95),
        max(durations) if durations else None, len(failed), errors,
        with_requests=len(busy), requests_median=median(n for _, n in busy),
        seconds_per_request_median=median(d / n for d, n in busy),
        without_requests_p95=percentile((d for d, n in timed if not n), 0.95))


# -- runs ----------------------------------------------------------------------------------


@dataclass
class RunTiming:
    """One run's timeline (epoch seconds) and the engine's own time."""

    run_id: str
    job: str
    status: str
    partition: str | None
    trigger: str | None
    created: float
    starting: float | None  # the daemon launched it (process spawn begins)
    start: float | None  # the run worker is up (code location loaded): record start_time
    end: float | None
    engine_s: float  # the run's crm/* materializations: Σ connect_seconds + duration_seconds
    steps_s: float  # Σ step durations (STEP_START → STEP_SUCCESS/FAILURE)
    records_read: int
    objects: int
    errors: list[str] = field(default_factory=list)
    per_step: dict[str, list[float]] = field(default_factory=dict)  # step: [wall s, engine s]

    @property
    def wall_s(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start

    @property
    def launch_s(self) -> float | None:
        return None if self.start is None or self.starting is None else (
            self.start - self.starting)

    @property
    def queue_s(self) -> float | None:
        return None if self.starting is None else self.starting - self.created

    @property
    def overhead_s(self) -> float | None:
        wall = self.wall_s
        return None if wall is None else wall - self.engine_s

    @property
    def overhead_share(self) -> float | None:
        wall = self.wall_s
        return None if not wall else (wall - self.engine_s) / wall

    @property
    def launched_overhead_share(self) -> float | None:
        """The same with the launch (process start, code load) counted as run wall."""
        if self.starting is None or self.end is None or self.end <= self.starting:
            return None
        total = self.end - self.starting
        return (total - self.engine_s) / total


def run_timing(instance: Any, record: Any) -> RunTiming:
    import dagster as dg

    t = dg.DagsterEventType
    kinds = {t.RUN_STARTING, t.STEP_START, t.STEP_SUCCESS, t.STEP_FAILURE,
             t.ASSET_MATERIALIZATION, t.RUN_FAILURE}
    run = record.dagster_run
    starting = None
    step_started: dict[str, float] = {}
    per_step: dict[str, list[float]] = {}
    steps = engine = 0.0
    records_read = objects = 0
    errors: list[str] = []
    for entry in instance.all_logs(run.run_id, of_type=kinds):
        event = entry.dagster_event
        if event is None:
            continue
        kind = event.event_type
        if kind == t.RUN_STARTING:
            starting = entry.timestamp
        elif kind == t.STEP_START:
            step_started[event.step_key or ""] = entry.timestamp
        elif kind in (t.STEP_SUCCESS, t.STEP_FAILURE):
            began = step_started.pop(event.step_key or "", None)
            if began is not None:
                steps += entry.timestamp - began
                per_step.setdefault(event.step_key or "", [0.0, 0.0])[0] += (
                    entry.timestamp - began)
            if kind == t.STEP_FAILURE:
                error = event.event_specific_data.error
                errors.append(f"{event.step_key}: {_error_line(error)}")
        elif kind == t.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            if materialization.asset_key.path[0] != "crm":
                continue
            meta = materialization.metadata
            if "connect_seconds" in meta:  # the step's login and describe, on its first object
                seconds = float(meta["connect_seconds"].value)
                engine += seconds
                per_step.setdefault(event.step_key or "", [0.0, 0.0])[1] += seconds
            if "duration_seconds" in meta:
                seconds = float(meta["duration_seconds"].value)
                engine += seconds
                per_step.setdefault(event.step_key or "", [0.0, 0.0])[1] += seconds
                records_read += int(getattr(meta.get("records_read"), "value", 0) or 0)
                objects += 1
        elif kind == t.RUN_FAILURE:
            errors.append(f"run: {entry.message or ''}"[:300])
    return RunTiming(
        run_id=run.run_id, job=run.job_name, status=run.status.value,
        partition=run.tags.get("dagster/partition"), trigger=run.tags.get("accrue/trigger"),
        created=record.create_timestamp.timestamp(), starting=starting,
        start=record.start_time, end=record.end_time, engine_s=engine, steps_s=steps,
        records_read=records_read, objects=objects, errors=errors, per_step=per_step)


def _error_line(error: Any) -> str:
    parts = []
    while error is not None:
        parts.append(f"{error.cls_name}: {error.message.strip().splitlines()[0][:160]}"
                     if error.message.strip() else str(error.cls_name))
        error = error.cause
    return " ← ".join(parts)[:400]


# -- memory --------------------------------------------------------------------------------


@dataclass
class RssSample:
    at: float
    daemon_mb: float  # the daemon and its code server(s): everything but run workers
    workers_mb: list[float]  # one figure per run worker process


# The default run launcher asks the code server to start the run; the code server spawns it
# with multiprocessing ("spawn"), other launchers use `dagster api execute_run`.
RUN_WORKER_MARKS = ("spawn_main", "execute_run")


class RssSampler(threading.Thread):
    """Samples the daemon's process tree every few seconds (psutil RSS)."""

    def __init__(self, root_pid: int, interval: float = 3.0) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.root_pid = root_pid
        self.interval = interval
        self.samples: list[RssSample] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            daemon_mb = 0.0
            workers: list[float] = []
            for proc in process_tree([self.root_pid]):
                try:
                    rss = proc.memory_info().rss / 2**20
                    cmdline = " ".join(proc.cmdline())
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                if any(mark in cmdline for mark in RUN_WORKER_MARKS):
                    workers.append(rss)
                else:
                    daemon_mb += rss
            if daemon_mb:
                self.samples.append(RssSample(time.time(), daemon_mb, workers))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()

    def between(self, after: float, before: float) -> dict[str, float | None]:
        chosen = [s for s in self.samples if after <= s.at <= before]
        daemon = [s.daemon_mb for s in chosen]
        workers = [w for s in chosen for w in s.workers_mb]
        totals = [s.daemon_mb + sum(s.workers_mb) for s in chosen]
        return {"daemon_median": median(daemon), "daemon_max": max(daemon, default=None),
                "worker_median": median(workers), "worker_max": max(workers, default=None),
                "total_max": max(totals, default=None),
                "workers_max_at_once": max((len(s.workers_mb) for s in chosen), default=None)}


# -- logs ----------------------------------------------------------------------------------


ANSI = re.compile(r"\x1b\[[0-9;]*m")
LOG_LINE = re.compile(r" - (?P<logger>[\w.]+) - (?P<level>ERROR|WARNING|CRITICAL) - (?P<msg>.*)")
_NOISE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d+(\.\d+)?")


def log_problems(path: Path, top: int = 12) -> tuple[Counter[str], int]:
    """(ERROR/WARNING lines of a Dagster log grouped with numbers and ids masked, tracebacks)."""
    problems: Counter[str] = Counter()
    tracebacks = 0
    if not path.exists():
        return problems, 0
    with path.open(errors="replace") as handle:
        for line in handle:
            if line.startswith("Traceback"):
                tracebacks += 1
            match = LOG_LINE.search(ANSI.sub("", line))
            if match:
                text = _NOISE.sub("N", match["msg"].strip())[:220]
                problems[f"{match['level']} {match['logger']}: {text}"] += 1
    return Counter(dict(problems.most_common(top))), tracebacks


