"""A tenant's rows of one table, found by their ids: one index probe per id.

Why not `source_id = ANY(:ids)` (issue 15, measured on PostgreSQL 15 at 180,000 rows of
one tenant): its planner prices 2,000 probes of the key's index above reading all the
tenant's rows, and scans them (20–35 ms a page, growing with the table, so an initial
load's lookups grew with the square of its size: 8 of its 42 s). Each id here is looked
up by a LATERAL subquery on the whole key, which the planner can only answer with the
key's index (4–7 ms, whatever the table's size), and rows are locked in id order.
SQLite's planner probes its index for `IN (SELECT value FROM json_each(?))` by itself.
Either way the statement is one bound parameter, whatever the number of ids.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from accrue.warehouse.base import IDS_PER_STATEMENT, batches
from accrue.warehouse.bulk_write import dumps


def rows_by_id(
    conn: Connection,
    table: sa.Table,
    tenant_id: str,
    source_ids: Collection[str],
    columns: Sequence[str],
    *,
    lock: bool = False,
) -> Iterator[sa.Row[Any]]:
    """`columns` of the tenant's rows among `source_ids` (`lock`: FOR UPDATE, in id order)."""
    for batch in batches(sorted(set(source_ids)), IDS_PER_STATEMENT):
        yield from conn.execute(_lookup(conn.dialect.name, table, tenant_id, list(batch),
                                        columns, lock))


def stored_stamps(conn: Connection, table: sa.Table, tenant_id: str,
                  source_ids: Collection[str], *, lock: bool = False) -> dict[str, datetime]:
    """The `source_modified_at` of each of the tenant's rows among `source_ids`."""
    rows = rows_by_id(conn, table, tenant_id, source_ids, ("source_id", "source_modified_at"),
                      lock=lock)
    return {row.source_id: row.source_modified_at for row in rows}


def _lookup(dialect: str, table: sa.Table, tenant_id: str, ids: list[str],
            columns: Sequence[str], lock: bool) -> sa.Select[Any]:
    chosen = [table.c[name] for name in columns]
    if dialect == "postgresql":
        each = sa.func.unnest(sa.bindparam("ids", ids, type_=postgresql.ARRAY(sa.String))
                              ).table_valued("id").render_derived()
        probe = sa.select(*chosen).where(table.c.tenant_id == tenant_id,
                                         table.c.source_id == each.c.id)
        if lock:
            probe = probe.with_for_update()
        found = probe.lateral("found")
        return sa.select(*(found.c[name] for name in columns)).select_from(each).join(
            found, sa.true())
    listed = sa.select(sa.column("value", sa.String)).select_from(
        sa.func.json_each(sa.bindparam("ids", dumps(ids), type_=sa.String)))
    query = sa.select(*chosen).where(table.c.tenant_id == tenant_id,
                                     table.c.source_id.in_(listed.scalar_subquery()))
    return query.with_for_update() if lock else query
