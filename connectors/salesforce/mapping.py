"""Salesforce records in the common model: which sObject and field feeds each column.

Kept apart from the adapter's network code (`connectors.salesforce.connector`) because it needs no
connection: quarantined records are mapped again offline, and tests map records directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from connectors.base import Quarantine, Upsert
from connectors.common_model import COMMON_OBJECTS
from connectors.salesforce.activity import (
    DIRECT_FIELDS,
    MULTI_SOURCE,
    derived_fields,
    sobject_of,
)

CURSOR_FIELD = "SystemModstamp"

# Common object -> (sObject, {common column: Salesforce field}).
OBJECT_MAP: dict[str, tuple[str, dict[str, str]]] = {
    "account": ("Account", {
        "name": "Name", "industry": "Industry", "employee_count": "NumberOfEmployees",
        "annual_revenue": "AnnualRevenue", "billing_country": "BillingCountry",
        "billing_state": "BillingState", "website": "Website", "account_type": "Type",
        "owner_id": "OwnerId", "parent_id": "ParentId", "source_created_at": "CreatedDate",
    }),
    "contact": ("Contact", {
        "account_id": "AccountId", "first_name": "FirstName", "last_name": "LastName",
        "email": "Email", "title": "Title", "owner_id": "OwnerId",
        "source_created_at": "CreatedDate",
    }),
    "lead": ("Lead", {
        "first_name": "FirstName", "last_name": "LastName", "company": "Company",
        "email": "Email", "status": "Status", "lead_source": "LeadSource",
        "industry": "Industry", "owner_id": "OwnerId", "is_converted": "IsConverted",
        "converted_opportunity_id": "ConvertedOpportunityId",
        "source_created_at": "CreatedDate",
    }),
    "opportunity": ("Opportunity", {
        "name": "Name", "account_id": "AccountId", "amount": "Amount", "stage": "StageName",
        "is_closed": "IsClosed", "is_won": "IsWon", "close_date": "CloseDate",
        "probability": "Probability", "opportunity_type": "Type", "lead_source": "LeadSource",
        "owner_id": "OwnerId", "price_book_id": "Pricebook2Id",
        "source_created_at": "CreatedDate",
    }),
    "opportunity_line": ("OpportunityLineItem", {
        "opportunity_id": "OpportunityId", "product_id": "Product2Id",
        "price_book_entry_id": "PricebookEntryId", "quantity": "Quantity",
        "unit_price": "UnitPrice", "list_price": "ListPrice", "discount": "Discount",
        "total_price": "TotalPrice", "source_created_at": "CreatedDate",
    }),
    "product": ("Product2", {
        "name": "Name", "product_code": "ProductCode", "family": "Family",
        "is_active": "IsActive", "unit_cost": "Unit_Cost__c",
        "source_created_at": "CreatedDate",
    }),
    "price_book_entry": ("PricebookEntry", {
        "price_book_id": "Pricebook2Id", "product_id": "Product2Id",
        "unit_price": "UnitPrice", "is_active": "IsActive", "currency": "CurrencyIsoCode",
        "source_created_at": "CreatedDate",
    }),
    "user": ("User", {
        "name": "Name", "email": "Email", "title": "Title", "department": "Department",
        "manager_id": "ManagerId", "is_active": "IsActive",
        "source_created_at": "CreatedDate",
    }),
}



def sources(object_name: str) -> tuple[str, ...]:
    """The sObjects a common object is read from (activity: Task and Event)."""
    return MULTI_SOURCE.get(object_name) or (OBJECT_MAP[object_name][0],)


def parse_sf_datetime(value: str) -> datetime:
    """Parse Salesforce's `2024-01-01T00:00:00.000+0000` (and ISO variants) to aware UTC."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = f"{text[:-2]}:{text[-2:]}"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def soql_datetime(value: datetime) -> str:
    """A SOQL datetime literal (unquoted, UTC, milliseconds)."""
    utc = value.astimezone(UTC)
    return (f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}."  # four-digit year: glibc %Y writes `1`
            f"{utc.microsecond // 1000:03d}Z")


def _convert(value: Any, column_type: str) -> Any:
    """Parse only what Salesforce spells its own way: its date-time and date text.

    Every other value goes to the warehouse as it came. The warehouse's column rules,
    the same for every connector, store it exactly or quarantine it with the reason
    (`"false"` is never true, `true` is never 1.0, a dict is never text).
    """
    if value is None:
        return None
    if column_type == "datetime" and isinstance(value, str):
        return parse_sf_datetime(value)
    if column_type == "date" and isinstance(value, str):
        return date.fromisoformat(value)
    return value


def map_record(object_name: str, record: Mapping[str, Any]) -> Upsert | Quarantine:
    """Map one Salesforce record to the common model, or quarantine it with the reason."""
    types = {c.name: c.type for c in COMMON_OBJECTS[object_name]}
    raw = {k: v for k, v in record.items() if k != "attributes"}
    source_id = record.get("Id")
    try:
        modified_at = parse_sf_datetime(str(record[CURSOR_FIELD]))
    except (KeyError, ValueError):
        return Quarantine(source_id, None, raw, f"{CURSOR_FIELD} missing or not a datetime")
    if not isinstance(source_id, str) or not source_id:
        return Quarantine(None, modified_at, raw, "record has no Id")
    fields: dict[str, Any] = {}
    derived: dict[str, Any] = {}  # columns that are no copy of one field (activities)
    if object_name in MULTI_SOURCE:
        sobject = sobject_of(record)
        if sobject is None:
            return Quarantine(source_id, modified_at, raw,
                              f"{object_name}: the record is none of {MULTI_SOURCE[object_name]}")
        field_map = DIRECT_FIELDS[sobject]
        derived = derived_fields(sobject, record)
    else:
        field_map = OBJECT_MAP[object_name][1]
    for column, field in field_map.items():
        try:
            fields[column] = _convert(record.get(field), types[column])
        except (TypeError, ValueError, OverflowError):
            value = repr(record.get(field))[:80]
            return Quarantine(
                source_id, modified_at, raw,
                f"{object_name}.{column}: {field}={value} is not a valid {types[column]}",
            )
    fields.update(derived)
    is_deleted = record.get("IsDeleted", False)
    if not isinstance(is_deleted, bool):  # "false" is truthy: never guess a deletion
        return Quarantine(source_id, modified_at, raw,
                          f"{object_name}: IsDeleted={is_deleted!r:.80} is not a boolean")
    return Upsert(source_id=source_id, modified_at=modified_at, fields=fields, raw=raw,
                  is_deleted=is_deleted)
