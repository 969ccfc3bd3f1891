"""NetSuite records in the common model: which SuiteQL table and column feeds each column.

Kept apart from the adapter's network code so quarantined records are mapped again
offline. SuiteQL returns every value as text and shows a bare date-time as the
account's *date* only ("3/9/2026"), so every date-time is selected through
`TO_CHAR(..., 'YYYY-MM-DD HH24:MI:SS')` and read in the account's time zone — never
as UTC, never truncated to a day. Only NetSuite's own spellings are parsed here
(those date-times, 'YYYY-MM-DD' dates, 'T'/'F' checkboxes); numbers and text go on
as they came, and the warehouse's value rules store them exactly or quarantine them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from connectors.base import Quarantine, Upsert
from connectors.common_model import COMMON_OBJECTS
from connectors.netsuite import activity
from connectors.netsuite.source import MODIFIED, Source, day, parse_stamp, stamp


def _entity(alias: str, created: str = "datecreated") -> dict[str, str]:
    return {"id": f"{alias}.id", MODIFIED: stamp(f"{alias}.lastmodifieddate"),
            "created": stamp(f"{alias}.{created}")}


SOURCES: dict[str, Source] = {
    "user": Source(
        "employee e", "e.id", "e.lastmodifieddate",
        {**_entity("e"), "entityid": "e.entityid", "email": "e.email", "title": "e.title",
         "department": "d.name", "supervisor": "e.supervisor", "isinactive": "e.isinactive"},
        {"name": "entityid", "email": "email", "title": "title", "department": "department",
         "manager_id": "supervisor", "source_created_at": "created"},
        joins="LEFT JOIN department d ON d.id = e.department", deleted_types=("employee",),
        negated={"is_active": "isinactive"}),
    "account": Source(
        "customer c", "c.id", "c.lastmodifieddate",
        {**_entity("c"), "companyname": "c.companyname",
         "custentity_industry": "c.custentity_industry",
         "custentity_employee_count": "c.custentity_employee_count",
         "custentity_annual_revenue": "c.custentity_annual_revenue",
         "billcountry": "a.country", "billstate": "a.state", "url": "c.url",
         "category": "cat.name", "salesrep": "c.salesrep", "parent": "c.parent"},
        {"name": "companyname", "industry": "custentity_industry",
         "employee_count": "custentity_employee_count",
         "annual_revenue": "custentity_annual_revenue", "billing_country": "billcountry",
         "billing_state": "billstate", "website": "url", "account_type": "category",
         "owner_id": "salesrep", "parent_id": "parent", "source_created_at": "created"},
        joins="LEFT JOIN entityaddress a ON a.nkey = c.defaultbillingaddress "
              "LEFT JOIN customercategory cat ON cat.id = c.category",
        deleted_types=("customer",)),
    "contact": Source(
        "contact p", "p.id", "p.lastmodifieddate",
        {**_entity("p"), "company": "p.company", "firstname": "p.firstname",
         "lastname": "p.lastname", "email": "p.email", "title": "p.title", "owner": "p.owner"},
        {"account_id": "company", "first_name": "firstname", "last_name": "lastname",
         "email": "email", "title": "title", "owner_id": "owner", "source_created_at": "created"},
        deleted_types=("contact",)),
    "product": Source(
        "item i", "i.id", "i.lastmodifieddate",
        {**_entity("i", "createddate"), "displayname": "i.displayname", "itemid": "i.itemid",
         "custitem_family": "i.custitem_family", "isinactive": "i.isinactive",
         "cost": "i.cost", "itemtype": "i.itemtype"},
        {"name": "displayname", "product_code": "itemid", "family": "custitem_family",
         "unit_cost": "cost", "source_created_at": "created"},
        deleted_types=("noninventorysaleitem", "noninventoryitem", "inventoryitem",
                       "serviceitem", "serviceresaleitem", "servicesaleitem"),
        negated={"is_active": "isinactive"}),
    # Prices have no id and no stamp of their own: read whole each sync, with LiveIds.
    "price_book_entry": Source(
        "pricing pr", "pr.item", None,
        {"item": "pr.item", "pricelevel": "pr.pricelevel", "currencyid": "pr.currency",
         "currency": "cu.symbol", "unitprice": "pr.unitprice", "isinactive": "pr.isinactive",
         MODIFIED: stamp("i.lastmodifieddate"), "created": stamp("i.createddate")},
        {"price_book_id": "pricelevel", "product_id": "item", "unit_price": "unitprice",
         "currency": "currency", "source_created_at": "created"},
        joins="JOIN item i ON i.id = pr.item LEFT JOIN currency cu ON cu.id = pr.currency",
        negated={"is_active": "isinactive"}),
    "opportunity": Source(
        "transaction t", "t.id", "t.lastmodifieddate",
        {**_entity("t", "createddate"), "title": "t.title", "entity": "t.entity",
         "projectedtotal": "t.projectedtotal", "entitystatus": "s.name", "status": "t.status",
         "expectedclosedate": day("t.expectedclosedate"), "probability": "t.probability",
         "custbody_opportunity_type": "t.custbody_opportunity_type",
         "custbody_lead_source": "t.custbody_lead_source", "employee": "t.employee",
         "tranid": "t.tranid"},
        {"name": "title", "account_id": "entity", "amount": "projectedtotal",
         "stage": "entitystatus", "close_date": "expectedclosedate",
         "probability": "probability", "opportunity_type": "custbody_opportunity_type",
         "lead_source": "custbody_lead_source", "owner_id": "employee",
         "source_created_at": "created"},
        joins="LEFT JOIN entitystatus s ON s.id = t.entitystatus",
        where="t.type = 'Opprtnty'", deleted_types=("opportunity",)),
    # Lines: NetSuite logs no line deletes, so every sync ends with their LiveIds.
    "opportunity_line": Source(
        "transactionline tl", "tl.uniquekey", "tl.linelastmodifieddate",
        {"id": "tl.uniquekey", MODIFIED: stamp("tl.linelastmodifieddate"),
         "created": stamp("tl.linecreateddate"), "transaction": "tl.transaction",
         "item": "tl.item", "price": "tl.price", "currency": "t.currency",
         "quantity": "tl.quantity", "rate": "tl.rate", "netamount": "tl.netamount",
         "custcol_list_price": "tl.custcol_list_price",
         "custcol_discount": "tl.custcol_discount"},
        {"opportunity_id": "transaction", "product_id": "item", "quantity": "quantity",
         "unit_price": "rate", "list_price": "custcol_list_price",
         "discount": "custcol_discount", "total_price": "netamount",
         "source_created_at": "created"},
        joins="JOIN transaction t ON t.id = tl.transaction",
        where="t.type = 'Opprtnty' AND tl.mainline = 'F'"),  # not the header line
}

# Opportunity status codes: A In Progress, B Issued Estimate, C Closed - Won, D Closed - Lost.
STATUS = {"A": (False, False), "B": (False, False), "C": (True, True), "D": (True, False)}
_FLAGS = {"T": True, "F": False}
_NUMBER = re.compile(r"-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


class _Refused(ValueError):
    pass


def price_entry_id(item: str, price_level: str, currency: str) -> str:
    """A price's source id: NetSuite gives prices none, (item, level, currency) is unique."""
    return f"{item}-{price_level}-{currency}"


def source_id_of(object_name: str, item: Mapping[str, Any]) -> str | None:
    if object_name == "price_book_entry":
        parts = (item.get("item"), item.get("pricelevel"), item.get("currencyid"))
        return price_entry_id(*map(str, parts)) if all(parts) else None
    value = item.get("id")
    if value in (None, ""):
        return None
    if object_name == "activity":
        part = activity.part_of(item)
        return activity.source_id(part, value) if part else None
    return str(value)


def _convert(value: Any, column_type: str, tz: ZoneInfo) -> Any:
    if value is None:
        return None
    if column_type in ("int", "float") and isinstance(value, str):
        if not _NUMBER.fullmatch(value):  # SuiteQL's numbers are text: check, never coerce
            raise ValueError(value)
        return value  # the warehouse stores the text's exact number, or refuses it
    if column_type == "datetime" and isinstance(value, str):
        return parse_stamp(value, tz)
    if column_type == "date" and isinstance(value, str):
        return date.fromisoformat(value)
    if column_type == "bool" and value in _FLAGS:
        return _FLAGS[value]
    return value


def _flag(item: Mapping[str, Any], name: str, negate: bool) -> bool | None:
    value = item.get(name)
    if value is None:
        return None
    if value not in _FLAGS:
        raise _Refused(f"{name}={value!r:.80} is not 'T' or 'F'")
    return _FLAGS[value] != negate


def _derived(object_name: str, item: Mapping[str, Any], source: Source) -> dict[str, Any]:
    out: dict[str, Any] = {c: _flag(item, name, True) for c, name in source.negated.items()}
    if object_name == "opportunity":
        status = item.get("status")
        if status not in STATUS:
            raise _Refused(f"status={status!r:.80} is no opportunity status (A, B, C, D)")
        out["is_closed"], out["is_won"] = STATUS[str(status)]
        out["price_book_id"] = None  # NetSuite prices per line (price level), not per deal
    if object_name == "opportunity_line":
        parts = (item.get("item"), item.get("price"), item.get("currency"))
        out["price_book_entry_id"] = price_entry_id(*map(str, parts)) if all(parts) else None
    if object_name == "product" and "is_active" not in out:
        out["is_active"] = None
    return out


def source_of(object_name: str, raw: Mapping[str, Any]) -> Source | None:
    """The table a row was read from (activities: the part its `recordtype` names)."""
    if object_name == "activity":
        part = activity.part_of(raw)
        return activity.SOURCES[part] if part else None
    return SOURCES[object_name]


def map_record(object_name: str, item: Mapping[str, Any], tz: ZoneInfo) -> Upsert | Quarantine:
    """Map one SuiteQL row to the common model, or quarantine it with the reason."""
    types = {c.name: c.type for c in COMMON_OBJECTS[object_name]}
    raw = {k: v for k, v in item.items() if k != "links"}
    source = source_of(object_name, raw)
    source_id = source_id_of(object_name, raw)
    if source is None:
        return Quarantine(source_id, None, raw, f"{object_name}: recordtype="
                          f"{raw.get('recordtype')!r:.80} is none of {activity.PARTS}")
    try:
        modified_at = parse_stamp(str(raw[MODIFIED]), tz)
    except (KeyError, ValueError):
        return Quarantine(source_id, None, raw, f"{MODIFIED} missing or not a date-time")
    if source_id is None:
        return Quarantine(None, modified_at, raw, "record has no internal id")
    fields: dict[str, Any] = {}
    for column, name in source.fields.items():
        try:
            fields[column] = _convert(raw.get(name), types[column], tz)
        except (TypeError, ValueError, OverflowError):
            return Quarantine(source_id, modified_at, raw,
                              f"{object_name}.{column}: {name}={raw.get(name)!r:.80} "
                              f"is not a valid {types[column]}")
    try:
        if object_name == "activity":
            fields.update(activity.derived(str(raw["recordtype"]), raw, fields, tz))
        else:
            fields.update(_derived(object_name, raw, source))
    except (_Refused, activity.Refused) as exc:
        return Quarantine(source_id, modified_at, raw, f"{object_name}: {exc}")
    missing = set(types) - set(fields)
    fields.update(dict.fromkeys(missing))
    return Upsert(source_id=source_id, modified_at=modified_at, fields=fields, raw=raw)
