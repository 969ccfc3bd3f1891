"""The machinery `make scale` and `benchmarks.run_overhead` share: a production single-host stack.

`DaemonStack` is what deploy/dagster/single-host.yaml describes, started for real:
scratch PostgreSQL databases for the Dagster instance and the warehouse (migrated),
a fresh ACCRUE_SECRET_KEYS, `dagster-daemon run -w workspace.yaml` and Salesforce
sandboxes as LocalStack children, and a local SMTP sink so the first-data e-mail
sensor does its real work. Tenants are registered the concierge's way (a pending
tenant with its admin and wizard, sealed credentials, then "Finish": active).
`close()` stops every process and drops both databases, also after Ctrl-C, SIGTERM
or an error.

The figures are read from where Dagster keeps them: sensor ticks (start and end
timestamps), run records and run events (queue, launch, run wall, the engine's own
`connect_seconds` and `duration_seconds`), plus psutil samples of the daemon's tree and run workers.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import statistics
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

from accrue import config, crypto, db, tenants
from accrue_cli.localstack import LocalStack, process_tree, terminate, wait_until

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEPLOY_CONFIG = REPO / "deploy" / "dagster" / "single-host.yaml"
POSTGRES_ENV = "ACCRUE_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
SYNC_JOB = "sync_tenant"
SENSORS = ("tenant_sync_sensor", "downstream_refresh_sensor", "sync_failure_sensor",
           "first_data_email_sensor")
SANDBOX_CREDENTIALS = {"username": "admin@sandbox.accrue.local",
                       "password": "sandbox-password", "security_token": "SANDBOXTOKEN"}
DAEMON_READY_TIMEOUT_S = 240
SANDBOX_READY_TIMEOUT_S = 300


def say(message: str) -> None:
    """A progress line on stderr, so a person sees the benchmark is alive."""
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-quantile (0..1) with linear interpolation; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    k = (len(ordered) - 1) * q
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def median(values: Iterable[float]) -> float | None:
    items = list(values)
    return statistics.median(items) if items else None


def fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{unit}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine_line() -> str:
    load = os.getloadavg()
    mem = psutil.virtual_memory()
    return (f"{psutil.cpu_count()} CPUs, {mem.total / 2**30:.0f} GB RAM, load average "
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min), "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, so every `finally` cleans up."""
    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# -- the stack -----------------------------------------------------------------------------


@dataclass
class Sandbox:
    name: str
    url: str
    opportunities: int


class SmtpSink:
    """A local SMTP server that accepts and counts every message (aiosmtpd)."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                sink.messages += 1
                return "250 OK"

        self.messages = 0
        self.port = free_port()
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._controller.stop()


class DaemonStack:
    """deploy/dagster/single-host.yaml, run for real on scratch databases; see the module doc."""

    def __init__(self, workdir: Path, log_dir: Path, server_url: str | None = None) -> None:
        self.workdir = workdir
        self.log_dir = log_dir
        self.server_url = server_url or os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES_URL
        self.instance_url: str | None = None
        self.warehouse_url: str | None = None
        self.processes: LocalStack | None = None
        self.smtp: SmtpSink | None = None
        self.instance: Any = None
        self.engine: sa.Engine | None = None
        self.sandboxes: dict[str, Sandbox] = {}
        self.env: dict[str, str] = {}
        self._saved_env: dict[str, str | None] = {}
        self._sampler: RssSampler | None = None
        self.daemon_started_at: float | None = None

    # life cycle

    def open(self) -> DaemonStack:
        say(f"scratch PostgreSQL databases on {sa.make_url(self.server_url).host}")
        self.instance_url = db.create_database(self.server_url, "accrue_scale_dagster")
        self.warehouse_url = db.create_database(self.server_url, "accrue_scale_wh")
        self.engine = db.make_engine(self.warehouse_url)
        db.upgrade(self.engine)
        home = self.workdir / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEPLOY_CONFIG, home / "dagster.yaml")
        self.smtp = SmtpSink()
        parsed = sa.make_url(self.instance_url)
        self.env = {
            "ACCRUE_HOME": str(self.workdir / "accrue_home"),
            "ACCRUE_DATABASE_URL": self.warehouse_url,
            "ACCRUE_SECRET_KEYS": crypto.generate_key(),
            "ACCRUE_SMTP_HOST": "127.0.0.1",
            "ACCRUE_SMTP_PORT": str(self.smtp.port),
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_USER": parsed.username or "postgres",
            "DAGSTER_PG_PASSWORD": parsed.password or "",
            "DAGSTER_PG_HOST": parsed.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(parsed.port or 5432),
            "DAGSTER_PG_DB": parsed.database or "",
        }
        for key, value in self.env.items():  # this process reads the same instance and vault
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        self.processes = LocalStack(self.log_dir, env={**os.environ, **self.env}, cwd=REPO)
        import dagster as dg

        self.instance = dg.DagsterInstance.get()
        return self

    def close(self) -> None:
        """Stop every process, drop both databases, restore the environment."""
        if self._sampler is not None:
            self._sampler.stop()
        if self.processes is not None:
            self.processes.stop()
            leftovers = self.processes.leftovers()
            if leftovers:
                say(f"WARNING: processes survived SIGKILL: {[p.pid for p in leftovers]}")
        if self.instance is not None:
            with contextlib.suppress(Exception):
                self.instance.dispose()
        if self.engine is not None:
            self.engine.dispose()
        if self.smtp is not None:
            self.smtp.stop()
        for url in (self.instance_url, self.warehouse_url):
            if url:
                try:
                    db.drop_database(url)
                except Exception as exc:  # noqa: BLE001 - report, keep cleaning up
                    say(f"WARNING: could not drop {sa.make_url(url).database}: {exc}")
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def __enter__(self) -> DaemonStack:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # processes

    def start_sandbox(self, name: str, opportunities: int) -> Sandbox:
        """`accrue sandbox salesforce --opportunities N` on a free port (not waited for)."""
        assert self.processes is not None
        port = free_port()
        self.processes.start(name, [
            str(BIN / "accrue"), "sandbox", "salesforce", "--port", str(port),
            "--opportunities", str(opportunities), "--seed", str(opportunities),
            "--state", str(self.workdir / f"{name}.db")])
        sandbox = Sandbox(name, f"http://127.0.0.1:{port}", opportunities)
        self.sandboxes[name] = sandbox
        return sandbox

    def wait_for_sandboxes(self) -> None:
        for sandbox in self.sandboxes.values():
            wait_until(lambda s=sandbox: _http_ok(f"{s.url}/_sandbox/health"),
                       SANDBOX_READY_TIMEOUT_S, f"sandbox {sandbox.name}", interval=0.5,
                       explain=lambda s=sandbox: self.log_tail(s.name))

    def start_daemon(self) -> None:
        assert self.processes is not None
        self.processes.start("daemon", [str(BIN / "dagster-daemon"), "run",
                                        "-w", str(REPO / "workspace.yaml")])
        self.daemon_started_at = time.time()
        self._sampler = RssSampler(self.processes.children["daemon"].pid)
        self._sampler.start()
        wait_until(lambda: self.ticks_since(self.daemon_started_at, "tenant_sync_sensor"),
                   DAEMON_READY_TIMEOUT_S, "the daemon's first tenant_sync_sensor tick",
                   interval=1, explain=lambda: self.log_tail("daemon"))

    def stop_daemon(self) -> None:
        """End the daemon's whole tree (its code server and any run worker)."""
        assert self.processes is not None
        child = self.processes.children.get("daemon")
        if child is not None:
            terminate(process_tree([child.pid]))
            with contextlib.suppress(Exception):
                child.wait(timeout=5)
        if self._sampler is not None:
            self._sampler.stop()

    def log_tail(self, name: str, lines: int = 40) -> str:
        return self.processes.log_tail(name, lines) if self.processes else ""

    @property
    def rss(self) -> RssSampler:
        assert self._sampler is not None
        return self._sampler

    # tenants, the concierge's way

    def register(self, tenant_id: str, sandbox: Sandbox, frequency_minutes: int = 60) -> None:
        """A pending tenant with its admin and wizard, and sealed credentials (not active yet)."""
        from accrue import onboarding_state
        from accrue.schema import utcnow
        from onboarding_app import store

        assert self.engine is not None
        tenants.add_tenant(self.engine, tenant_id, tenant_id, "salesforce",
                           sync_frequency_minutes=frequency_minutes, status="pending")
        with self.engine.begin() as conn:
            store.add_user(conn, tenant_id=tenant_id, email=f"admin@{tenant_id}.example",
                           full_name="Admin", password_hash="-")
            onboarding_state.start(conn, tenant_id, step="terms", started_at=utcnow())
        tenants.save_credentials(self.engine, tenant_id, "salesforce", SANDBOX_CREDENTIALS,
                                 {"domain": "login", "sandbox_url": sandbox.url})

    def activate(self, tenant_ids: Sequence[str]) -> float:
        """The wizard's "Finish": active tenant, completed wizard. Returns the time (epoch s)."""
        from accrue import onboarding_state
        from accrue.schema import utcnow

        assert self.engine is not None
        now = utcnow()
        with self.engine.begin() as conn:  # the wizard completed before the tenant is active
            for chunk in _chunks(list(tenant_ids), 500):
                onboarding_state.save(conn, chunk, step="complete", completed_at=now)
        tenants.set_statuses(self.engine, tenant_ids, "active")
        return now.timestamp()

    def set_status(self, tenant_id: str, status: str) -> None:
        assert self.engine is not None
        tenants.set_status(self.engine, tenant_id, status)

    def recommendations(self, tenant_id: str) -> int:
        from accrue.schema import price_recommendation as table

        assert self.engine is not None
        query = sa.select(sa.func.count()).select_from(table).where(
            table.c.tenant_id == tenant_id)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def synced_tenants(self, tenant_ids: Sequence[str]) -> int:
        """Tenants whose successful sync the scheduler has recorded."""
        from accrue.schema import tenant_sync_schedule as t

        assert self.engine is not None
        ids = set(tenant_ids)
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.tenant_id).where(t.c.last_success_at.is_not(None)))
            return sum(1 for (tenant_id,) in rows if tenant_id in ids)

    # Dagster's records

    def queue_counts(self) -> dict[str, int]:
        import dagster as dg

        s = dg.DagsterRunStatus
        groups = {"queued": [s.QUEUED], "in progress": [s.NOT_STARTED, s.STARTING, s.STARTED,
                                                        s.CANCELING]}
        return {name: self.instance.get_runs_count(dg.RunsFilter(statuses=statuses))
                for name, statuses in groups.items()}

    def idle(self) -> bool:
        counts = self.queue_counts()
        return counts["queued"] == 0 and counts["in progress"] == 0

    def run_records(self, after: float, before: float | None = None,
                    job_name: str | None = None, tags: dict[str, str] | None = None
                    ) -> list[Any]:
        import dagster as dg

        return list(self.instance.get_run_records(filters=dg.RunsFilter(
            created_after=datetime.fromtimestamp(after, UTC),
            created_before=datetime.fromtimestamp(before, UTC) if before else None,
            job_name=job_name, tags=tags or {})))

    def ticks_since(self, after: float | None, sensor: str) -> list[Any]:
        return self.sensor_ticks(after or 0, None).get(sensor, [])

    def sensor_ticks(self, after: float, before: float | None) -> dict[str, list[Any]]:
        """Every sensor's ticks that started in [after, before), by sensor name."""
        from dagster._core.definitions.run_request import InstigatorType

        ticks: dict[str, list[Any]] = {}
        for state in self.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            found = self.instance.get_ticks(state.instigator_origin_id, state.selector_id,
                                            after=after, before=before)
            ticks.setdefault(state.instigator_name, []).extend(found)
        return ticks

    def run_timing(self, record: Any) -> RunTiming:
        return run_timing(self.instance, record)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


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


# -- CRM activity --------------------------------------------------------------------------


class CrmActivity(threading.Thread):
    """Every `every_s`, changes `per_round` opportunities in the next sandbox (round robin).

    Real CRMs change between syncs: a synced change is a row the sync wrote,
    so the refresh sensor follows the sync with an analytics run. With K sandboxes each
    one changes every K·every_s, and a tenant's hourly sync brings changes about
    min(1, 60 min / (K·every_s)) of the time.
    """

    def __init__(self, sandboxes: Sequence[Sandbox], every_s: float, per_round: int) -> None:
        super().__init__(name="crm-activity", daemon=True)
        self.sandboxes = list(sandboxes)
        self.every_s = every_s
        self.per_round = per_round
        self.changed = 0
        self.errors: list[str] = []
        self._stop_event = threading.Event()
        self._ids: dict[str, list[str]] = {}
        self._round = 0

    def run(self) -> None:
        while not self._stop_event.wait(self.every_s):
            self.change_round()

    def change_round(self) -> None:
        sandbox = self.sandboxes[self._round % len(self.sandboxes)]
        self._round += 1
        try:
            self.changed += change_opportunities(sandbox, self.per_round, self._round, self._ids)
        except Exception as exc:  # noqa: BLE001 - reported, the benchmark goes on
            self.errors.append(f"{sandbox.name}: {exc}"[:200])

    def stop(self) -> None:
        self._stop_event.set()


def change_opportunities(sandbox: Sandbox, count: int, round_number: int,
                         id_cache: dict[str, list[str]] | None = None) -> int:
    """Update `count` opportunities' stage and description through sObject Collections."""
    from simple_salesforce import Salesforce

    from connectors.salesforce.sandbox.standard_objects import STAGES
    from connectors.salesforce.transport import sandbox_session

    session = sandbox_session(sandbox.url)
    try:
        sf = Salesforce(session=session, **SANDBOX_CREDENTIALS)
        cache = id_cache if id_cache is not None else {}
        if sandbox.name not in cache:
            cache[sandbox.name] = sorted(
                r["Id"] for r in sf.query_all("SELECT Id FROM Opportunity")["records"])
        ids = cache[sandbox.name]
        sample = random.Random(f"{sandbox.name}-{round_number}").sample(ids, min(count, len(ids)))
        stages = list(STAGES)
        records = [{"attributes": {"type": "Opportunity"}, "Id": record_id,
                    "StageName": stages[(i + round_number) % len(stages)],
                    "Description": f"accrue scale benchmark change {round_number}"}
                   for i, record_id in enumerate(sample)]
        results = sf.restful("composite/sobjects", method="PATCH",
                             json={"allOrNone": False, "records": records})
    finally:
        session.close()
    return sum(1 for r in results if r.get("success"))


def accrue_home_dir(*parts: str) -> Path:
    """A folder under ACCRUE_HOME for logs and results that outlive the run."""
    path = config.accrue_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
