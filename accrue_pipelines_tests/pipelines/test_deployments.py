"""The production instance configurations, run for real against the local services.

* deploy/dagster/single-host.yaml: PostgreSQL storage, the real `dagster-daemon`,
  runs launched by the scheduler sensor, their events stored in PostgreSQL.
* deploy/dagster/celery.yaml: the same plus dagster-celery's run launcher, two Celery
  workers (RabbitMQ broker, Redis results) syncing two tenants end to end, and a run
  whose worker process is killed mid-sync resumed by run monitoring to completion.

Both need PostgreSQL (ACCRUE_TEST_POSTGRES_URL, set by .ci/run); the Celery test also
needs RabbitMQ on 127.0.0.1:5672 and Redis on 127.0.0.1:6379 (.ci/run checks both).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from accrue import db, tenants
from accrue.warehouse import Warehouse
from accrue_cli.localstack import LocalStack, wait_until
from accrue_pipelines.platform import run_tags
from accrue_pipelines_tests.fixtures_sandbox import start_sandbox
from connectors.common_model import COMMON_OBJECTS

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "dagster"
BIN = Path(sys.executable).parent
BROKER_URL = "pyamqp://guest:guest@127.0.0.1:5672//"
RESULT_BACKEND = "redis://127.0.0.1:6379/3"
SYNC_DEADLINE_S = 240


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _postgres_server() -> str:
    url = os.environ.get("ACCRUE_TEST_POSTGRES_URL", "").strip()
    if not url:
        pytest.skip("needs PostgreSQL: set ACCRUE_TEST_POSTGRES_URL (.ci/run does)")
    return url


@dataclass
class Stack:
    processes: LocalStack
    instance: dg.DagsterInstance
    warehouse_url: str
    home: Path

    def runs(self, **tags: str) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs(filters=dg.RunsFilter(tags=tags)))

    def explain(self) -> str:
        """What a person needs when a deadline passes: process logs and failed runs' errors."""
        names = sorted(self.processes.children)
        parts = [f"--- {n}\n{self.processes.log_tail(n)}" for n in names]
        for run in self.instance.get_runs(
                filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]), limit=3):
            errors = [
                f"{e.dagster_event.event_type_value}: {e.message}\n"
                f"{getattr(e.dagster_event.event_specific_data, 'error', '')}"
                for e in self.instance.all_logs(run.run_id)
                if e.dagster_event and e.dagster_event.event_type_value in (
                    "STEP_FAILURE", "PIPELINE_FAILURE", "ENGINE_EVENT")]
            parts.append(f"--- failed run {run.run_id}\n" + "\n".join(errors[-6:]))
        return "\n".join(parts)


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], str, str]]:
    """Scratch PostgreSQL databases for the Dagster instance and the warehouse, and the env."""
    server = _postgres_server()
    instance_url = db.create_database(server, "accrue_dagster")
    warehouse_url = db.create_database(server, "accrue_wh")
    engine = db.make_engine(warehouse_url)
    db.upgrade(engine)
    engine.dispose()
    parsed = sa.make_url(instance_url)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "DAGSTER_PG_USER": parsed.username or "postgres",
        "DAGSTER_PG_PASSWORD": parsed.password or "",
        "DAGSTER_PG_HOST": parsed.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(parsed.port or 5432),
        "DAGSTER_PG_DB": parsed.database or "",
        "ACCRUE_DATABASE_URL": warehouse_url,
        "ACCRUE_CELERY_BROKER_URL": BROKER_URL,
        "ACCRUE_CELERY_RESULT_BACKEND": RESULT_BACKEND,
    }
    try:
        yield env, instance_url, warehouse_url
    finally:
        db.drop_database(instance_url)
        db.drop_database(warehouse_url)


def _start_stack(env: dict[str, str], config: str, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Stack:
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True)
    shutil.copyfile(DEPLOY / config, home / "dagster.yaml")
    for key, value in env.items():  # this process reads the same instance
        monkeypatch.setenv(key, value)
    processes = LocalStack(tmp_path / "logs", env=env, cwd=REPO)
    instance = dg.DagsterInstance.get()
    return Stack(processes, instance, env["ACCRUE_DATABASE_URL"], home)


def _register(warehouse_url: str, tenant_id: str, sandbox: object) -> None:
    engine = db.make_engine(warehouse_url)
    # Activities on: the deployments sync every common object, the optional one included.
    tenants.add_tenant(engine, tenant_id, tenant_id, "salesforce", sync_frequency_minutes=60,
                       optional_objects=["activity"])
    tenants.save_credentials(
        engine, tenant_id, "salesforce",
        {"username": sandbox.username, "password": sandbox.password,  # type: ignore[attr-defined]
         "security_token": sandbox.security_token},  # type: ignore[attr-defined]
        {"sandbox_url": sandbox.url},  # type: ignore[attr-defined]
    )
    engine.dispose()


def _synced(stack: Stack, tenant_id: str) -> bool:
    runs = stack.runs(**{"dagster/partition": tenant_id, run_tags.TRIGGER: "first-sync"})
    return any(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)


def _assert_complete(warehouse_url: str, tenant_id: str, sandbox: object) -> None:
    engine = db.make_engine(warehouse_url)
    store = Warehouse(engine)
    counts = sandbox.sandbox.counts()  # type: ignore[attr-defined]
    assert store.count(tenant_id, "opportunity") == counts["Opportunity"]["live"]
    for name in COMMON_OBJECTS:
        assert store.duplicate_keys(tenant_id, name) == 0
        assert store.get_state(tenant_id, name) is not None
    engine.dispose()



def test_the_readme_names_every_worker_queue() -> None:
    """A worker started as the README says serves every CRM's and feed's sync runs."""
    queues = ",".join(run_tags.worker_queues())
    assert f"`{queues}`" in (REPO / "README.md").read_text()
    assert {"crm-push", "crm-file", run_tags.ANALYTICS_QUEUE} <= set(queues.split(","))

def test_instance_configs_keep_the_shared_rules(tmp_path: Path) -> None:
    """The production files repeat the local file's rules, except where they say they differ."""
    local = yaml.safe_load((REPO / "dagster.yaml").read_text())
    for name, allowed in (
        ("single-host.yaml", set()),
        ("celery.yaml", {("concurrency", "runs", "max_concurrent_runs"),
                         ("concurrency", "runs", "tag_concurrency_limits"),
                         ("run_monitoring", "max_resume_run_attempts")}),
    ):
        production = yaml.safe_load((DEPLOY / name).read_text())
        storage = production["storage"]["custom"]
        assert storage["class"] == "PooledPostgresStorage"
        assert storage["config"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
        differences = set()
        for section, value in local.items():
            if isinstance(value, dict):
                for key, sub in value.items():
                    if isinstance(sub, dict):
                        differences |= {(section, key, k) for k, v in sub.items()
                                        if production[section][key].get(k) != v}
                    elif production[section].get(key) != sub:
                        differences.add((section, key))
            elif production.get(section) != value:
                differences.add((section,))
        assert differences == allowed, name
    celery = yaml.safe_load((DEPLOY / "celery.yaml").read_text())
    assert celery["run_launcher"]["class"] == "ResumableCeleryRunLauncher"
    assert celery["run_monitoring"]["max_resume_run_attempts"] > 0


def test_single_host_config_runs_syncs_and_stores_events_in_postgres(
    stack_env: tuple[dict[str, str], str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    env, instance_url, warehouse_url = stack_env
    stack = _start_stack(env, "single-host.yaml", tmp_path, monkeypatch)
    sandbox = start_sandbox(tmp_path / "sf.db")
    try:
        _register(warehouse_url, "single-host-co", sandbox)
        stack.processes.start("daemon", [str(BIN / "dagster-daemon"), "run",
                                         "-w", str(REPO / "workspace.yaml")])
        wait_until(lambda: _synced(stack, "single-host-co"), SYNC_DEADLINE_S,
                   "the first sync through the daemon", interval=2, explain=stack.explain)
        run = next(r for r in stack.runs(**{"dagster/partition": "single-host-co"})
                   if r.status == dg.DagsterRunStatus.SUCCESS)
        engine = sa.create_engine(sa.make_url(instance_url).set(
            drivername="postgresql+psycopg2"))
        with engine.connect() as conn:
            events = conn.execute(sa.text(
                "SELECT count(*) FROM event_logs WHERE run_id = :r"), {"r": run.run_id}).scalar()
            materialized = conn.execute(sa.text(
                "SELECT count(*) FROM event_logs WHERE run_id = :r "
                "AND dagster_event_type = 'ASSET_MATERIALIZATION'"), {"r": run.run_id}).scalar()
        engine.dispose()
        assert events > 20 and materialized == len(COMMON_OBJECTS)
        _assert_complete(warehouse_url, "single-host-co", sandbox)
    finally:
        stack.processes.stop()
        stack.instance.dispose()
        sandbox.stop()
        assert not stack.processes.leftovers()


@pytest.fixture
def celery_services() -> Iterator[None]:
    if not (_answers(5672) and _answers(6379)):
        pytest.skip("needs RabbitMQ on 127.0.0.1:5672 and Redis on 127.0.0.1:6379 (.ci/run "
                    "starts them)")
    yield


def _purge(env: dict[str, str], queues: str) -> None:
    import subprocess

    subprocess.run([str(BIN / "celery"), "-A", "accrue_pipelines.platform.celery_app", "purge",
                    "-f", "-Q", queues], env=env, cwd=REPO, check=False, capture_output=True,
                   timeout=60)


def _celery_pool_pid(env: dict[str, str], task_id: str) -> int | None:
    """The pool process executing a Celery task (from the workers' own report)."""
    from accrue_pipelines.platform.celery_app import app

    active = app.control.inspect(timeout=2).active() or {}
    for tasks in active.values():
        for task in tasks:
            if task.get("id") == task_id:
                return int(task["worker_pid"])
    return None


def test_celery_workers_sync_two_tenants_and_resume_a_killed_run(
    stack_env: tuple[dict[str, str], str, str], celery_services: None, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env, _, warehouse_url = stack_env
    queues = f"{run_tags.crm_queue('salesforce')},{run_tags.ANALYTICS_QUEUE}"
    stack = _start_stack(env, "celery.yaml", tmp_path, monkeypatch)
    quick = start_sandbox(tmp_path / "quick.db")
    # Slow enough (about 20 s) to kill its worker mid-sync.
    slow = start_sandbox(tmp_path / "slow.db", page_size=20, faults={"latency_ms": 250})
    _purge(env, queues)
    try:
        for n in (1, 2):
            stack.processes.start(f"worker{n}", [
                str(BIN / "celery"), "-A", "accrue_pipelines.platform.celery_app", "worker",
                "-Q", queues, "-n", f"accrue-w{n}@%h", "-c", "1", "-l", "info"])
        _register(warehouse_url, "celery-quick", quick)
        _register(warehouse_url, "celery-slow", slow)
        stack.processes.start("daemon", [str(BIN / "dagster-daemon"), "run",
                                         "-w", str(REPO / "workspace.yaml")])

        def slow_started() -> dg.DagsterRun | None:
            return next((r for r in stack.runs(**{"dagster/partition": "celery-slow"})
                         if r.status == dg.DagsterRunStatus.STARTED
                         and "dagster-celery/task_id" in r.tags), None)

        started = wait_until(slow_started, SYNC_DEADLINE_S, "the slow tenant's run start",
                             interval=1, explain=stack.explain)
        assert isinstance(started, dg.DagsterRun)
        assert started.tags[run_tags.CELERY_QUEUE] == "crm-salesforce"
        pid = wait_until(lambda: _celery_pool_pid(env, started.tags["dagster-celery/task_id"]),
                         60, "the worker running the slow sync", interval=1)
        wait_until(lambda: Warehouse(db.make_engine(warehouse_url)).count(
            "celery-slow", "account"), 60, "the slow sync's first rows", interval=1)
        os.kill(int(pid), signal.SIGKILL)  # type: ignore[call-overload]

        wait_until(lambda: _synced(stack, "celery-quick") and _synced(stack, "celery-slow"),
                   SYNC_DEADLINE_S, "both tenants synced through the Celery workers",
                   interval=2, explain=stack.explain)
        resumed = stack.instance.get_run_by_id(started.run_id)
        messages = [e.message for e in stack.instance.all_logs(started.run_id)]
        assert any("Resuming run" in (m or "") for m in messages), messages[-20:]
        assert resumed is not None and resumed.status == dg.DagsterRunStatus.SUCCESS, (
            "\n".join(str(m) for m in messages[-30:]))
        for tenant_id, sandbox in (("celery-quick", quick), ("celery-slow", slow)):
            _assert_complete(warehouse_url, tenant_id, sandbox)

        from accrue_pipelines.platform.celery_app import app

        workers = set()
        for run in stack.runs(**{run_tags.TRIGGER: "first-sync"}):
            result = app.AsyncResult(run.tags["dagster-celery/task_id"])
            if result.state == "SUCCESS":
                workers.add(result.worker)
        assert workers and all(w.startswith("accrue-w") for w in workers)
    finally:
        stack.processes.stop()
        _purge(env, queues)
        stack.instance.dispose()
        quick.stop()
        slow.stop()
        assert not stack.processes.leftovers()
