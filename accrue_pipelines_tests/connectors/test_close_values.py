"""Every value Close sends is stored exactly or quarantined with its reason, never changed.

The property of `test_value_rules.py`, through the Close mapping: random JSON values in
each Close field that feeds a common column, mapped and applied to the warehouse. Money
is the one conversion (whole cents to currency units): anything but an integer is held.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from accrue.warehouse import Warehouse
from accrue_pipelines_tests.core.test_value_rules import (
    HYPOTHESIS,
    JSON_VALUES,
    _check,
    _outcome,
)
from connectors.base import Quarantine, Upsert
from connectors.close.mapping import map_record
from connectors.common_model import COMMON_OBJECTS

STAMP = "2024-05-01T10:00:00.000000+00:00"
# (object, column) -> (a record carrying the field, the field), for columns that copy one
# Close field as it came (dates and date-times parsed from Close's ISO spelling).
BASE = {
    "account": {"id": "lead_x"}, "contact": {"id": "cont_x"},
    "opportunity": {"id": "oppo_x", "status_type": "active"}, "user": {"id": "user_x"},
    "call": {"id": "acti_x", "_type": "Call"}, "meeting": {"id": "acti_x", "_type": "Meeting"},
    "task": {"id": "task_x", "_type": "lead"},
}
DIRECT: dict[tuple[str, str], tuple[str, str]] = {
    ("account", "name"): ("account", "name"), ("account", "website"): ("account", "url"),
    ("contact", "account_id"): ("contact", "lead_id"), ("contact", "title"): ("contact", "title"),
    ("opportunity", "name"): ("opportunity", "note"),
    ("opportunity", "stage"): ("opportunity", "status_label"),
    ("opportunity", "probability"): ("opportunity", "confidence"),
    ("opportunity", "close_date"): ("opportunity", "date_won"),
    ("opportunity", "owner_id"): ("opportunity", "user_id"),
    ("opportunity", "source_created_at"): ("opportunity", "date_created"),
    ("user", "email"): ("user", "email"),
    ("activity", "owner_id"): ("call", "user_id"),
    ("activity", "contact_id"): ("call", "contact_id"),
    ("activity", "subject"): ("meeting", "title"),
    ("activity", "activity_at"): ("meeting", "starts_at"),
    ("activity", "is_closed"): ("task", "is_complete"),
}
TYPES = {(o, c.name): c.type for o, cols in COMMON_OBJECTS.items() for c in cols}


@HYPOTHESIS
@given(column=st.sampled_from(sorted(DIRECT)), sent=JSON_VALUES)
@example(column=("opportunity", "close_date"), sent="2024-02-30")
@example(column=("activity", "is_closed"), sent="false")
@example(column=("opportunity", "probability"), sent=True)
@example(column=("account", "name"), sent={"nested": "dict"})
def test_a_close_record_is_stored_exactly_or_quarantined(
    warehouse: Warehouse, tenant_id: str, column: tuple[str, str], sent: Any
) -> None:
    object_name, name = column
    kind, field = DIRECT[column]
    source_id = f"{BASE[kind]['id']}{uuid.uuid4().hex[:12]}"
    record = {**BASE[kind], "id": source_id, "date_updated": STAMP, field: sent}
    mapped = map_record(object_name, record)
    warehouse.apply(tenant_id, object_name, [mapped], None)
    _check(TYPES[column], name, sent, _outcome(warehouse, tenant_id, object_name, source_id,
                                                name))


@HYPOTHESIS
@given(sent=JSON_VALUES)
@example(sent=True)
@example(sent=1050)
@example(sent=2**60)
@example(sent="1050")
@example(sent=10.5)
def test_cents_become_currency_units_exactly_or_are_held(
    warehouse: Warehouse, tenant_id: str, sent: Any
) -> None:
    source_id = f"oppo_{uuid.uuid4().hex}"
    record = {"id": source_id, "date_updated": STAMP, "status_type": "won", "value": sent}
    mapped = map_record("opportunity", record)
    whole = isinstance(sent, int) and not isinstance(sent, bool)
    if sent is not None and not whole:
        assert isinstance(mapped, Quarantine) and "amount" in mapped.reason
        return
    assert isinstance(mapped, Upsert)
    warehouse.apply(tenant_id, "opportunity", [mapped], None)
    has_row, stored, reason = _outcome(warehouse, tenant_id, "opportunity", source_id, "amount")
    if reason is None:
        assert (stored is None) if sent is None else Decimal(repr(stored)) == Decimal(sent) / 100
    else:  # more digits than a float holds: the warehouse holds it, never rounds it
        assert "amount" in reason and stored is None
