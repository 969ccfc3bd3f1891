"""What every CRM's sandbox offers the shared tests, benchmarks and the demo.

A CRM package names its harness in its spec (`ConnectorSpec.sandbox`). With it the
contract suite, `make chaos` and `accrue demo` start a seeded org of that CRM, get the
connection a tenant would store, and change records through the CRM's *real* client
(simple-salesforce, closeio_api, the NetSuite record service...), exactly as a seller
would — so a connector passes the suite by registering, with no new test code.

Values given to and returned by a writer are in the common model's words
(`connectors.common_model`): `create("opportunity", {"name": ..., "amount": 100.0,
"stage": ..., "close_date": date(...), "account_id": <source id>})`. References hold
the CRM's own ids (the `source_id`s the adapter emits).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from .server import ServedSandbox


class CrmWriter(ABC):
    """Creates, changes and deletes records through the CRM's own client and API."""

    @abstractmethod
    def create(self, object_name: str, fields: Mapping[str, Any]) -> str:
        """Create a record; returns its source id (what the adapter will emit)."""

    @abstractmethod
    def update(self, object_name: str, source_id: str, fields: Mapping[str, Any]) -> None:
        """Change fields; the CRM moves the record's modification stamp forward."""

    @abstractmethod
    def delete(self, object_name: str, source_id: str) -> None:
        """Delete as the CRM does; the delete shows up where that CRM reports deletes."""

    def write_raw(self, object_name: str, source_id: str, payload: Mapping[str, Any]) -> None:
        """Store wrong-typed values as they are, past the CRM's validation (bad-value tests;
        optional): keys are common column names, written to the CRM field that feeds each."""
        raise NotImplementedError


class RunningCrmSandbox(ABC):
    """A seeded org served on 127.0.0.1 from a background thread."""

    url: str

    @abstractmethod
    def connection(self) -> tuple[dict[str, str], dict[str, Any]]:
        """(secrets, config) a tenant connected to this org stores; config names the URL."""

    @abstractmethod
    def bad_connection(self) -> tuple[dict[str, str], dict[str, Any]]:
        """The same with a wrong secret: `check()` must say so and never raise."""

    @abstractmethod
    def writer(self) -> CrmWriter:
        """A writer using the CRM's real client, logged in as the integration user."""

    @abstractmethod
    def set_faults(self, switches: Mapping[str, Any]) -> None:
        """Turn the kit's fault switches on (5xx, 429, expiry, drops, late commits); {} clears."""

    @abstractmethod
    def fault_counts(self) -> dict[str, int]:
        """Faults injected since the switches were last set, by kind (the kit's
        `INJECTED_KINDS`): chaos runs show that faults really happened."""

    @abstractmethod
    def live_count(self, object_name: str) -> int:
        """How many live records of a common object the org holds (ground truth)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop serving and close the state file."""

    def __enter__(self) -> RunningCrmSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


ServedT = TypeVar("ServedT", bound=ServedSandbox[Any, Any])


class ServedCrmSandbox(RunningCrmSandbox, Generic[ServedT]):
    """A running sandbox over the kit's `ServedSandbox`: its faults, their counts and its
    stop are the served app's and store's, the same for every CRM served that way; the CRM
    adds the connection, the writer and the ground truth."""

    def __init__(self, served: ServedT, page_size: int | None) -> None:
        self.served = served
        self.url = served.url
        self.page_size = page_size

    def set_faults(self, switches: Mapping[str, Any]) -> None:
        """The kit's switches (the CRM's `FaultConfig`: 5xx, 429, quota, session expiry,
        latency, drops, late commits) plus `fail_next` / `throttle_next`; `{}` clears them
        all. An unknown or bad switch raises `FaultConfigError` (a ValueError) and changes
        nothing."""
        self.served.app.set_faults(switches)

    def fault_counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.served.app.planner.state()["injected"].items()}

    def stop(self) -> None:
        self.served.stop()


class SandboxHarness(ABC):
    """Starts sandboxes of one CRM.

    Every sandbox answers `GET /_sandbox/health` with 200 once it serves (the demo and
    the benchmarks wait on it), whichever CRM it speaks.
    """

    def connection_at(self, url: str) -> tuple[dict[str, str], dict[str, Any]]:
        """(secrets, config) for a sandbox of this CRM served at `url` by another process
        (`accrue sandbox <crm>`) with its default credentials: what the demo registers."""
        raise NotImplementedError

    @abstractmethod
    def start(
        self,
        path: Path,
        *,
        opportunities: int,
        seed: int = 7,
        page_size: int | None = None,
        clock: Callable[[], datetime] | None = None,
        faults: Mapping[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> RunningCrmSandbox:
        """A sandbox whose state lives at `path`, seeded (when empty) with `opportunities`
        deals from the kit's shared deal model; `page_size` small makes tests page;
        `clock` lets tests move the org's time instead of sleeping; port 0 picks a free
        one."""

    def serve(self, path: Path, *, opportunities: int, seed: int, host: str, port: int,
              faults: Mapping[str, Any] | None = None) -> None:
        """Serve in the foreground until interrupted (`accrue sandbox <crm>`), printing
        the URL and the connection a tenant would store (a sandbox's made-up secrets)."""
        import json
        import threading

        running = self.start(path, opportunities=opportunities, seed=seed, faults=faults,
                             host=host, port=port)
        secrets, config = running.connection()
        print(f"sandbox serving {running.url} (state: {path})\n"
              f"  connection secrets: {json.dumps(secrets)}\n"
              f"  connection config:  {json.dumps(config)}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            running.stop()
