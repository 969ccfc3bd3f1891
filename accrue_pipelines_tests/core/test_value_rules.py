"""Every value a CRM sends is stored exactly or quarantined with its reason, never changed.

Property-based (Hypothesis): random JSON values of every type go into every column of the
common model, once straight into the warehouse (the rules every connector shares) and once
through the Salesforce connector's mapping. Afterwards the column holds a value that says
the same thing (`faithful`), or the record waits in quarantine with a reason naming the
column. `"false"` is never true, `true` is never 1.0, a dict is never text.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from accrue.schema import OBJECT_TABLES
from accrue.warehouse import Warehouse
from connectors.base import Quarantine, Upsert
from connectors.common_model import COMMON_OBJECTS
from connectors.salesforce.activity import DIRECT_FIELDS, MULTI_SOURCE
from connectors.salesforce.mapping import OBJECT_MAP, map_record

COLUMNS = [(obj, col.name, col.type) for obj, cols in COMMON_OBJECTS.items() for col in cols]
STAMP = "2024-05-01T10:00:00.000+0000"

# Text a CRM may send where a typed value belongs: spellings of booleans and numbers,
# dates, and arbitrary unicode (surrogates included, as JSON's \ud800 escape gives them).
TRICKY_TEXT = st.sampled_from([
    "true", "false", "True", " FALSE ", "no", "yes", "0", "1", "", " ", "1.5", "1e3", "-0",
    "NaN", "inf", "1_000", "9007199254740993", "0.1000000000000000055511151231257827",
    "2024-02-29", "2024-02-30", "2024-01-01T12:00:00Z", "2024-01-01T12:00:00",
    "2024-01-01T12:00:00+05:30", "20240101", "0001-01-01", "\x00", "\ud800",
])
JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats()
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec=None), max_size=300) | TRICKY_TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)


def _decimal(value: Any) -> Decimal | None:
    """The number `value` (a number or numeric text) says, or None."""
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return None
    return number if number.is_finite() else None


def faithful(column_type: str, sent: Any, stored: Any) -> bool:
    """Whether `stored` says exactly what `sent` said, for a column of `column_type`."""
    if sent is None or stored is None:
        return sent is None and stored is None
    if column_type == "str":
        if isinstance(sent, str):
            return stored == sent
        # A number in a text column is stored as its own text (a float's shortest form).
        return _decimal(sent) is not None and stored == str(sent)
    if column_type in ("int", "float"):
        if isinstance(sent, bool) or isinstance(stored, bool):
            return False
        if isinstance(sent, float):
            return stored == sent
        # A float column's value says its shortest decimal form.
        said = _decimal(repr(stored)) if isinstance(stored, float) else _decimal(stored)
        return said is not None and said == _decimal(sent)
    if column_type == "bool":
        if isinstance(sent, bool):
            return stored is sent
        return isinstance(sent, str) and sent.strip().lower() == ("true" if stored else "false")
    if column_type == "datetime":
        if not isinstance(sent, str):
            return False
        text = sent.strip()
        text = text[:-1] + "+00:00" if text.endswith("Z") else text
        if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
            text = f"{text[:-2]}:{text[-2:]}"
        parsed = datetime.fromisoformat(text)
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)  # Salesforce: UTC
        return stored == parsed
    if column_type == "date":
        return isinstance(sent, str) and stored == date.fromisoformat(sent)
    raise AssertionError(f"unknown column type {column_type}")


def _outcome(warehouse: Warehouse, tenant_id: str, object_name: str, source_id: str,
             column: str) -> tuple[bool, Any, str | None]:
    """(a row exists, the column's value in it, the open quarantine reason or None)."""
    table = OBJECT_TABLES[object_name]
    with warehouse.engine.connect() as conn:
        row = conn.execute(sa.select(table.c[column]).where(
            table.c.tenant_id == tenant_id, table.c.source_id == source_id)).first()
    held = [q["reason"] for q in warehouse.open_quarantine(tenant_id, object_name)
            if q["source_id"] == source_id]
    assert row is not None or held, "nothing stored and nothing quarantined: a record was lost"
    return row is not None, row[0] if row is not None else None, held[0] if held else None


def _check(column_type: str, column: str, sent: Any,
           outcome: tuple[bool, Any, str | None]) -> None:
    has_row, value, reason = outcome
    if reason is None:
        assert faithful(column_type, sent, value), f"{column}: sent {sent!r}, stored {value!r}"
        return
    assert column in reason or "IsDeleted" in reason, f"{column}: reason {reason!r}"
    # A deleted record whose values were held back keeps its deletion (a row with no values).
    assert not has_row or value is None, f"{column}: quarantined, yet {value!r} was stored"


HYPOTHESIS = settings(max_examples=300, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.function_scoped_fixture,
                                             HealthCheck.too_slow])


@HYPOTHESIS
@given(column=st.sampled_from(COLUMNS), sent=JSON_VALUES)
@example(column=("opportunity", "is_won", "bool"), sent="false")
@example(column=("opportunity", "is_closed", "bool"), sent="no")
@example(column=("opportunity", "amount", "float"), sent=True)
@example(column=("opportunity", "name", "str"), sent={"nested": "dict"})
@example(column=("opportunity", "amount", "float"), sent="9007199254740993")
@example(column=("opportunity", "probability", "float"),
         sent="0.1000000000000000055511151231257827")
def test_the_warehouse_stores_exactly_or_quarantines(
    warehouse: Warehouse, tenant_id: str, column: tuple[str, str, str], sent: Any
) -> None:
    object_name, name, column_type = column
    source_id = uuid.uuid4().hex[:18]
    change = Upsert(source_id=source_id, modified_at=datetime(2024, 5, 1, tzinfo=UTC),
                    fields={name: sent}, raw={"Id": source_id})
    warehouse.apply(tenant_id, object_name, [change], None)
    _check(column_type, name, sent, _outcome(warehouse, tenant_id, object_name, source_id, name))


def _source_field(object_name: str, column: str) -> tuple[str, str] | None:
    """(sObject, field) a column is copied from; activities come from Task or Event."""
    sources = ([(s, DIRECT_FIELDS[s]) for s in MULTI_SOURCE[object_name]]
               if object_name in MULTI_SOURCE else [OBJECT_MAP[object_name]])
    return next(((sobject, fields[column]) for sobject, fields in sources
                 if column in fields), None)


SF_COLUMNS = [(obj, col, typ) for obj, col, typ in COLUMNS if _source_field(obj, col)]


@HYPOTHESIS
@given(column=st.sampled_from(SF_COLUMNS), sent=JSON_VALUES, deleted=st.sampled_from(
    [False, True, "false", 0, None]))
@example(column=("opportunity", "is_won", "bool"), sent="false", deleted=False)
@example(column=("opportunity", "name", "str"), sent={"nested": "dict"}, deleted=False)
@example(column=("opportunity", "amount", "float"), sent=True, deleted="false")
@example(column=("opportunity", "close_date", "date"), sent="", deleted="false")
@example(column=("account", "name", "str"), sent=7.205759403792137e16, deleted=False)
@example(column=("activity", "is_closed", "bool"), sent="false", deleted=False)
@example(column=("activity", "duration_minutes", "float"), sent="30", deleted=False)
def test_a_salesforce_record_is_stored_exactly_or_quarantined(
    warehouse: Warehouse, tenant_id: str, column: tuple[str, str, str], sent: Any,
    deleted: Any,
) -> None:
    object_name, name, column_type = column
    source_id = "006" + uuid.uuid4().hex[:15]
    sobject, field = _source_field(object_name, name) or ("", "")
    record = {"attributes": {"type": sobject}, "Id": source_id, "SystemModstamp": STAMP,
              field: sent}
    if deleted is not None:
        record["IsDeleted"] = deleted
    mapped = map_record(object_name, record)
    if not isinstance(deleted, bool) and deleted is not None:
        # Never guessed as a deletion: held back (for the flag, or a bad field found first).
        assert isinstance(mapped, Quarantine), mapped
    warehouse.apply(tenant_id, object_name, [mapped], None)
    _check(column_type, name, sent, _outcome(warehouse, tenant_id, object_name, source_id, name))


@pytest.mark.parametrize(("column", "sent", "stored"), [
    ("is_won", "false", False), ("is_closed", "TRUE", True), ("amount", 12, 12.0),
    ("amount", "19.990", 19.99), ("name", 42, "42"),
])
def test_the_documented_spellings_are_stored(
    warehouse: Warehouse, tenant_id: str, column: str, sent: Any, stored: Any
) -> None:
    """The property above allows these; this pins that they are stored, not quarantined."""
    source_id = uuid.uuid4().hex[:18]
    warehouse.apply(tenant_id, "opportunity", [Upsert(
        source_id=source_id, modified_at=datetime(2024, 5, 1, tzinfo=UTC),
        fields={column: sent}, raw={})], None)
    assert _outcome(warehouse, tenant_id, "opportunity", source_id, column) == (True, stored, None)


def test_a_deletion_flag_that_is_not_a_boolean_is_refused(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """The contract says bool: "false" must never delete a record (a connector bug, refused)."""
    change = Upsert(source_id="006X", modified_at=datetime(2024, 5, 1, tzinfo=UTC),
                    fields={}, raw={}, is_deleted="false")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is_deleted"):
        warehouse.apply(tenant_id, "opportunity", [change], None)
    assert warehouse.count(tenant_id, "opportunity", include_deleted=True) == 0
