"""Resources: the warehouse and the CRM connectors, wrapped for Dagster.

Credentials never pass through run config: the CRM resource receives only a
tenant id, loads the tenant's encrypted connection from the registry and
decrypts it inside the run, just before the connector uses it (S1). A tenant fed by
a feed (push API, file uploads: accrue.sources) gets its feed's connector instead,
so the sync asset treats every tenant alike.
"""

from __future__ import annotations

from functools import lru_cache

import dagster as dg
from sqlalchemy.engine import Engine

from accrue import config, db, sources, tenants
from accrue.warehouse import Warehouse
from connectors.base import Connector
from connectors.registry import create_connector


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    engine = db.make_engine(url)
    db.require_current(engine)
    return engine


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse; `database_url` unset means ACCRUE_DATABASE_URL or embedded SQLite."""

    database_url: str | None = None

    def engine(self) -> Engine:
        return _engine(self.database_url or config.database_url())

    def warehouse(self) -> Warehouse:
        return Warehouse(self.engine())


class CrmResource(dg.ConfigurableResource):
    """Opens a tenant's CRM connector with credentials decrypted only at run time."""

    warehouse: WarehouseResource

    def crm_type(self, tenant_id: str) -> str:
        """The tenant's CRM (no secrets read): names its API pool and its run queue."""
        return tenants.require_tenant(self.warehouse.engine(), tenant_id).crm_type

    def open(self, tenant_id: str) -> Connector:
        """The tenant's connector: its CRM's, or its feed's (records Accrue receives)."""
        engine = self.warehouse.engine()
        feed = sources.feed_for(self.crm_type(tenant_id))
        if feed is not None:
            return feed.open(engine, tenant_id)
        connection = tenants.load_connection(engine, tenant_id)
        return create_connector(connection.crm_type, connection.secrets, connection.config)


def pipeline_resources(database_url: str | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources every Accrue asset and sensor uses, on one warehouse (the definitions'
    own, and any test's or tool's that runs them on another database)."""
    warehouse = WarehouseResource(database_url=database_url)
    return {"warehouse": warehouse, "crm": CrmResource(warehouse=warehouse)}
