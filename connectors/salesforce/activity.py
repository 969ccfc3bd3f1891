"""Salesforce activities: the common `activity` object, read from two sObjects, Task and Event.

Salesforce keeps to-dos, logged calls and e-mails as `Task` and calendar meetings as
`Event`; both carry the same polymorphic relations: `WhatId` (what it is about: an
opportunity, an account...) and `WhoId` (whom: a contact or a lead). The REST API returns
a polymorphic id without its type, so the type is read the way Salesforce defines it: from
the id's first three characters, the key prefix that the global describe reports for every
object (`keyPrefix`; fixed for standard objects, e.g. 006 for Opportunity). The mapping
needs no API call, so a quarantined record can be mapped again offline.

The combined read state keeps one part per sObject (`parts`), each the single-object state
of `connectors.salesforce.connector`, so each part resumes from its own checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Reads one sObject from its part of the state: yields its records and checkpoints (with
# its own state), returns (its delete log still covered the gap?, its final state).

# Common objects read from more than one sObject, in reading order.
MULTI_SOURCE: dict[str, tuple[str, ...]] = {"activity": ("Task", "Event")}

# Standard key prefixes (the global describe's `keyPrefix`) of the objects activities
# point to, and of the activity sObjects themselves.
KEY_PREFIXES: dict[str, str] = {
    "001": "Account", "003": "Contact", "006": "Opportunity", "00Q": "Lead",
    "00T": "Task", "00U": "Event",
}

# Common column -> the Task / Event field it is copied from unchanged (apart from
# Salesforce's own date-time spelling). The other columns are derived below.
DIRECT_FIELDS: dict[str, dict[str, str]] = {
    "Task": {
        "subject": "Subject", "status": "Status", "due_date": "ActivityDate",
        "activity_at": "CompletedDateTime", "is_closed": "IsClosed", "owner_id": "OwnerId",
        "account_id": "AccountId", "source_created_at": "CreatedDate",
    },
    "Event": {
        "subject": "Subject", "activity_at": "StartDateTime",
        "duration_minutes": "DurationInMinutes", "owner_id": "OwnerId",
        "account_id": "AccountId", "source_created_at": "CreatedDate",
    },
}
# The polymorphic relations: common column -> (field, the sObject its id must be of).
RELATIONS: dict[str, tuple[str, str]] = {
    "opportunity_id": ("WhatId", "Opportunity"),
    "contact_id": ("WhoId", "Contact"),
    "lead_id": ("WhoId", "Lead"),
}


def sobject_of(record: Mapping[str, Any]) -> str | None:
    """Task or Event: the type the API names in `attributes`, else the Id's key prefix."""
    attributes = record.get("attributes")
    named = attributes.get("type") if isinstance(attributes, Mapping) else None
    if named in DIRECT_FIELDS:
        return str(named)
    record_id = record.get("Id")
    prefix = KEY_PREFIXES.get(record_id[:3]) if isinstance(record_id, str) else None
    return prefix if prefix in DIRECT_FIELDS else None


def points_to(value: Any) -> str | None:
    """The sObject a polymorphic id points to (by key prefix), or None."""
    if not isinstance(value, str) or len(value) not in (15, 18):
        return None
    return KEY_PREFIXES.get(value[:3])


def activity_type(sobject: str, record: Mapping[str, Any]) -> str:
    """The common kind: a logged call, an e-mail, a meeting, or any other to-do."""
    kind = str(record.get("Type") or "").lower()
    subtype = str(record.get("TaskSubtype") or "").lower()
    if subtype == "call" or kind == "call":
        return "call"
    if sobject == "Event" or kind == "meeting":
        return "meeting"
    if subtype in ("email", "listemail") or kind == "email":
        return "email"
    return "task"


def derived_fields(sobject: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The columns that are not a copy of one field: kind, relations, the call's length."""
    fields: dict[str, Any] = {"activity_type": activity_type(sobject, record)}
    for column, (field_name, target) in RELATIONS.items():
        value = record.get(field_name)
        fields[column] = value if points_to(value) == target else None
    if record.get("AccountId") is None and points_to(record.get("WhatId")) == "Account":
        fields["account_id"] = record.get("WhatId")
    if sobject == "Task":
        seconds = record.get("CallDurationInSeconds")
        # Any other value goes on as it came: the warehouse stores it exactly or quarantines.
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            fields["duration_minutes"] = seconds / 60
        else:
            fields["duration_minutes"] = seconds
    else:
        fields["status"] = None
        fields["due_date"] = None
        fields["is_closed"] = None
    return fields


