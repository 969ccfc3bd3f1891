"""`make demo`: the whole system on embedded defaults, with two seeded tenants.

Starts one Salesforce sandbox per demo tenant, registers the tenants through
the same registry the concierge uses, then starts Dagster (webserver and
daemon) and the concierge. The tenant sensors add the partitions and launch
the first syncs by themselves: nobody has to click anything.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from accrue import config, db, tenants

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DemoTenant:
    tenant_id: str
    name: str
    port: int
    opportunities: int


DEMO_TENANTS = (
    DemoTenant("acme-demo", "Acme Industrial (demo)", 8701, 2000),
    DemoTenant("globex-demo", "Globex Software (demo)", 8702, 1200),
)
# A third org, for an admin who signs up in the concierge during the demo.
CONCIERGE_SANDBOX = DemoTenant("new-signup", "Org for a new sign-up", 8703, 800)
SANDBOX_CREDENTIALS = {
    "username": "admin@sandbox.accrue.local",
    "password": "sandbox-password",
    "security_token": "SANDBOXTOKEN",
}


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _require_free(port: int, what: str, env: str) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(
                f"port {port} for {what} is already in use: stop what runs there "
                f"or choose another port with {env}=..."
            )


def _wait_http(url: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{what} did not come up at {url} within {timeout:.0f}s; see .accrue/logs/")


def ensure_demo_keys() -> None:
    """Use ACCRUE_SECRET_KEYS, or create a local key file for the demo (with a warning)."""
    if os.environ.get("ACCRUE_SECRET_KEYS"):
        return
    key_file = config.accrue_home() / "secret_keys"
    if not key_file.exists():
        from accrue import crypto

        key_file.write_text(crypto.generate_key() + "\n")
        key_file.chmod(0o600)
    print(
        f"WARNING: demo encryption key in {key_file}; production sets ACCRUE_SECRET_KEYS",
        file=sys.stderr,
    )


def register_demo_tenants(engine: object, ports: dict[str, int]) -> None:
    for demo in DEMO_TENANTS:
        if tenants.get_tenant(engine, demo.tenant_id) is None:
            tenants.add_tenant(
                engine, demo.tenant_id, demo.name, "salesforce", sync_frequency_minutes=5
            )
        tenants.save_credentials(
            engine,
            demo.tenant_id,
            "salesforce",
            SANDBOX_CREDENTIALS,
            {"domain": "login", "sandbox_url": f"http://127.0.0.1:{ports[demo.tenant_id]}"},
        )


def _synced(engine: object) -> bool:
    from accrue.warehouse import Warehouse
    from connectors.common_model import COMMON_OBJECTS

    store = Warehouse(engine)
    for demo in DEMO_TENANTS:
        for object_name in COMMON_OBJECTS:
            if store.get_state(demo.tenant_id, object_name) is None:
                return False
        # The downstream summary proves the automation chain ran too.
        if not any(row["live_rows"] for row in store.read_summary(demo.tenant_id)):
            return False
    return True


def run_demo(*, check: bool = False, timeout: int = 600) -> int:
    from accrue_pipelines.launch import ensure_dagster_home

    home = config.accrue_home()
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ensure_demo_keys()
    engine = db.make_engine()
    db.upgrade(engine)

    dagster_port = _port("ACCRUE_DAGSTER_PORT", 3000)
    app_port = _port("ACCRUE_APP_PORT", 5050)
    orgs = (*DEMO_TENANTS, CONCIERGE_SANDBOX)
    ports = {
        d.tenant_id: _port(f"ACCRUE_SANDBOX_PORT_{i}", d.port)
        for i, d in enumerate(orgs, start=1)
    }
    _require_free(dagster_port, "Dagster", "ACCRUE_DAGSTER_PORT")
    _require_free(app_port, "the concierge", "ACCRUE_APP_PORT")
    for i, demo in enumerate(orgs, start=1):
        _require_free(
            ports[demo.tenant_id], f"the {demo.tenant_id} sandbox", f"ACCRUE_SANDBOX_PORT_{i}"
        )

    env = {**os.environ, "DAGSTER_HOME": str(ensure_dagster_home())}
    if not env.get("ACCRUE_SECRET_KEYS"):  # children read the demo key once, quietly
        env["ACCRUE_SECRET_KEYS"] = (home / "secret_keys").read_text().strip()
    concierge_org = f"http://127.0.0.1:{ports[CONCIERGE_SANDBOX.tenant_id]}"
    # The concierge may contact this local org (OAuth and test connection); plain-http
    # cookies for the local browser.
    env.setdefault("ACCRUE_SALESFORCE_SANDBOX_URL", concierge_org)
    env.setdefault("ACCRUE_APP_ENV", "development")
    children: list[subprocess.Popen[bytes]] = []

    def start(name: str, args: list[str]) -> None:
        out = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
        children.append(
            subprocess.Popen(
                args,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    python = sys.executable
    try:
        for demo in orgs:
            port = ports[demo.tenant_id]
            start(
                f"sandbox-{demo.tenant_id}",
                [
                    python,
                    "-m",
                    "accrue.cli",
                    "sandbox",
                    "salesforce",
                    "--port",
                    str(port),
                    "--seed",
                    str(demo.opportunities),
                    "--state",
                    str(home / f"sandbox-{demo.tenant_id}.db"),
                ],
            )
        for demo in orgs:
            _wait_http(
                f"http://127.0.0.1:{ports[demo.tenant_id]}/_sandbox/health",
                180,
                f"the {demo.tenant_id} sandbox",
            )
        register_demo_tenants(engine, ports)
        dagster = shutil.which("dagster", path=str(Path(python).parent)) or "dagster"
        start(
            "dagster",
            [
                dagster,
                "dev",
                "-w",
                str(REPO / "workspace.yaml"),
                "-h",
                "127.0.0.1",
                "-p",
                str(dagster_port),
            ],
        )
        start("concierge", [python, "-m", "accrue.cli", "app", "--port", str(app_port)])
        _wait_http(f"http://127.0.0.1:{app_port}/healthz", 60, "the concierge")
        _wait_http(f"http://127.0.0.1:{dagster_port}/server_info", 180, "Dagster")
        print(
            f"""
Accrue demo is running (logs in {logs}):
  Dagster UI            http://127.0.0.1:{dagster_port}
  Concierge             http://127.0.0.1:{app_port}
  Salesforce sandboxes  {", ".join(f"{t}: http://127.0.0.1:{p}" for t, p in ports.items())}
  Warehouse             {config.database_url()}
To try the concierge, sign up and connect the new-signup org ("Connect with Salesforce",
or the legacy form: {SANDBOX_CREDENTIALS["username"]} / {SANDBOX_CREDENTIALS["password"]} /
token {SANDBOX_CREDENTIALS["security_token"]}).
The tenant sensors add both demo tenants and start their first syncs within a minute.
Press Ctrl-C to stop.""",
            flush=True,
        )
        deadline = time.monotonic() + timeout
        reported = False
        while True:
            if any(child.poll() is not None for child in children):
                print("a demo process exited; see the logs above", file=sys.stderr)
                return 1
            if not reported and _synced(engine):
                reported = True
                print("Both demo tenants are synced into the warehouse and summarized.", flush=True)
                if check:
                    return 0
            if check and time.monotonic() > deadline:
                print(f"demo tenants not synced within {timeout}s", file=sys.stderr)
                return 1
            time.sleep(2)
    except KeyboardInterrupt:
        return 0
    finally:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
