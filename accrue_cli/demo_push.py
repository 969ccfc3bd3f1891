"""The demo's C2CRM-like tenant: a CRM without an API, fed by the push agent.

`make demo` runs it beside the CRM tenants: a local SQLite database in the CRM's own words
(`connectors.sandbox_kit.agent_db`, from the same deal world as the sandboxes), a push
tenant with its credentials, and `accrue-agent` started as one of the demo's processes,
pushing the database's changes into the demo's concierge every few seconds, as a
customer would run it on their own server. A thread plays the CRM's users (a change now
and then), so the incremental pushes show. The pipelines apply the pushed batches (the
sync sensor requests a push tenant's sync when batches wait) and price its deals like the
others'. Everything lives in `<ACCRUE_HOME>/c2crm-demo/`; the secret in a 0600 file.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue import tenants
from accrue.push import PUSH_CRM_TYPE, credentials

TENANT_ID = "stark-demo"
TENANT_NAME = "Stark Trading (C2CRM via push agent)"
OPPORTUNITIES = 600
MIN_OPPORTUNITIES = 10
PUSH_EVERY_SECONDS = 10
CHANGE_EVERY_SECONDS = 20  # how often the demo's "C2CRM users" change something


@dataclass
class PushDemo:
    """Prepare the source and the tenant; the agent's command; milestones to print."""

    home: Path
    scale: float
    data: bool = False
    recommendations: bool = False
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def folder(self) -> Path:
        return self.home / "c2crm-demo"

    @property
    def database(self) -> Path:
        return self.folder / "c2crm.db"

    @property
    def config(self) -> Path:
        return self.folder / "agent.toml"

    def prepare(self, engine: Engine, concierge_url: str) -> str:
        """Build the database (once), register the tenant and its secret (once), write the
        mapping file for this run's concierge URL; the line the demo prints."""
        from connectors.sandbox_kit import agent_db

        self.folder.mkdir(parents=True, exist_ok=True)
        count = max(MIN_OPPORTUNITIES, math.ceil(OPPORTUNITIES * self.scale))
        if not self.database.exists():
            agent_db.build(f"sqlite:///{self.database}", count, seed=count).dispose()
        secret_file = self.folder / "push.secret"
        if tenants.get_tenant(engine, TENANT_ID) is None:
            tenants.add_tenant(engine, TENANT_ID, TENANT_NAME, PUSH_CRM_TYPE)
            secret_file.unlink(missing_ok=True)
        if not secret_file.exists():
            issued = credentials.issue_secret(engine, TENANT_ID)
            secret_file.touch(mode=0o600)
            secret_file.write_text(issued.secret + "\n")
            (self.folder / "client_id").write_text(issued.client_id + "\n")
        client_id = (self.folder / "client_id").read_text().strip()
        self.config.write_text(agent_db.mapping_toml(
            url=concierge_url, tenant=TENANT_ID, client_id=client_id,
            secret_file=secret_file.name, database_url=f"sqlite:///{self.database}"))
        return (f"{TENANT_ID}: a C2CRM-like database ({self.database}, {count} deals) pushed "
                f"by accrue-agent (mapping {self.config}) to {concierge_url}/v1/push/"
                f"{TENANT_ID}/records every {PUSH_EVERY_SECONDS} s")

    def agent_args(self) -> list[str]:
        return [sys.executable, "-m", "accrue.agent.cli", "run", "--config", str(self.config),
                "--every", str(PUSH_EVERY_SECONDS)]

    def start_users(self) -> None:
        """The CRM's users: a change every CHANGE_EVERY_SECONDS, until the demo stops."""
        from connectors.sandbox_kit import agent_db

        mutator = agent_db.Mutator(sa.create_engine(f"sqlite:///{self.database}"), seed=7)

        def work() -> None:
            while not self.stop.wait(CHANGE_EVERY_SECONDS):
                with contextlib.suppress(sa.exc.OperationalError):  # the agent reading
                    mutator.step()

        threading.Thread(target=work, name="c2crm-users", daemon=True).start()

    def poll(self, engine: Engine, say: Callable[[str], None], elapsed: str) -> None:
        """Print the tenant's first data and first recommendations, once each."""
        with contextlib.suppress(sa.exc.OperationalError):  # SQLite busy: the next poll
            self._poll(engine, say, elapsed)

    def _poll(self, engine: Engine, say: Callable[[str], None], elapsed: str) -> None:
        from accrue.warehouse import Warehouse
        from accrue_cli.demo_orgs import recommendation_count

        if not self.data:
            rows = Warehouse(engine).summary(TENANT_ID, ["opportunity"])
            live = sum(row["live_rows"] for row in rows)
            if live:
                self.data = True
                say(f"{TENANT_ID}: first data in after {elapsed} ({live:,} deals pushed by "
                    "the agent)")
        if self.data and not self.recommendations:
            priced = recommendation_count(engine, TENANT_ID)
            if priced:
                self.recommendations = True
                say(f"{TENANT_ID}: first price recommendations after {elapsed} ({priced:,} "
                    "open deals priced)")

    def missing(self) -> list[str]:
        if self.recommendations:
            return []
        return [f"{TENANT_ID} has no {'recommendations' if self.data else 'data'} yet"]
