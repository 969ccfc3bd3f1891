"""Serving a sandbox: in a background thread for tests (`running_sandbox`) or blocking
for the CLI (`serve`), seeded by the generator when its state file is empty."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ...sandbox_kit.server import BackgroundServer, make_sandbox_server, serve_blocking
from .faults import FaultConfig, FaultInjector, as_fault_config
from .sandbox import SalesforceSandbox
from .server import SandboxApp, create_app


def _seed_if_empty(sandbox: SalesforceSandbox, seed: int | None,
                   n_opportunities: int | None) -> None:
    """`seed=N` alone means N opportunities from random seed N (the CLI's `--seed N`)."""
    count = n_opportunities if n_opportunities is not None else seed
    if count is None or not sandbox.is_empty():
        return
    from .generator import seed as run_seed

    run_seed(sandbox, count, seed if seed is not None else 42)


class RunningSandbox(BackgroundServer):
    """A sandbox served from a background thread; also a context manager."""

    def __init__(self, sandbox: SalesforceSandbox, app: SandboxApp, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.sandbox = sandbox
        super().__init__(app, host, port, quiet=True, name="salesforce-sandbox")
        self.app: SandboxApp = app

    @property
    def username(self) -> str:
        return self.sandbox.username

    @property
    def password(self) -> str:
        return self.sandbox.password

    @property
    def security_token(self) -> str:
        return self.sandbox.security_token

    @property
    def faults(self) -> FaultInjector:
        """The fault switches: `.update({...})`, `.clear()`, `.state()`."""
        return self.app.faults

    def session(self) -> Any:
        """A requests session that routes Salesforce URLs to this sandbox."""
        from ..transport import sandbox_session

        return sandbox_session(self.url)

    def client(self, **kwargs: Any) -> Any:
        """A logged-in `simple_salesforce.Salesforce` (password + token login)."""
        from simple_salesforce.api import Salesforce

        options: dict[str, Any] = {"username": self.username, "password": self.password,
                                   "security_token": self.security_token,
                                   "session": self.session()}
        options.update(kwargs)
        return Salesforce(**options)

    def stop(self) -> None:
        """Stop serving, drop open connections and close the state file."""
        if self._stopped:
            return
        super().stop()
        self.sandbox.close()

    def __enter__(self) -> RunningSandbox:
        return self


def running_sandbox(
    state_path: str,
    *,
    seed: int | None = None,
    n_opportunities: int | None = None,
    port: int = 0,
    page_size: int = 2000,
    host: str = "127.0.0.1",
    faults: FaultConfig | Mapping[str, Any] | str | None = None,
    **config: Any,
) -> RunningSandbox:
    """Start a sandbox in a background thread; use as `with running_sandbox(...) as sb:`.

    `config` takes any `SandboxConfig` setting plus `username`, `password`,
    `security_token` and `clock`. Seeding happens only when the org is empty.
    `faults` (switches as a `FaultConfig`, a mapping or JSON text / a JSON file
    path) replaces the stored fault switches; None keeps them.
    """
    if faults is not None:
        config["faults"] = as_fault_config(faults)
    sandbox = SalesforceSandbox(state_path, page_size=page_size, **config)
    try:
        _seed_if_empty(sandbox, seed, n_opportunities)
        return RunningSandbox(sandbox, create_app(sandbox), host=host, port=port)
    except BaseException:
        sandbox.close()
        raise


def serve(
    port: int,
    state_path: str,
    seed: int | None = None,
    n_opportunities: int | None = None,
    host: str = "127.0.0.1",
    page_size: int = 2000,
    faults: FaultConfig | Mapping[str, Any] | str | None = None,
    **config: Any,
) -> None:
    """Serve the sandbox until interrupted (threaded; seeds only an empty org).

    `faults` is as for `running_sandbox`; a CLI passes its `--faults` text
    straight through (bad text raises a ValueError naming the problem).
    """
    if faults is not None:
        config["faults"] = as_fault_config(faults)
    sandbox = SalesforceSandbox(state_path, page_size=page_size, **config)
    try:
        _seed_if_empty(sandbox, seed, n_opportunities)
        server = make_sandbox_server(create_app(sandbox), host, port, quiet=False)
        url = f"http://{host}:{server.server_port}"
        print(
            f"Salesforce sandbox serving {url} (state: {state_path})\n"
            f"  username:       {sandbox.username}\n"
            f"  password:       {sandbox.password}\n"
            f"  security token: {sandbox.security_token}\n"
            f"  clients: pass session=connectors.salesforce.transport.sandbox_session('{url}')",
            flush=True,
        )
        if sandbox.config.faults.active:
            print(f"  fault switches: {json.dumps(sandbox.config.faults.changed())}", flush=True)
        serve_blocking(server)
    finally:
        sandbox.close()
