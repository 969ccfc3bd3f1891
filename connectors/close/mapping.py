"""Close records in the common model: which resource and field feeds each column.

Kept apart from the adapter's network code so quarantined records can be mapped again
offline. Close's words: a *lead* is a company (the common `account`), contacts belong to
a lead, an opportunity belongs to a lead and carries its `value` in cents with a
`value_period`, and its stage is an opportunity status with a type (active, won, lost).

Values are passed on as Close sent them, except what Close spells its own way: its
date-time and date text, and money in cents. The warehouse's column rules (the same for
every connector) store each value exactly or quarantine it; what this module cannot read
faithfully (a stamp that is no date-time, cents that are not a whole number, a status type
Close does not have) is quarantined here, with the reason, never guessed.

Decisions:
- `amount` is `value` / 100 exactly (a Decimal), as Close reports it, *not* annualised: a
  monthly deal of 1,000.00 is amount 1000.0 with `value_period` "monthly" kept in `raw`.
  Annualising would invent a contract length Close does not know.
- `name` of an opportunity is its `note`, the one free text Close gives a deal.
- A contact's one `name` is split at its last space into first / last name (the split is
  undone by joining them with a space; one word is a last name only).
- Activities are read from the typed endpoints of the kinds the common model knows —
  calls, e-mails, meetings — and to-dos from Close's tasks (`/task/`). Notes, SMS, status
  changes and Close's other activity types have no common kind and are not read (a list
  of every activity would quarantine them all). Activities have no opportunity in Close
  (they hang off the lead): `opportunity_id` is always None; `account_id` is the lead. A
  task has no word for its state and no completion time: `status` and `activity_at` are
  None, `is_closed` is its `is_complete`.
- `list_amount` (the deal at list price) is an opportunity custom field, "List Price" (a
  number, in currency units: Close custom fields carry no cents), as orgs that track list
  prices keep it; Close has no line items to sum. Absent field or no value: None. Anything
  but a JSON number is quarantined (a text "1,200" or "1200" on a number field is not what
  Close sends; guessing its meaning would put a wrong list price into pricing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from connectors.base import Quarantine, Upsert

CURSOR_FIELD = "date_updated"

# Common object -> the Close resources (API paths) it is read from, in reading order.
SOURCES: dict[str, tuple[str, ...]] = {
    "account": ("lead",), "contact": ("contact",), "opportunity": ("opportunity",),
    "user": ("user",),
    "activity": ("activity/call", "activity/email", "activity/meeting", "task"),
}
# Close activity `_type` -> the common kind.
ACTIVITY_KINDS: dict[str, str] = {"Call": "call", "Email": "email", "Meeting": "meeting"}
TASK_TYPE = "lead"  # a task's `_type`: Close's to-dos on a lead
# Resource -> the event log's `object_type` of its records (where deletes are reported).
EVENT_TYPES: dict[str, str] = {
    "lead": "lead", "contact": "contact", "opportunity": "opportunity",
    "activity/call": "activity.call", "activity/email": "activity.email",
    "activity/meeting": "activity.meeting", "task": "task.lead",
}
STATUS_TYPES = ("active", "won", "lost")
# Lead custom fields (by their name in Close) -> common account column.
LEAD_CUSTOM_FIELDS: dict[str, str] = {
    "Industry": "industry", "Employees": "employee_count", "Annual Revenue": "annual_revenue",
    "Account Type": "account_type", "Lead Owner": "owner_id",
}
# Opportunity custom fields (by their name in Close) -> common opportunity column.
OPPORTUNITY_CUSTOM_FIELDS: dict[str, str] = {"List Price": "list_amount"}
# Common object -> (Close's custom field resource, its fields by name, the config setting an
# org that names them otherwise uses: `{"<common column>": "<its name in Close>"}`).
CUSTOM_FIELDS: dict[str, tuple[str, dict[str, str], str]] = {
    "account": ("lead", LEAD_CUSTOM_FIELDS, "lead_custom_fields"),
    "opportunity": ("opportunity", OPPORTUNITY_CUSTOM_FIELDS, "opportunity_custom_fields"),
}


class Unmappable(ValueError):
    """A value this mapping cannot read faithfully; the message is the quarantine reason."""


def parse_close_datetime(value: str) -> datetime:
    """Close's `2024-01-01T10:00:00.123000+00:00` (and other ISO forms) as aware UTC."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def close_datetime(value: datetime) -> str:
    """A filter value Close reads: ISO 8601 with microseconds, UTC."""
    utc = value.astimezone(UTC)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S.%f}+00:00"


def _datetime(value: Any, where: str) -> Any:
    if not isinstance(value, str):
        return value  # None, or a wrong type the warehouse's rules refuse with the reason
    try:
        return parse_close_datetime(value)
    except ValueError:
        raise Unmappable(f"{where}={value!r:.80} is not a date-time") from None


def _date(value: Any, where: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Unmappable(f"{where}={value!r:.80} is not a date") from None


def _created(record: Mapping[str, Any]) -> Any:
    return _datetime(record.get("date_created"), "source_created_at: date_created")


def _due_date(value: Any, where: str) -> Any:
    """A task's `date`: a day, or a date-time when the task has a time; the day as written
    (in the date-time's own offset, never shifted to UTC)."""
    if isinstance(value, str) and "T" in value:
        try:
            return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).date()
        except ValueError:
            raise Unmappable(f"{where}={value!r:.80} is not a date") from None
    return _date(value, where)


def cents(value: Any, where: str) -> Decimal | None:
    """Close money (whole cents) in currency units, exactly."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Unmappable(f"{where}={value!r:.80} is not a whole number of cents")
    return Decimal(value).scaleb(-2)


def number(value: Any, where: str, field: str) -> int | float | None:
    """A number custom field's value as Close sent it (a JSON number), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unmappable(f"{where}={value!r:.80} is not a number (custom field {field})")
    return value


def _first(items: Any, key: str) -> Any:
    """The first entry's `key` of a list of dicts (a contact's e-mails, a lead's addresses)."""
    if isinstance(items, list) and items and isinstance(items[0], Mapping):
        return items[0].get(key)
    return None


def split_name(name: Any) -> tuple[Any, Any]:
    if not isinstance(name, str):
        return None, name
    first, _, last = name.strip().rpartition(" ")
    return (first or None), (last or None)


def _account(r: Mapping[str, Any], custom: Mapping[str, str]) -> dict[str, Any]:
    fields: dict[str, Any] = {column: None for column in LEAD_CUSTOM_FIELDS.values()}
    for name, column in LEAD_CUSTOM_FIELDS.items():
        key = custom.get(name)
        if key is not None:
            fields[column] = r.get(key)
    addresses = r.get("addresses")
    return {**fields, "name": r.get("name"), "website": r.get("url"),
            "billing_country": _first(addresses, "country"),
            "billing_state": _first(addresses, "state"), "parent_id": None,
            "source_created_at": _created(r)}


def _contact(r: Mapping[str, Any], custom: Mapping[str, str]) -> dict[str, Any]:
    first, last = split_name(r.get("name"))
    return {"account_id": r.get("lead_id"), "first_name": first, "last_name": last,
            "email": _first(r.get("emails"), "email"), "title": r.get("title"),
            "owner_id": None,
            "source_created_at": _created(r)}


def _opportunity(r: Mapping[str, Any], custom: Mapping[str, str]) -> dict[str, Any]:
    status_type = r.get("status_type")
    if status_type not in STATUS_TYPES:
        raise Unmappable(f"is_closed: status_type={status_type!r:.80} is none of "
                         f"{', '.join(STATUS_TYPES)}")
    list_key = custom.get("List Price")  # the org's own name for it, if configured
    list_amount = (number(r.get(list_key), f"list_amount: {list_key}", "List Price")
                   if list_key else None)
    return {"name": r.get("note"), "account_id": r.get("lead_id"),
            "amount": cents(r.get("value"), "amount: value"), "list_amount": list_amount,
            "stage": r.get("status_label"), "is_closed": status_type != "active",
            "is_won": status_type == "won",
            "close_date": _date(r.get("date_won"), "close_date: date_won"),
            "probability": r.get("confidence"), "opportunity_type": None, "lead_source": None,
            "owner_id": r.get("user_id"), "price_book_id": None,
            "source_created_at": _created(r)}


def _user(r: Mapping[str, Any], custom: Mapping[str, str]) -> dict[str, Any]:
    parts = [p for p in (r.get("first_name"), r.get("last_name")) if p]
    name = " ".join(str(p) for p in parts) if all(isinstance(p, str) for p in parts) else parts
    return {"name": name or None, "email": r.get("email"), "title": None, "department": None,
            "manager_id": None, "is_active": None,
            "source_created_at": _created(r)}


def _task(r: Mapping[str, Any]) -> dict[str, Any]:
    return {"subject": r.get("text"), "activity_type": "task", "status": None,
            "activity_at": None, "due_date": _due_date(r.get("date"), "due_date: date"),
            "is_closed": r.get("is_complete"), "duration_minutes": None,
            "owner_id": r.get("assigned_to"), "account_id": r.get("lead_id"),
            "opportunity_id": None, "contact_id": r.get("contact_id"), "lead_id": None,
            "source_created_at": _created(r)}


# Where each activity kind says when it happened (an e-mail not sent yet: when written).
ACTIVITY_AT = {"Call": "date_created", "Email": "date_sent", "Meeting": "starts_at"}


def _activity(r: Mapping[str, Any], custom: Mapping[str, str]) -> dict[str, Any]:
    kind = r.get("_type")
    if str(r.get("id", "")).startswith("task_") and kind == TASK_TYPE:
        return _task(r)
    if kind not in ACTIVITY_KINDS:
        raise Unmappable(f"activity_type: _type={kind!r:.80} is none of "
                         f"{', '.join(ACTIVITY_KINDS)}")
    seconds = r.get("duration")
    # Seconds to minutes as Salesforce's mapping does; any other value goes on as it came.
    duration = (seconds / 60 if isinstance(seconds, int | float) and not isinstance(
        seconds, bool) else seconds) if kind in ("Call", "Meeting") else None
    at_field = ACTIVITY_AT[kind]
    if r.get(at_field) is None and kind == "Email":
        at_field = "date_created"
    return {"subject": r.get({"Email": "subject", "Meeting": "title"}.get(kind, "")),
            "activity_type": ACTIVITY_KINDS[kind], "status": None,
            "activity_at": _datetime(r.get(at_field), f"activity_at: {at_field}"),
            "due_date": None, "is_closed": None, "duration_minutes": duration,
            "owner_id": r.get("user_id"), "account_id": r.get("lead_id"),
            "opportunity_id": None, "contact_id": r.get("contact_id"), "lead_id": None,
            "source_created_at": _created(r)}


MAPPERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, str]], dict[str, Any]]] = {
    "account": _account, "contact": _contact, "opportunity": _opportunity, "user": _user,
    "activity": _activity,
}


def map_record(object_name: str, record: Mapping[str, Any],
               custom_fields: Mapping[str, str] | None = None) -> Upsert | Quarantine:
    """Map one Close record, or quarantine it with the reason.

    `custom_fields` names the object's custom fields' keys (`Industry` or `List Price` ->
    `custom.cf_...`), as the organization's `/custom_field/lead/` or
    `/custom_field/opportunity/` lists them (see `CloseConnector.custom_fields`).
    """
    raw = dict(record)
    source_id = record.get("id")
    try:
        modified_at = parse_close_datetime(str(record[CURSOR_FIELD]))
    except (KeyError, ValueError):
        return Quarantine(source_id if isinstance(source_id, str) else None, None, raw,
                          f"{CURSOR_FIELD} missing or not a date-time")
    if not isinstance(source_id, str) or not source_id:
        return Quarantine(None, modified_at, raw, "record has no id")
    try:
        fields = MAPPERS[object_name](record, custom_fields or {})
    except Unmappable as exc:
        return Quarantine(source_id, modified_at, raw, f"{object_name}.{exc}")
    return Upsert(source_id=source_id, modified_at=modified_at, fields=fields, raw=raw)
