"""A production single-host stack for `make scale` and `benchmarks.run_overhead`.

`DaemonStack` is what deploy/dagster/single-host.yaml describes, started for real:
scratch PostgreSQL databases for the Dagster instance and the warehouse (migrated),
a fresh ACCRUE_SECRET_KEYS, `dagster-daemon run -w workspace.yaml` and Salesforce
sandboxes as LocalStack children, and a local SMTP sink so the first-data e-mail
sensor does its real work. Tenants are registered the concierge's way (a pending
tenant with its admin and wizard, sealed credentials, then "Finish": active).
`close()` stops every process and drops both databases, also after Ctrl-C, SIGTERM
or an error. `CrmActivity` changes the sandboxes' opportunities between syncs.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from accrue import crypto, db, tenants
from accrue_cli.localstack import LocalStack, process_tree, terminate, wait_until
from benchmarks.scale_metrics import RssSampler, RunTiming, run_timing
from benchmarks.support.databases import BENCH_POSTGRES_ENV, ScratchPostgres, default_postgres_url
from benchmarks.support.measure import say
from benchmarks.support.opportunity_changes import (
    change_opportunities,
    opportunity_ids,
    sandbox_client,
)
from benchmarks.support.processes import free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEPLOY_CONFIG = REPO / "deploy" / "dagster" / "single-host.yaml"
SYNC_JOB = "sync_tenant"
SENSORS = ("tenant_sync_sensor", "downstream_refresh_sensor", "sync_failure_sensor",
           "first_data_email_sensor")
SANDBOX_CREDENTIALS = {"username": "admin@sandbox.accrue.local",
                       "password": "sandbox-password", "security_token": "SANDBOXTOKEN"}
DAEMON_READY_TIMEOUT_S = 240
SANDBOX_READY_TIMEOUT_S = 300


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
        self.server_url = server_url or default_postgres_url(BENCH_POSTGRES_ENV)
        self.instance_url: str | None = None
        self.warehouse_url: str | None = None
        self.scratch: ScratchPostgres | None = None
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
        self.scratch = ScratchPostgres(sa.make_url(self.server_url), "accrue_scale")
        self.instance_url = self.scratch.create("_dagster")
        self.warehouse_url = self.scratch.create("_wh")
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
        if self.scratch is not None:
            self.scratch.drop_all()
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
            wait_until(partial(_http_ok, f"{sandbox.url}/_sandbox/health"),
                       SANDBOX_READY_TIMEOUT_S, f"sandbox {sandbox.name}", interval=0.5,
                       explain=partial(self.log_tail, sandbox.name))

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
            self.changed += change_sample(sandbox, self.per_round, self._round, self._ids)
        except Exception as exc:  # noqa: BLE001 - reported, the benchmark goes on
            self.errors.append(f"{sandbox.name}: {exc}"[:200])

    def stop(self) -> None:
        self._stop_event.set()


def change_sample(sandbox: Sandbox, count: int, round_number: int,
                  id_cache: dict[str, list[str]] | None = None) -> int:
    """Update `count` opportunities' stage and description through sObject Collections;
    how many the org took. `id_cache` keeps each sandbox's ids across rounds."""
    with sandbox_client(sandbox.url, SANDBOX_CREDENTIALS) as sf:
        cache = id_cache if id_cache is not None else {}
        if sandbox.name not in cache:
            cache[sandbox.name] = opportunity_ids(sf)
        ids = cache[sandbox.name]
        sample = random.Random(f"{sandbox.name}-{round_number}").sample(ids, min(count, len(ids)))
        failures = change_opportunities(sf, sample, round_number,
                                        f"accrue scale benchmark change {round_number}")
    return len(sample) - len(failures)
