"""Salesforce: the adapter (`connector`), its mapping (`mapping`, `activity`), the client
transport that points simple-salesforce at the local sandbox (`transport`) and the
sandbox itself (`sandbox`).

The names other modules imported from `connectors.salesforce` before it became a package
are re-exported here, so callers can move to the submodules gradually. Code that patches
the adapter's globals (for example `map_record`) must patch `connectors.salesforce.connector`.
"""

from connectors.salesforce.connector import (
    CURSOR_FIELD,
    OBJECT_MAP,
    SalesforceConnector,
    _is_transient,
    map_record,
    parse_sf_datetime,
    soql_datetime,
    sources,
)

__all__ = [
    "CURSOR_FIELD",
    "OBJECT_MAP",
    "SalesforceConnector",
    "_is_transient",
    "map_record",
    "parse_sf_datetime",
    "soql_datetime",
    "sources",
]
