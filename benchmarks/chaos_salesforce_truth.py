"""Salesforce's richer truth for the chaos comparison: the org's own `queryAll`.

Why on top of the shared comparison (a fresh full read through the adapter): that one
cannot catch a mistake the adapter makes on every read alike. `queryAll` returns every
record straight from the org — live and in the recycle bin — with the fields the adapter
selects (custom fields added mid-trial included), so each warehouse row's `raw`,
`SystemModstamp` and deleted flag are checked against the source itself. Mismatch kinds
are prefixed `org_` to tell them from the shared comparison's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from accrue.schema import object_table
from accrue.warehouse import Warehouse
from benchmarks.chaos_compare import Comparison, differences
from benchmarks.chaos_worker import Connection, JournalKey, make_connector
from connectors.salesforce.mapping import parse_sf_datetime, sources
from connectors.sandbox_kit.harness import RunningCrmSandbox

BATCH_HEADER = {"Sforce-Query-Options": "batchSize=2000"}


def org_records(connector: Any, object_name: str
                ) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The fields the adapter selects now, and every record queryAll returns (live and
    deleted), of each sObject the object is read from (activity: Task and Event)."""
    records: dict[str, dict[str, Any]] = {}
    for sobject in sources(object_name):
        result = connector.sf.query_all(
            f"SELECT {', '.join(connector.sobject_fields(sobject))} FROM {sobject}",
            include_deleted=True, headers=BATCH_HEADER)
        records.update({r["Id"]: {k: v for k, v in r.items() if k != "attributes"}
                        for r in result["records"]})
    return connector.selectable_fields(object_name), records


def compare_org(org: RunningCrmSandbox, connection: Connection, warehouse: Warehouse,
                tenant: str, objects: Sequence[str], logged: set[JournalKey],
                comparison: Comparison) -> None:
    """The warehouse against `queryAll`, record by record and field by field."""
    with make_connector(connection) as connector:
        for object_name in objects:
            fields, source = org_records(connector, object_name)
            _compare_object(warehouse, tenant, object_name, fields, source, comparison)


def _compare_object(
    warehouse: Warehouse, tenant: str, object_name: str, fields: list[str],
    source: Mapping[str, Mapping[str, Any]], comparison: Comparison,
) -> None:
    table = object_table(object_name)
    with warehouse.engine.connect() as conn:
        rows = {row.source_id: row for row in conn.execute(
            sa.select(table.c.source_id, table.c.is_deleted, table.c.source_modified_at,
                      table.c.raw).where(table.c.tenant_id == tenant))}
    for source_id, record in source.items():
        deleted = bool(record.get("IsDeleted"))
        state = "deleted" if deleted else "live"
        row = rows.get(source_id)
        if row is None:
            comparison.add(f"org_missing_{state}", object_name, source_id,
                           "queryAll returns it, the warehouse has no row")
            continue
        if bool(row.is_deleted) != deleted:
            comparison.add("org_deleted_flag", object_name, source_id,
                           f"warehouse is_deleted={row.is_deleted}, org IsDeleted={deleted}")
        stamp = parse_sf_datetime(record["SystemModstamp"])
        if row.source_modified_at != stamp:
            comparison.add(f"org_stamp_{state}", object_name, source_id,
                           f"warehouse {row.source_modified_at.isoformat()} vs org "
                           f"{stamp.isoformat()}")
        if row.raw is None:
            filled = [f for f in fields if record.get(f) is not None]
            if filled:
                comparison.add(f"org_fields_{state}", object_name, source_id,
                               f"raw is NULL (an id-only tombstone); the org has "
                               f"{len(filled)} non-null fields, e.g. {filled[0]}")
            continue
        differing = differences(row.raw, record, fields)
        if differing:
            comparison.add(f"org_fields_{state}", object_name, source_id, differing)
    for source_id, row in rows.items():
        if source_id not in source and not row.is_deleted:
            comparison.add("org_ghost_live", object_name, source_id,
                           "gone from the org (purged) but live in the warehouse")
