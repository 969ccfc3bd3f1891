"""The common CRM model: the objects and columns every adapter maps into.

It is the single description of the warehouse's `crm_*` tables: the warehouse
schema is built from it and every adapter emits exactly these column names, so
adding a column happens here (plus an Alembic migration) and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnType = Literal["str", "int", "float", "bool", "datetime", "date"]


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    length: int | None = None  # for "str": the longest value the column accepts


def _s(name: str, length: int = 255) -> Column:
    return Column(name, "str", length)


def _id(name: str) -> Column:
    return Column(name, "str", ID_LENGTH)


ID_LENGTH = 64  # Salesforce ids are 18 chars; other CRMs use longer opaque ids

COMMON_OBJECTS: dict[str, tuple[Column, ...]] = {
    "account": (
        _s("name"),
        _s("industry", 80),
        Column("employee_count", "int"),
        Column("annual_revenue", "float"),
        _s("billing_country", 80),
        _s("billing_state", 80),
        _s("website"),
        _s("account_type", 80),
        _id("owner_id"),
        _id("parent_id"),
        Column("source_created_at", "datetime"),
    ),
    "contact": (
        _id("account_id"),
        _s("first_name", 80),
        _s("last_name", 80),
        _s("email"),
        _s("title", 128),
        _id("owner_id"),
        Column("source_created_at", "datetime"),
    ),
    "lead": (
        _s("first_name", 80),
        _s("last_name", 80),
        _s("company"),
        _s("email"),
        _s("status", 80),
        _s("lead_source", 80),
        _s("industry", 80),
        _id("owner_id"),
        Column("is_converted", "bool"),
        _id("converted_opportunity_id"),
        Column("source_created_at", "datetime"),
    ),
    "opportunity": (
        _s("name"),
        _id("account_id"),
        Column("amount", "float"),
        # The deal at list price where the CRM keeps it on the deal (no line items: Close);
        # with line items, pricing sums the lines' list prices instead.
        Column("list_amount", "float"),
        _s("stage", 80),
        Column("is_closed", "bool"),
        Column("is_won", "bool"),
        Column("close_date", "date"),
        Column("probability", "float"),
        _s("opportunity_type", 80),
        _s("lead_source", 80),
        _id("owner_id"),
        _id("price_book_id"),
        Column("source_created_at", "datetime"),
    ),
    "opportunity_line": (
        _id("opportunity_id"),
        _id("product_id"),
        _id("price_book_entry_id"),
        Column("quantity", "float"),
        Column("unit_price", "float"),
        Column("list_price", "float"),
        Column("discount", "float"),
        Column("total_price", "float"),
        Column("source_created_at", "datetime"),
    ),
    "product": (
        _s("name"),
        _s("product_code"),
        _s("family", 80),
        Column("is_active", "bool"),
        Column("unit_cost", "float"),
        Column("source_created_at", "datetime"),
    ),
    "price_book_entry": (
        _id("price_book_id"),
        _id("product_id"),
        Column("unit_price", "float"),
        Column("is_active", "bool"),
        _s("currency", 3),
        Column("source_created_at", "datetime"),
    ),
    "user": (
        _s("name"),
        _s("email"),
        _s("title", 128),
        _s("department", 80),
        _id("manager_id"),
        Column("is_active", "bool"),
        Column("source_created_at", "datetime"),
    ),
    # A call, e-mail, meeting or to-do logged against a deal, an account or a person.
    "activity": (
        _s("subject"),
        _s("activity_type", 40),  # one of ACTIVITY_TYPES
        _s("status", 80),  # the CRM's own word for a to-do's state; None for meetings
        Column("activity_at", "datetime"),  # when it happened (meeting start, to-do done)
        Column("due_date", "date"),  # a to-do's due date
        Column("is_closed", "bool"),  # a to-do that is done; None where the CRM has no such flag
        Column("duration_minutes", "float"),
        _id("owner_id"),
        _id("account_id"),
        _id("opportunity_id"),
        _id("contact_id"),
        _id("lead_id"),
        Column("source_created_at", "datetime"),
    ),
}

# The common words for `activity.activity_type`: each adapter maps its CRM's kinds to these.
ACTIVITY_TYPES: tuple[str, ...] = ("call", "email", "meeting", "task")

# Objects a tenant imports only when its admin switches them on (the concierge's Review step
# and Integration settings): a tenant that did not choose one never reads it from its CRM.
OPTIONAL_OBJECTS: tuple[str, ...] = ("activity",)


def table_name(object_name: str) -> str:
    """The warehouse table that holds a common object (`crm_<object>`)."""
    if object_name not in COMMON_OBJECTS:
        raise KeyError(f"unknown common object {object_name!r}; known: {sorted(COMMON_OBJECTS)}")
    return f"crm_{object_name}"


# Which columns point at which object: what the orphan checks verify.
REFERENCES: dict[str, tuple[tuple[str, str], ...]] = {
    "contact": (("account_id", "account"),),
    "opportunity": (("account_id", "account"),),
    "opportunity_line": (("opportunity_id", "opportunity"), ("product_id", "product")),
    "price_book_entry": (("product_id", "product"),),
    "activity": (("account_id", "account"), ("opportunity_id", "opportunity"),
                 ("contact_id", "contact"), ("lead_id", "lead")),
}
# References that may be empty: an activity is about a deal, an account or neither, with a
# contact, a lead or nobody. Only a value that names no row is an orphan there.
OPTIONAL_REFERENCES: frozenset[tuple[str, str]] = frozenset(
    ("activity", column) for column, _ in REFERENCES["activity"])
