"""A local Salesforce org that unmodified clients (simple-salesforce, Airbyte, dlt) talk to.

Start one with `running_sandbox(path, n_opportunities=120, seed=7)` (background thread)
or `serve(port, path, n_opportunities=N, seed=S)` (blocking; both also take `password=`
and `security_token=` for the integration user), point a client at it with
`connectors.salesforce.transport.sandbox_session(url)`, and log in with the
sandbox's username, password and security token. The records come from the sandbox
kit's deal model (`connectors.sandbox_kit.deal_model`), rendered by `generator.py`.
See docs/sandbox-salesforce.md.
"""

from .config import (
    DEFAULT_PASSWORD,
    DEFAULT_SECURITY_TOKEN,
    DEFAULT_USERNAME,
    SandboxConfig,
)
from .context import RequestContext
from .errors import ApiError
from .faults import FaultConfig, FaultConfigError, FaultInjector, parse_faults
from .generator import SeedSummary, seed
from .running import RunningSandbox, running_sandbox, serve
from .sandbox import SalesforceSandbox
from .server import SandboxApp, create_app

__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_SECURITY_TOKEN",
    "DEFAULT_USERNAME",
    "ApiError",
    "FaultConfig",
    "FaultConfigError",
    "FaultInjector",
    "RequestContext",
    "RunningSandbox",
    "SalesforceSandbox",
    "SandboxApp",
    "SandboxConfig",
    "SeedSummary",
    "create_app",
    "parse_faults",
    "running_sandbox",
    "seed",
    "serve",
]
