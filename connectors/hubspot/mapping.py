"""HubSpot records in the common model: which object type and property feeds each column.

Kept apart from the adapter's network code so quarantined records can be mapped again
offline. A record as read is `{"id", "properties", "createdAt", "updatedAt", "archived",
…}` with every property value a string (or null); the adapter adds what it learnt from
associations (`associations.companies`, `associations.deals`) and the deal pipeline.

Values are read exactly or the record is quarantined with the reason, never guessed:
- numbers ("1234.50") are Decimals as written; a whole-number column takes only a whole
  number ("12.0" is 12; "12.5" is quarantined);
- date-times are ISO 8601 text or, for some properties, epoch milliseconds (digits);
- a close date is the UTC day of HubSpot's `closedate` (a date-time: its date pickers store
  midnight UTC);
- `hs_deal_stage_probability` is a fraction (0.2); the common probability is a percentage,
  multiplied by 100 exactly;
- a deal's stage is its stage's label in the pipeline, closed / won from the stage's
  metadata (`isClosed`, `probability` 1.0 for won); a stage id the pipelines do not know
  is quarantined;
- a line item's `price` is its unit price before discount (the list price), `discount` the
  discount per unit in currency, `amount` the line total: unit price is `price - discount`,
  exactly;
- owners are the users: archived owners (deactivated users) stay, inactive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.base import Quarantine, Upsert

# Common object -> HubSpot object type (the `owners` API for users).
OBJECT_TYPES: dict[str, str] = {
    "account": "companies", "contact": "contacts", "opportunity": "deals",
    "opportunity_line": "line_items", "product": "products", "user": "owners",
}
# Each type's modification stamp: HubSpot spells it differently for contacts.
MODIFIED_PROPERTY: dict[str, str] = {
    "companies": "hs_lastmodifieddate", "contacts": "lastmodifieddate",
    "deals": "hs_lastmodifieddate", "line_items": "hs_lastmodifieddate",
    "products": "hs_lastmodifieddate",
}
# The properties read for each type (the modification stamp and id come with every read).
PROPERTIES: dict[str, tuple[str, ...]] = {
    "companies": ("name", "industry", "numberofemployees", "annualrevenue", "country",
                  "state", "website", "type", "hubspot_owner_id", "hs_parent_company_id",
                  "createdate"),
    "contacts": ("firstname", "lastname", "email", "jobtitle", "associatedcompanyid",
                 "hubspot_owner_id", "createdate"),
    "deals": ("dealname", "amount", "dealstage", "pipeline", "closedate",
              "hs_deal_stage_probability", "dealtype", "lead_source", "hubspot_owner_id",
              "createdate"),
    "line_items": ("name", "hs_product_id", "quantity", "price", "discount",
                   "hs_discount_percentage", "amount", "createdate"),
    "products": ("name", "hs_sku", "product_family", "active", "hs_cost_of_goods_sold",
                 "price", "createdate"),
}
# What the adapter adds to a deal from the pipeline: stage id -> (label, closed, won).
Stages = Mapping[str, tuple[str, bool, bool]]


class Unmappable(ValueError):
    """A value this mapping cannot read faithfully; the message is the quarantine reason."""


def parse_stamp(value: str) -> datetime:
    """ISO 8601 text or epoch milliseconds as an aware UTC datetime; ValueError else."""
    text = value.strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def hubspot_stamp(value: datetime) -> str:
    """A filter value HubSpot reads: epoch milliseconds."""
    return str(int(round(value.astimezone(UTC).timestamp() * 1000)))


def _props(record: Mapping[str, Any]) -> Mapping[str, Any]:
    props = record.get("properties")
    return props if isinstance(props, Mapping) else {}


def _datetime(props: Mapping[str, Any], name: str, column: str) -> datetime | None:
    value = props.get(name)
    if value in (None, ""):
        return None
    try:
        return parse_stamp(str(value))
    except ValueError:
        raise Unmappable(f"{column}: {name}={value!r:.80} is not a date-time") from None


def _decimal(props: Mapping[str, Any], name: str, column: str) -> Decimal | None:
    value = props.get(name)
    if value in (None, ""):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite():
        raise Unmappable(f"{column}: {name}={value!r:.80} is not a number")
    return number


def _whole(props: Mapping[str, Any], name: str, column: str) -> int | None:
    number = _decimal(props, name, column)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise Unmappable(f"{column}: {name}={props.get(name)!r:.80} is not a whole number")
    return int(number)


def _bool(props: Mapping[str, Any], name: str, column: str) -> bool | None:
    value = props.get(name)
    if value in (None, ""):
        return None
    if str(value).lower() not in ("true", "false"):
        raise Unmappable(f"{column}: {name}={value!r:.80} is not true or false")
    return str(value).lower() == "true"


def _day(props: Mapping[str, Any], name: str, column: str) -> date | None:
    moment = _datetime(props, name, column)
    return moment.date() if moment else None


def _text(props: Mapping[str, Any], name: str) -> Any:
    value = props.get(name)
    return None if value == "" else value


def _associated(record: Mapping[str, Any], kind: str) -> str | None:
    """The first associated id of a kind (the adapter puts the primary one first)."""
    found = (record.get("associations") or {}).get(kind) or []
    return str(found[0]) if found else None


def _account(r: Mapping[str, Any], stages: Stages) -> dict[str, Any]:
    p = _props(r)
    return {"name": _text(p, "name"), "industry": _text(p, "industry"),
            "employee_count": _whole(p, "numberofemployees", "employee_count"),
            "annual_revenue": _decimal(p, "annualrevenue", "annual_revenue"),
            "billing_country": _text(p, "country"), "billing_state": _text(p, "state"),
            "website": _text(p, "website"), "account_type": _text(p, "type"),
            "owner_id": _text(p, "hubspot_owner_id"),
            "parent_id": _text(p, "hs_parent_company_id")}


def _contact(r: Mapping[str, Any], stages: Stages) -> dict[str, Any]:
    p = _props(r)
    return {"account_id": _text(p, "associatedcompanyid"), "first_name": _text(p, "firstname"),
            "last_name": _text(p, "lastname"), "email": _text(p, "email"),
            "title": _text(p, "jobtitle"), "owner_id": _text(p, "hubspot_owner_id")}


def _opportunity(r: Mapping[str, Any], stages: Stages) -> dict[str, Any]:
    p = _props(r)
    stage_id = p.get("dealstage")
    if stage_id is None:
        label, closed, won = None, None, None
    elif stage_id in stages:
        label, closed, won = stages[stage_id]
    else:
        raise Unmappable(f"stage: dealstage={stage_id!r:.80} is in no deal pipeline")
    probability = _decimal(p, "hs_deal_stage_probability", "probability")
    return {"name": _text(p, "dealname"), "account_id": _associated(r, "companies"),
            "amount": _decimal(p, "amount", "amount"), "list_amount": None, "stage": label,
            "is_closed": closed, "is_won": won,
            "close_date": _day(p, "closedate", "close_date"),
            "probability": probability * 100 if probability is not None else None,
            "opportunity_type": _text(p, "dealtype"), "lead_source": _text(p, "lead_source"),
            "owner_id": _text(p, "hubspot_owner_id"), "price_book_id": None}


def _line(r: Mapping[str, Any], stages: Stages) -> dict[str, Any]:
    p = _props(r)
    price = _decimal(p, "price", "list_price")
    discount = _decimal(p, "discount", "unit_price")
    return {"opportunity_id": _associated(r, "deals"), "product_id": _text(p, "hs_product_id"),
            "price_book_entry_id": None, "quantity": _decimal(p, "quantity", "quantity"),
            "unit_price": price - (discount or 0) if price is not None else None,
            "list_price": price,
            "discount": _decimal(p, "hs_discount_percentage", "discount"),
            "total_price": _decimal(p, "amount", "total_price")}


def _product(r: Mapping[str, Any], stages: Stages) -> dict[str, Any]:
    p = _props(r)
    return {"name": _text(p, "name"), "product_code": _text(p, "hs_sku"),
            "family": _text(p, "product_family"), "is_active": _bool(p, "active", "is_active"),
            "unit_cost": _decimal(p, "hs_cost_of_goods_sold", "unit_cost")}


MAPPERS: dict[str, Callable[[Mapping[str, Any], Stages], dict[str, Any]]] = {
    "account": _account, "contact": _contact, "opportunity": _opportunity,
    "opportunity_line": _line, "product": _product,
}


def _user(record: Mapping[str, Any]) -> Upsert | Quarantine:
    """An owner: `{id, email, firstName, lastName, createdAt, updatedAt, archived}`."""
    raw = dict(record)
    try:
        modified = parse_stamp(str(record["updatedAt"]))
        created = parse_stamp(str(record["createdAt"]))
    except (KeyError, ValueError):
        return Quarantine(_id(record), None, raw, "user: updatedAt or createdAt missing or "
                          "not a date-time")
    source_id = _id(record)
    if source_id is None:
        return Quarantine(None, modified, raw, "owner has no id")
    name = " ".join(str(p) for p in (record.get("firstName"), record.get("lastName")) if p)
    return Upsert(source_id, modified, {
        "name": name or None, "email": record.get("email"), "title": None,
        "department": None, "manager_id": None,
        "is_active": not bool(record.get("archived")), "source_created_at": created}, raw)


def _id(record: Mapping[str, Any]) -> str | None:
    value = record.get("id")
    return str(value) if isinstance(value, str | int) and str(value) else None


def map_record(object_name: str, record: Mapping[str, Any],
               stages: Stages | None = None) -> Upsert | Quarantine:
    """Map one HubSpot record, or quarantine it with the reason. `stages` (deals only):
    stage id -> (label, closed, won) from the deal pipelines."""
    if object_name == "user":
        return _user(record)
    raw = dict(record)
    kind = OBJECT_TYPES[object_name]
    stamp_name = MODIFIED_PROPERTY[kind]
    props = _props(record)
    source_id = _id(record)
    try:
        modified = _datetime(props, stamp_name, "modified") or parse_stamp(
            str(record["updatedAt"]))
    except (KeyError, ValueError, Unmappable):
        return Quarantine(source_id, None, raw, f"{stamp_name} missing or not a date-time")
    if source_id is None:
        return Quarantine(None, modified, raw, "record has no id")
    try:
        fields = MAPPERS[object_name](record, stages or {})
        fields["source_created_at"] = _datetime(props, "createdate", "source_created_at") or (
            parse_stamp(str(record["createdAt"])) if record.get("createdAt") else None)
    except Unmappable as exc:
        return Quarantine(source_id, modified, raw, f"{object_name}.{exc}")
    except ValueError:
        return Quarantine(source_id, modified, raw, f"{object_name}.source_created_at: "
                          "createdAt is not a date-time")
    return Upsert(source_id=source_id, modified_at=modified, fields=fields, raw=raw)
