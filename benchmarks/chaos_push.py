"""`make chaos`, push mode: the push agent and the push API under SIGKILL, then the
warehouse compared with the customer's database, record by record.

Why: the push path promises what the connectors promise (nothing lost, nothing applied
twice, deletes flagged, the newest version kept), across three processes that can each
die at any moment: the agent (`accrue-agent`: reads the source, pushes, checkpoints
after each acknowledgment), the push API (gunicorn: commits a batch to the inbox before
answering) and the processor (`accrue push process`: inbox to crm_* tables, cursor in the
same transaction). One trial, per warehouse backend:

1. a customer database (`connectors.sandbox_kit.agent_db`, SQLite) is seeded, or kept
   from the previous trial, and a mutator thread changes it all along (new, edited,
   soft- and hard-deleted records, renamed users);
2. the server, an agent looping with `--every 1` and a processor loop run as child
   processes; at random moments one of them is SIGKILLed and restarted;
3. the mutator stops; with nothing killed any more, the agent runs once, then the
   processor;
4. every record of the source is compared with the warehouse (`compare_with_source`):
   0 missing, 0 extra live, 0 differing fields or deleted flags.

`python -m benchmarks.chaos_push --help`; `make chaos` runs it after the CRMs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from accrue.warehouse import Warehouse
from benchmarks.chaos_compare import Comparison, differences, rows_of
from connectors.sandbox_kit import agent_db


def _plain(value: Any) -> Any:
    """A value as both sides can be compared: instants in naive UTC, ids as text."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _plain_row(row: Mapping[str, Any], names: list[str]) -> dict[str, Any]:
    return {name: _plain(row.get(name)) for name in names}


def compare_with_source(warehouse: Warehouse, tenant: str, source: sa.Engine) -> Comparison:
    """Every record of the customer's database against the warehouse, exactly."""
    comparison = Comparison()
    for object_name, truth in agent_db.expected(source).items():
        ours = rows_of(warehouse, tenant, object_name)
        duplicates = warehouse.duplicate_keys(tenant, object_name)
        if duplicates:
            comparison.add("duplicate_key", object_name, None,
                           f"{duplicates} duplicated source ids")
        for source_id, wanted in truth.items():
            comparison.rows += 1
            row = ours.get(source_id)
            state = "deleted" if wanted.deleted else "live"
            if row is None:
                comparison.add(f"missing_{state}", object_name, source_id,
                               "in the source, not in the warehouse")
                continue
            if bool(row["is_deleted"]) != wanted.deleted:
                comparison.add("deleted_flag", object_name, source_id,
                               f"warehouse is_deleted={row['is_deleted']}, source "
                               f"deleted={wanted.deleted}")
                continue
            if wanted.deleted:
                continue
            names = sorted(wanted.fields)
            differing = differences(_plain_row(row, names), _plain_row(wanted.fields, names),
                                    names)
            if differing:
                comparison.add("fields_live", object_name, source_id, differing)
        for source_id, row in ours.items():
            if source_id not in truth:
                comparison.rows += 1
                if not row["is_deleted"]:
                    comparison.add("extra_live", object_name, source_id,
                                   "gone from the source, live in the warehouse")
    comparison.quarantined = warehouse.quarantine_count(tenant)
    return comparison
