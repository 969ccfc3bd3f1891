"""Which CRMs Accrue connects to: the one place a new CRM is registered (one line).

Each CRM is a package `connectors/<crm>/` whose `spec` module declares it
(`connectors.spec.ConnectorSpec`); everything else — the concierge's forms and
allowlist, the CLI, the demo, the contract tests — is built from the specs read here.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from connectors.spec import ConnectorSpec, load

if TYPE_CHECKING:
    import requests

    from connectors.base import Connector

# One line per CRM, in the order Select CRM offers them.
SPEC_MODULES: tuple[str, ...] = (
    "connectors.salesforce.spec",
    "connectors.netsuite.spec",
    "connectors.close.spec",
    "connectors.hubspot.spec",
    "connectors.sugarcrm.spec",
)

# Named in the product but without a package yet: shown as "coming soon". (key, name, line)
PLANNED: tuple[tuple[str, str, str], ...] = ()


@functools.cache
def specs() -> tuple[ConnectorSpec, ...]:
    """Every registered CRM's spec, in registration order."""
    found = tuple(importlib.import_module(path).SPEC for path in SPEC_MODULES)
    keys = [spec.key for spec in found]
    if len(set(keys)) != len(keys):
        raise RuntimeError(f"two CRM packages claim the same key: {keys}")
    return found


def spec(crm_type: str) -> ConnectorSpec:
    for candidate in specs():
        if candidate.key == crm_type:
            return candidate
    known = ", ".join(supported_crms())
    raise ValueError(f"no connector for CRM {crm_type!r}; supported: {known}")


def supported_crms() -> list[str]:
    return [candidate.key for candidate in specs()]


def create_connector(
    crm_type: str,
    secrets: Mapping[str, str],
    config: Mapping[str, Any] | None = None,
    *,
    session: requests.Session | None = None,
) -> Connector:
    """Build the adapter for a tenant's CRM from its decrypted credentials.

    `session` (the concierge's allowlisted one) carries every request when given.
    """
    factory = load(spec(crm_type).connector)
    connector: Connector = factory(secrets, dict(config or {}), session=session)
    return connector
