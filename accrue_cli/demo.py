"""`make demo`: the whole system on embedded defaults, one seeded tenant per CRM.

Starts a sandbox org per demo tenant (one tenant on each registered CRM) and one org per
CRM for an admin who signs up during the demo, registers the tenants through the same
registry the concierge uses, then starts Dagster (webserver and daemon) and the concierge.
The sensors add the partitions and launch the first syncs: nobody clicks anything, and the
demo prints when each tenant's first data and first price recommendations are in. Ctrl-C,
SIGTERM and SIGHUP stop every process it started, descendants included, freeing every port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psutil
import requests
from sqlalchemy.engine import Engine

from accrue import config, db
from accrue_cli.demo_orgs import (
    DEMO_SYNC_FREQUENCY_MINUTES,
    DEMO_TENANTS,
    MIN_OPPORTUNITIES,
    ORGS,
    SIGNUP_ORGS,
    opportunities_scale,
    recommendation_count,
    register_demo_tenants,
    signup_logins,
    tenant_data,
)
from accrue_cli.demo_push import PushDemo
from accrue_cli.demo_signals import DemoStopped, StopSignals
from accrue_cli.localstack import LocalStack, log_tail

REPO = Path(__file__).resolve().parents[1]
POLL_S = 2.0
LOCATIONS_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


# -- helpers --------------------------------------------------------------------------------


def _say(text: str, *, err: bool = False) -> None:
    """Print and flush; a closed terminal (SIGHUP) or pipe must not break the shutdown."""
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr if err else sys.stdout, flush=True)


def _elapsed(seconds: float) -> str:
    total = round(seconds)
    return f"{total} s" if total < 60 else f"{total // 60} min {total % 60} s"


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip() or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"{name}={raw!r} is not a port number: set it to e.g. {default}")
    return int(raw)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0



def ensure_demo_keys() -> None:
    """Use ACCRUE_SECRET_KEYS, or create a local key file for the demo (with a warning)."""
    if os.environ.get("ACCRUE_SECRET_KEYS"):
        return
    key_file = config.accrue_home() / "secret_keys"
    if not key_file.exists():
        from accrue import crypto

        key_file.write_text(crypto.generate_key() + "\n")
        key_file.chmod(0o600)
    _say(f"WARNING: demo encryption key in {key_file}; production sets ACCRUE_SECRET_KEYS",
         err=True)



def prepare_dagster_instance() -> None:
    """Create the Dagster instance's storage once, before the webserver and the daemon start.

    Started together on a fresh DAGSTER_HOME, both would stamp the SQLite schema at the same
    time ("alembic_version has more than one head") and their code servers would not load.
    """
    import dagster as dg

    dg.DagsterInstance.get().dispose()


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


def _code_loaded(dagster_url: str) -> bool:
    """True once Dagster loaded the pipelines' code; a load error stops the demo at once."""
    try:
        reply = requests.post(f"{dagster_url}/graphql", json={"query": LOCATIONS_QUERY}, timeout=5)
        entries = reply.json()["data"]["workspaceOrError"]["locationEntries"]
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return False
    if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
        return False
    errors = [f"{e['name']}: {e['locationOrLoadError'].get('message', '')}" for e in entries
              if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"]
    if errors:
        raise SystemExit("Dagster could not load the pipelines' code; fix it and start the demo "
                         "again:\n" + "\n".join(errors))
    return True


def _executable(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found next to {sys.executable}: run `make install`")
    return found


# -- the demo ---------------------------------------------------------------------------


@dataclass
class _Milestones:
    """Which demo tenants have their first data and first recommendations in."""

    data: set[str] = field(default_factory=set)
    recommendations: set[str] = field(default_factory=set)
    earlier: list[str] = field(default_factory=list)  # done by an earlier demo in this home

    def missing(self) -> list[str]:
        return [
            f"{d.tenant_id} has no {'recommendations' if d.tenant_id in self.data else 'data'} yet"
            for d in DEMO_TENANTS if d.tenant_id not in self.recommendations
        ]


class Demo:
    """The demo's processes and progress; `stop()` always leaves nothing running."""

    def __init__(self, signals: StopSignals) -> None:
        # Timings count from the process start (`make demo`), imports included.
        self.started = time.monotonic() - (time.time() - psutil.Process().create_time())
        self.signals = signals
        self.home = config.accrue_home()
        self.logs = self.home / "logs"
        self.stack: LocalStack | None = None
        self.ports: dict[str, int] = {}
        self.milestones = _Milestones()
        self.push = PushDemo(self.home, 1.0)  # the C2CRM-like tenant fed by accrue-agent

    def elapsed(self) -> str:
        return _elapsed(time.monotonic() - self.started)

    def start(self, name: str, args: list[str]) -> None:
        assert self.stack is not None, "configure() first"
        with self.signals.held():  # a child started is a child recorded (and stopped)
            self.stack.start(name, args)

    def check_children(self) -> None:
        for name, code in (self.stack.exited() if self.stack else {}).items():
            path = self.stack.log_path(name)  # type: ignore[union-attr]
            tail = "\n".join(f"  | {line}" for line in log_tail(path, 12).splitlines())
            raise SystemExit(f"{name} exited unexpectedly (exit code {code}); last lines of "
                             f"{path}:\n{tail}")

    def wait_for(self, probe: Callable[[], bool], timeout: float, failure: str) -> None:
        """Poll until `probe()` holds, failing fast (with its log) when a child dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_children()
            if probe():
                return
            time.sleep(0.5)
        raise SystemExit(f"{failure} within {timeout:.0f} s; see the logs in {self.logs}")

    def poll_milestones(self, engine: Engine) -> None:
        """Print each tenant's first data and first recommendations, once, as they arrive."""
        import sqlalchemy as sa

        for demo in DEMO_TENANTS:
            tid = demo.tenant_id
            try:
                if tid not in self.milestones.data and (found := tenant_data(engine, tid)):
                    objects, records = found
                    self.milestones.data.add(tid)
                    _say(f"{tid}: first data in after {self.elapsed()} "
                         f"({objects} objects, {records:,} records)")
                if tid in self.milestones.data and tid not in self.milestones.recommendations:
                    priced = recommendation_count(engine, tid)
                    if priced:
                        self.milestones.recommendations.add(tid)
                        _say(f"{tid}: first price recommendations after {self.elapsed()} "
                             f"({priced:,} open deals priced)")
            except sa.exc.OperationalError:
                return  # the warehouse is busy (SQLite); look again at the next poll
        self.push.poll(engine, _say, self.elapsed())

    def stop(self, reason: str) -> None:
        """Stop every process started, with all descendants; say which ports are free again."""
        self.signals.stopping = True
        if self.stack is None or not self.stack.children:
            if reason != "error":
                _say(f"Demo stopped ({reason}) before it started any process.")
            return
        _say(f"Stopping the demo ({reason})...")
        stopped = self.stack.stop()
        busy = [port for port in self.ports.values() if _listening(port)]
        if busy:
            _say(f"WARNING: ports {', '.join(map(str, busy))} are still in use; "
                 "find what holds them with `ss -ltnp` and stop it", err=True)
        else:
            ports = ", ".join(str(p) for p in sorted(self.ports.values()))
            _say(f"Demo stopped: {stopped} processes ended, ports {ports} are free.")

    def configure(self) -> dict[str, str]:
        """Ports (each checked free) and the children's environment; the sandboxes' URLs."""
        from accrue_pipelines.platform.launch import ensure_dagster_home
        from connectors import registry

        wanted = [("dagster", "ACCRUE_DAGSTER_PORT", 3000, "Dagster"),
                  ("concierge", "ACCRUE_APP_PORT", 5050, "the concierge"),
                  ("mail-smtp", "ACCRUE_MAIL_SMTP_PORT", 1025, "the demo's mail server"),
                  ("mail", "ACCRUE_MAIL_PORT", 8025, "the demo inbox")]
        wanted += [(d.tenant_id, f"ACCRUE_SANDBOX_PORT_{i}", d.port, f"the {d.tenant_id} sandbox")
                   for i, d in enumerate(ORGS, start=1)]
        for key, env_name, default, what in wanted:
            self.ports[key] = port = _port(env_name, default)
            if _listening(port):
                raise SystemExit(f"port {port} for {what} is already in use: stop what runs "
                                 f"there or choose another port with {env_name}=...")
        if not os.environ.get("ACCRUE_SECRET_KEYS"):  # read the demo key once, quietly
            os.environ["ACCRUE_SECRET_KEYS"] = (self.home / "secret_keys").read_text().strip()
        urls = {d.tenant_id: f"http://127.0.0.1:{self.ports[d.tenant_id]}" for d in ORGS}
        env = {**os.environ, "DAGSTER_HOME": str(ensure_dagster_home()),
               "ACCRUE_HOME": str(self.home)}
        # The concierge may contact this local org (OAuth and test connection); plain-http
        # cookies for the local browser.
        for org in SIGNUP_ORGS:
            env.setdefault(registry.spec(org.crm_type).sandbox_url_env, urls[org.tenant_id])
        env.setdefault("ACCRUE_APP_ENV", "development")
        # Every e-mail goes to the demo's own mail sink, whatever the shell has configured:
        # nothing leaves the machine.
        env.update(ACCRUE_SMTP_HOST="127.0.0.1", ACCRUE_SMTP_PORT=str(self.ports["mail-smtp"]),
                   ACCRUE_SMTP_STARTTLS="", ACCRUE_SMTP_SSL="", ACCRUE_SMTP_USERNAME="",
                   ACCRUE_SMTP_PASSWORD="")
        self.stack = LocalStack(self.logs, env=env, cwd=REPO)
        return urls

    def run(self, *, check: bool, timeout: int) -> int:
        scale = opportunities_scale()
        self.logs.mkdir(parents=True, exist_ok=True)
        ensure_demo_keys()
        engine = db.make_engine()
        db.upgrade(engine)
        urls = self.configure()
        python = sys.executable
        for demo in ORGS:
            count = max(MIN_OPPORTUNITIES, round(demo.opportunities * scale))
            self.start(f"sandbox-{demo.tenant_id}", [
                python, "-m", "accrue_cli", "sandbox", demo.crm_type,
                "--opportunities", str(count), "--seed", str(count),
                "--port", str(self.ports[demo.tenant_id]),
                "--state", str(self.home / f"sandbox-{demo.tenant_id}.db")])
        self.start("mail-sink", [python, "-m", "accrue_cli", "mail-sink",
                                 "--smtp-port", str(self.ports["mail-smtp"]),
                                 "--http-port", str(self.ports["mail"]),
                                 "--maildir", str(self.home / "mail")])
        for demo in ORGS:
            url = f"{urls[demo.tenant_id]}/_sandbox/health"
            self.wait_for(partial(_http_ok, url), 180, f"the {demo.tenant_id} sandbox "
                          f"did not answer at {url}")
        register_demo_tenants(engine, self.ports)
        for demo in DEMO_TENANTS:  # an earlier demo in this ACCRUE_HOME may have done the work
            if tenant_data(engine, demo.tenant_id):
                self.milestones.data.add(demo.tenant_id)
                self.milestones.earlier.append(demo.tenant_id)
                if recommendation_count(engine, demo.tenant_id):
                    self.milestones.recommendations.add(demo.tenant_id)

        # Webserver and daemon as two processes, as in production: no `dagster dev` layer
        # (nor its "superseded" warning) between the demo and the processes it must stop.
        prepare_dagster_instance()
        workspace = str(REPO / "workspace.yaml")
        self.start("dagster-webserver", [_executable("dagster-webserver"), "-w", workspace,
                                         "-h", "127.0.0.1", "-p", str(self.ports["dagster"])])
        self.start("dagster-daemon", [_executable("dagster-daemon"), "run", "-w", workspace])
        self.start("concierge", [python, "-m", "accrue_cli", "app",
                                 "--port", str(self.ports["concierge"])])
        concierge = f"http://127.0.0.1:{self.ports['concierge']}"
        dagster = f"http://127.0.0.1:{self.ports['dagster']}"
        inbox = f"http://127.0.0.1:{self.ports['mail']}"
        self.wait_for(lambda: _http_ok(f"{inbox}/messages.json"), 60,
                      f"the demo inbox did not answer at {inbox}")
        self.wait_for(lambda: _http_ok(f"{concierge}/healthz"), 60,
                      f"the concierge did not answer at {concierge}")
        self.push = PushDemo(self.home, scale)
        pushed_by_agent = self.push.prepare(engine, concierge)
        self.start("push-agent", self.push.agent_args())
        self.push.start_users()
        self.wait_for(lambda: _http_ok(f"{dagster}/server_info"), 180,
                      f"Dagster did not answer at {dagster}")
        self.wait_for(lambda: _code_loaded(dagster), 180, "Dagster did not load the pipelines")
        _say(f"""
Accrue demo is running after {self.elapsed()} (logs in {self.logs}):
  Dagster UI            {dagster}
  Concierge             {concierge}
  Demo inbox            {inbox}   (every e-mail the demo sends: sign-up links, first data)
  Sandboxes             {", ".join(f"{t}: {u}" for t, u in urls.items())}
  Warehouse             {config.database_url()}
To try the concierge, sign up (the confirmation link arrives in the demo inbox) and
connect your CRM's sign-up org; the details to type (made up, for the sandboxes only):
{signup_logins(urls)}
{pushed_by_agent}
The sensors start every demo tenant's first sync within a minute, then sync them every
{DEMO_SYNC_FREQUENCY_MINUTES} minutes; their first data and price recommendations show here.
Press Ctrl-C to stop.""")
        if self.milestones.earlier:
            _say(f"{', '.join(self.milestones.earlier)}: data already in the warehouse "
                 "from an earlier demo")
        return self.watch(engine, check=check, deadline=self.started + timeout)

    def watch(self, engine: Engine, *, check: bool, deadline: float) -> int:
        """Report milestones until stopped; with `check`, until both tenants are done."""
        announced = False
        while True:
            self.check_children()
            self.poll_milestones(engine)
            if not announced and not self.milestones.missing() + self.push.missing():
                announced = True
                _say(f"Every demo tenant has data and price recommendations ({self.elapsed()}).")
                if check:
                    return 0
            if check and time.monotonic() > deadline:
                missing = self.milestones.missing() + self.push.missing()
                _say(f"demo check failed after {self.elapsed()}: "
                     f"{'; '.join(missing)}. See {self.logs}/dagster-daemon.log "
                     "and the runs in the Dagster UI.", err=True)
                return 1
            time.sleep(POLL_S)


def run_demo(*, check: bool = False, timeout: int = 600) -> int:
    """Run the demo until stopped (or, with `check`, until both tenants have recommendations)."""
    signals = StopSignals()
    signals.install()
    demo: Demo | None = None
    reason = "error"
    try:
        demo = Demo(signals)
        code = demo.run(check=check, timeout=timeout)
        reason = "check passed" if code == 0 else "check failed"
        return code
    except KeyboardInterrupt as exc:
        reason = exc.describe() if isinstance(exc, DemoStopped) else "Ctrl-C"
        if check:
            _say("demo check stopped before both tenants had recommendations", err=True)
            return 1
        return 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            _say(exc.code, err=True)
            return 1
        raise
    finally:
        signals.stopping = True
        try:
            if demo is not None:
                demo.stop(reason)
        finally:
            signals.restore()
