"""A local Salesforce org that unmodified clients (simple-salesforce, Airbyte, dlt) talk to.

Start one with `running_sandbox(path, seed=120)` (background thread) or
`serve(port, path, seed=N)` (blocking), point a client at it with
`connectors.salesforce.transport.sandbox_session(url)`, and log in with the
sandbox's username, password and security token. See docs/sandbox-salesforce.md.
"""

from .config import (
    DEFAULT_PASSWORD,
    DEFAULT_SECURITY_TOKEN,
    DEFAULT_USERNAME,
    SandboxConfig,
)
from .errors import ApiError
from .faults import FaultConfig, FaultConfigError, FaultInjector, parse_faults
from .generator import SeedSummary, seed
from .sandbox import SalesforceSandbox
from .server import RequestContext, RunningSandbox, SandboxApp, create_app, running_sandbox, serve

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
