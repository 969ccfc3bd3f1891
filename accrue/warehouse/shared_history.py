"""Where a change-log version's values are when it is its record's current version.

History without doubling (issue 15, migration 0019): the version a crm_* row holds keeps
its document and its common-model values only in that row (`crm_change_log.raw_in_row`,
`raw` and `fields` NULL); `Warehouse.apply` copies both into the log before a newer
version replaces the row. Readers of `fields` (the log or `crm_record_history`) fill a
NULL from the row with `fill_fields`, which spells them exactly as `apply` logs them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, MutableMapping
from datetime import date
from typing import Any

from sqlalchemy.engine import Connection

from accrue.schema import object_table
from accrue.warehouse.keyed import rows_by_id
from connectors.common_model import COMMON_OBJECTS


def fields_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """Coerced column values as JSON (dates and datetimes as ISO 8601)."""
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in row.items()}


def row_fields(
    conn: Connection, tenant_id: str, object_name: str, source_ids: Collection[str]
) -> dict[str, dict[str, Any]]:
    """The common-model values of the tenant's rows, as the change log spells them."""
    table = object_table(object_name)
    names = [c.name for c in COMMON_OBJECTS[object_name]]
    found: dict[str, dict[str, Any]] = {}
    for row in rows_by_id(conn, table, tenant_id, source_ids, ("source_id", *names)):
        values = row._mapping
        found[values["source_id"]] = fields_json({n: values[n] for n in names})
    return found


def fill_fields(
    conn: Connection,
    tenant_id: str,
    versions: Iterable[MutableMapping[str, Any]],
    object_name: str | None = None,
) -> None:
    """Set `fields` of the versions kept in their row (NULL in the log) from that row.

    Each version needs `source_id`, and `object_name` unless one is given for all.
    """
    waiting: dict[str, list[MutableMapping[str, Any]]] = {}
    for version in versions:
        if version.get("fields") is None:
            waiting.setdefault(object_name or version["object_name"], []).append(version)
    for name, missing in waiting.items():
        found = row_fields(conn, tenant_id, name, {v["source_id"] for v in missing})
        for version in missing:
            version["fields"] = found.get(version["source_id"], {})
