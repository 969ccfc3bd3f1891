"""SugarCRM records in the common model: which module and field feeds each column.

Kept apart from the adapter's network code so quarantined records are mapped again
offline. Sugar's REST v11 spells values its own way, and only those spellings are read
here; anything else is quarantined with the reason, never guessed:

- date-times are ISO 8601 with the *user's* UTC offset ("2026-11-30T10:15:00-05:00"),
  read as the instant they name (UTC), never as wall-clock text; dates are "YYYY-MM-DD";
- currency and decimal fields come as text ("25000.000000"): read as exact decimals;
- relate ids are UUIDs, and "" when empty (kept as None: "" names no record);
- `employees` and `annual_revenue` of an account are free-text fields in Sugar: a whole
  number (or a plain decimal for revenue) is read, anything else ("$12M", "50-100") is
  quarantined, because a number guessed from prose would mislead the analytics.

Decisions:
- An opportunity's stage is `sales_stage`; "Closed Won" / "Closed Lost" close it (Sugar's
  own closed stages); its amount is `amount` in the record's currency (`currency_id` kept
  in `raw`), not `amount_usdollar` (a conversion at Sugar's rate of the day).
- A revenue line item's `discount_price` is the unit price sold at, `likely_case` its
  total; `discount` is `discount_amount` only when `discount_select` says it is a percent
  (the common column is a percentage, as Salesforce's), else None (the amount stays in
  `raw`).
- A user is active when `status` is "Active"; the manager is `reports_to_id`.
- A product is a product template; active when `active_status` is "Active".
- A lead's company is `account_name`; converted when `converted` is true, its
  opportunity `opportunity_id`. Sugar leads have no industry: None.
- Activities come from four modules: `connectors/sugarcrm/activity.py` says how.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from connectors.base import Delete, Quarantine, Upsert
from connectors.common_model import COMMON_OBJECTS
from connectors.sugarcrm import activity

MODIFIED = "date_modified"
CREATED = "date_entered"
CLOSED_STAGES = {"Closed Won": True, "Closed Lost": False}  # stage -> is_won
_DECIMAL = re.compile(r"-?(\d+(\.\d*)?|\.\d+)")
_WHOLE = re.compile(r"-?\d+")

# A column's reader: how Sugar spells the value of the field that feeds it.
Kind = str  # text, id, datetime, date, day_of, decimal, whole_text, int, bool


@dataclass(frozen=True)
class Module:
    """One Sugar module read as one common object: {common column: (field, kind)}."""

    name: str
    fields: Mapping[str, tuple[str, Kind]]


def _m(module: str, **fields: tuple[str, Kind]) -> Module:
    return Module(module, {**fields, "source_created_at": (CREATED, "datetime")})


MODULES: dict[str, Module] = {
    "user": _m("Users", name=("full_name", "text"), email=("email1", "text"),
               title=("title", "text"), department=("department", "text"),
               manager_id=("reports_to_id", "id")),
    "account": _m("Accounts", name=("name", "text"), industry=("industry", "text"),
                  employee_count=("employees", "whole_text"),
                  annual_revenue=("annual_revenue", "decimal"),
                  billing_country=("billing_address_country", "text"),
                  billing_state=("billing_address_state", "text"),
                  website=("website", "text"), account_type=("account_type", "text"),
                  owner_id=("assigned_user_id", "id"), parent_id=("parent_id", "id")),
    "contact": _m("Contacts", account_id=("account_id", "id"),
                  first_name=("first_name", "text"), last_name=("last_name", "text"),
                  email=("email1", "text"), title=("title", "text"),
                  owner_id=("assigned_user_id", "id")),
    "lead": _m("Leads", first_name=("first_name", "text"), last_name=("last_name", "text"),
               company=("account_name", "text"), email=("email1", "text"),
               status=("status", "text"), lead_source=("lead_source", "text"),
               owner_id=("assigned_user_id", "id"), is_converted=("converted", "bool"),
               converted_opportunity_id=("opportunity_id", "id")),
    "product": _m("ProductTemplates", name=("name", "text"),
                  product_code=("mft_part_num", "text"), family=("category_name", "text"),
                  unit_cost=("cost_price", "decimal")),
    "opportunity": _m("Opportunities", name=("name", "text"), account_id=("account_id", "id"),
                      amount=("amount", "decimal"), stage=("sales_stage", "text"),
                      close_date=("date_closed", "date"), probability=("probability", "int"),
                      opportunity_type=("opportunity_type", "text"),
                      lead_source=("lead_source", "text"),
                      owner_id=("assigned_user_id", "id")),
    "opportunity_line": _m("RevenueLineItems", opportunity_id=("opportunity_id", "id"),
                           product_id=("product_template_id", "id"),
                           quantity=("quantity", "decimal"),
                           unit_price=("discount_price", "decimal"),
                           list_price=("list_price", "decimal"),
                           total_price=("likely_case", "decimal")),
}
# The activity modules, one part each (`connectors/sugarcrm/activity.py`).
ACTIVITY_MODULES: dict[str, Module] = {name: _m(name, **fields)
                                       for name, fields in activity.FIELDS.items()}


def modules_of(object_name: str) -> tuple[Module, ...]:
    """The modules a common object is read from (several for activities), in order."""
    if object_name == "activity":
        return tuple(ACTIVITY_MODULES.values())
    return (MODULES[object_name],)


class Unmappable(ValueError):
    """A value this mapping cannot read faithfully; the message is the quarantine reason."""


def parse_sugar_datetime(value: str) -> datetime:
    """Sugar's `2026-11-30T10:15:00-05:00` as aware UTC; a value without an offset is
    refused (its instant is unknown)."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return parsed.astimezone(UTC)


def sugar_datetime(value: datetime) -> str:
    """A filter value Sugar reads: ISO 8601, whole seconds, in UTC."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _read(value: Any, kind: Kind, where: str) -> Any:
    if value is None:
        return None
    if kind == "text":
        return value
    if kind == "id":
        return None if value == "" else value
    if isinstance(value, str) and value.strip() == "" and kind != "bool":
        return None  # Sugar's empty number, date or date-time
    try:
        if kind == "datetime":
            return parse_sugar_datetime(value) if isinstance(value, str) else value
        if kind == "date":
            return date.fromisoformat(value) if isinstance(value, str) else value
        if kind == "day_of":  # the day of a date-time, as written (in its own offset)
            return datetime.fromisoformat(value).date() if isinstance(value, str) else value
    except ValueError:
        raise Unmappable(f"{where}={value!r:.80} is not a {kind}") from None
    if kind == "decimal":
        if isinstance(value, str):
            if not _DECIMAL.fullmatch(value.strip()):
                raise Unmappable(f"{where}={value!r:.80} is not a decimal number")
            return Decimal(value.strip())
        return value  # a JSON number, or a wrong type the warehouse refuses by name
    if kind == "whole_text":
        if isinstance(value, str):
            if not _WHOLE.fullmatch(value.strip()):
                raise Unmappable(f"{where}={value!r:.80} is not a whole number")
            return int(value.strip())
        return value
    if kind == "int" and isinstance(value, str):
        if not _WHOLE.fullmatch(value.strip()):
            raise Unmappable(f"{where}={value!r:.80} is not a whole number")
        return int(value.strip())
    if kind == "bool" and isinstance(value, str) and value in ("0", "1"):
        return value == "1"  # Sugar's older spelling of a checkbox
    return value


def _derived(object_name: str, record: Mapping[str, Any]) -> dict[str, Any]:
    if object_name == "user":
        return {"is_active": {"Active": True, "Inactive": False}.get(str(record.get("status")))}
    if object_name == "product":
        return {"is_active": {"Active": True, "Inactive": False}.get(
            str(record.get("active_status")))}
    if object_name == "opportunity":
        stage = record.get("sales_stage")
        closed = stage in CLOSED_STAGES
        return {"is_closed": closed, "is_won": CLOSED_STAGES.get(str(stage), False),
                "list_amount": None, "price_book_id": None}
    if object_name == "opportunity_line":
        percent = record.get("discount_select") in (True, "1", 1)
        discount = _read(record.get("discount_amount"), "decimal",
                         "discount: discount_amount") if percent else None
        return {"discount": discount, "price_book_entry_id": None}
    if object_name == "lead":
        return {"industry": None}
    return {}


def is_deleted(record: Mapping[str, Any]) -> bool:
    return record.get("deleted") in (True, 1, "1")


def map_record(object_name: str, record: Mapping[str, Any]) -> Upsert | Quarantine | Delete:
    """Map one Sugar record, or quarantine it with the reason.

    A deleted record (`deleted` = 1, read with `deleted=true`) is an Upsert flagged deleted
    with its last values; one whose values cannot be read is a bare Delete (a bad value in
    a record that is gone must not hold its deletion in quarantine).
    """
    raw = dict(record)
    if object_name == "activity":
        module = ACTIVITY_MODULES.get(str(record.get("_module")))
        if module is None:
            return Quarantine(record.get("id") if isinstance(record.get("id"), str) else None,
                              None, raw, f"activity: _module={record.get('_module')!r:.80} is "
                              f"none of {', '.join(activity.PARTS)}")
    else:
        module = MODULES[object_name]
    source_id = record.get("id")
    source_id = source_id if isinstance(source_id, str) and source_id else None
    try:
        modified_at = parse_sugar_datetime(str(record[MODIFIED]))
    except (KeyError, ValueError):
        return Quarantine(source_id, None, raw, f"{MODIFIED} missing or not a date-time "
                          "with an offset")
    if source_id is None:
        return Quarantine(None, modified_at, raw, "record has no id")
    deleted = is_deleted(record)
    try:
        fields = {column: _read(record.get(field), kind, f"{column}: {field}")
                  for column, (field, kind) in module.fields.items()}
        fields.update(activity.derived(module.name, record, _read)
                      if object_name == "activity" else _derived(object_name, record))
    except Unmappable as exc:
        if deleted:
            return Delete(source_id, modified_at)
        return Quarantine(source_id, modified_at, raw, f"{object_name}.{exc}")
    for column in COMMON_OBJECTS[object_name]:
        fields.setdefault(column.name, None)
    return Upsert(source_id=source_id, modified_at=modified_at, fields=fields, raw=raw,
                  is_deleted=deleted)
