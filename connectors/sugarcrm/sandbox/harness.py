"""`SugarHarness`: a seeded SugarCRM instance for the contract suite, chaos and the demo.

The writer changes records through our REST v11 client (`SugarClient`), as an
integration would, taking common-model fields; it signs in with a platform of its own
("accrue_writer"), so its session never ends the adapter's (Sugar keeps one per user and
platform).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from connectors.sandbox_kit.deal_model import build_world
from connectors.sandbox_kit.faults import split_counted
from connectors.sandbox_kit.harness import CrmWriter, RunningCrmSandbox, SandboxHarness
from connectors.sandbox_kit.server import BackgroundServer
from connectors.sugarcrm.client import Credentials, SugarClient
from connectors.sugarcrm.mapping import MODULES, modules_of
from connectors.sugarcrm.sandbox.seed import INTEGRATION_USER, seed_store
from connectors.sugarcrm.sandbox.server import FaultConfig, Settings, SugarApp
from connectors.sugarcrm.sandbox.store import SugarStore

INSTANCE_URL = "https://accrue-sandbox.sugarondemand.com"
PASSWORD = "Sandbox-Sugar-Pass-1"  # a made-up sandbox secret
WRONG_PASSWORD = "this-password-is-wrong"
PLATFORM, WRITER_PLATFORM = "accrue", "accrue_writer"
# Platforms every Sugar instance knows, and the ones this one's admin registered.
PLATFORMS = ("base", "mobile", "portal", PLATFORM, WRITER_PLATFORM)
# Common column -> Sugar field where the writer cannot take the mapping's (derived) one.
WRITE_FIELDS = {"user": {"name": "last_name"}}


def _sugar_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


class SugarWriter(CrmWriter):
    """Writes through `SugarClient`, translating common-model fields into Sugar's."""

    def __init__(self, client: SugarClient, app: SugarApp) -> None:
        self.client = client
        self.app = app

    def _body(self, object_name: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        names = {column: field for column, (field, _) in MODULES[object_name].fields.items()}
        names.update(WRITE_FIELDS.get(object_name, {}))
        body = {}
        for column, value in fields.items():
            if column not in names or column == "source_created_at":
                raise ValueError(f"SugarCRM's {MODULES[object_name].name} cannot take "
                                 f"{column!r} here")
            field = names[column]
            if field in ("employees", "annual_revenue") and value is not None:
                value = str(value)
            body[field] = _sugar_value(value)
        return body

    def create(self, object_name: str, fields: Mapping[str, Any]) -> str:
        created = self.client.create(MODULES[object_name].name, self._body(object_name, fields))
        return str(created["id"])

    def update(self, object_name: str, source_id: str, fields: Mapping[str, Any]) -> None:
        self.client.update(MODULES[object_name].name, source_id,
                           self._body(object_name, fields))

    def delete(self, object_name: str, source_id: str) -> None:
        self.client.delete(MODULES[object_name].name, source_id)

    def write_raw(self, object_name: str, source_id: str, payload: Mapping[str, Any]) -> None:
        """Store values as they are, unchecked; a common column stands for its Sugar field."""
        module = MODULES[object_name]
        self.app.writes.raw(module.name, source_id, {
            module.fields[k][0] if k in module.fields else k: v for k, v in payload.items()})


@dataclass
class RunningSugarSandbox(RunningCrmSandbox):
    store: SugarStore
    app: SugarApp
    server: BackgroundServer
    page_size: int | None = None

    def __post_init__(self) -> None:
        self.url = self.server.url

    def connection(self) -> tuple[dict[str, str], dict[str, Any]]:
        return connection_at(self.url, self.page_size)

    def bad_connection(self) -> tuple[dict[str, str], dict[str, Any]]:
        _, config = self.connection()
        return {"password": WRONG_PASSWORD}, config

    def writer(self) -> SugarWriter:
        client = SugarClient(INSTANCE_URL, Credentials(INTEGRATION_USER, PASSWORD,
                                                       platform=WRITER_PLATFORM),
                             sandbox_url=self.url, timeout=30.0, max_attempts=3,
                             max_backoff=2.0)
        return SugarWriter(client, self.app)

    def set_faults(self, switches: Mapping[str, Any]) -> None:
        """The kit's switches plus `fail_next` / `throttle_next`; `{}` clears them all. A bad
        switch raises `FaultConfigError` (a ValueError) and changes nothing."""
        self.app.set_faults(switches)

    def fault_counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.app.planner.state()["injected"].items()}

    def live_count(self, object_name: str) -> int:
        if object_name != "activity" and object_name not in MODULES:
            return 0
        return sum(self.store.count(m.name) for m in modules_of(object_name))

    def stop(self) -> None:
        self.server.stop()
        self.store.close()


def connection_at(url: str, page_size: int | None = None
                  ) -> tuple[dict[str, str], dict[str, Any]]:
    config: dict[str, Any] = {"auth": "password", "instance_url": INSTANCE_URL,
                              "username": INTEGRATION_USER, "client_id": "sugar",
                              "platform": PLATFORM, "sandbox_url": url}
    if page_size:
        config["page_size"] = page_size
    return {"password": PASSWORD}, config


class SugarHarness(SandboxHarness):
    def connection_at(self, url: str) -> tuple[dict[str, str], dict[str, Any]]:
        return connection_at(url)

    def start(self, path: Path, *, opportunities: int, seed: int = 7,
              page_size: int | None = None, clock: Callable[[], datetime] | None = None,
              faults: Mapping[str, Any] | None = None, host: str = "127.0.0.1", port: int = 0,
              settings: Settings | None = None) -> RunningSugarSandbox:
        """`settings` (access-token lifetime, the user's time zone, `max_num`) let tests
        reach Sugar's limits; `faults` are checked before anything is made."""
        if faults:
            split_counted(faults, FaultConfig)
        store = SugarStore(path, clock)
        if store.is_empty():
            anchor = store.clock().astimezone(UTC).replace(hour=0, minute=0, second=0,
                                                           microsecond=0)
            seed_store(store, build_world(opportunities, seed, anchor=anchor))
        admin = store.query("SELECT id FROM record WHERE module = 'Users' AND "
                            "json_extract(body, '$.user_name') = ?", (INTEGRATION_USER,))
        store.set_password(INTEGRATION_USER, str(admin[0][0]), PASSWORD)
        store.add_client("sugar", "")
        store.add_platforms(PLATFORMS)
        app = SugarApp(store, settings)
        if faults:
            app.set_faults(faults)
        server = BackgroundServer(app, host, port, name="sugarcrm-sandbox")
        return RunningSugarSandbox(store, app, server, page_size)
