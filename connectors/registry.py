"""Which adapter serves which CRM: the one place a new CRM is registered."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from connectors.base import Connector

ConnectorFactory = Callable[[Mapping[str, str], Mapping[str, Any]], Connector]


def _salesforce(secrets: Mapping[str, str], config: Mapping[str, Any]) -> Connector:
    from connectors.salesforce import SalesforceConnector

    return SalesforceConnector(secrets, config)


FACTORIES: dict[str, ConnectorFactory] = {
    "salesforce": _salesforce,
}

# CRMs named in the product that have no adapter yet (shown as "coming soon").
PLANNED = ("netsuite", "hubspot", "close", "sugarcrm")


def supported_crms() -> list[str]:
    return sorted(FACTORIES)


def create_connector(
    crm_type: str, secrets: Mapping[str, str], config: Mapping[str, Any] | None = None
) -> Connector:
    """Build the adapter for a tenant's CRM from its decrypted credentials."""
    try:
        factory = FACTORIES[crm_type]
    except KeyError:
        known = ", ".join(supported_crms())
        raise ValueError(f"no connector for CRM {crm_type!r}; supported: {known}") from None
    return factory(secrets, config or {})
