"""Task and Event, Salesforce's activities: their fields and the rules Salesforce applies.

Kept as in a real org: `WhoId` (a contact or a lead) and `WhatId` (an account or an
opportunity here) are polymorphic lookups, told apart by the id's key prefix; `AccountId`
is derived from them and read-only; a task's `IsClosed` follows its status and
`CompletedDateTime` is stamped when it closes; an event's start, end, duration and dates
are kept consistent whichever of them the caller sent. Deleting the account, opportunity,
contact or lead an activity belongs to deletes the activity too (and undeleting it
restores it), as Salesforce does.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .errors import ApiError
from .schema import FieldDef, ObjectDef, _bool, _date, _number, _obj, _picklist, _string
from .values import format_date, format_datetime, parse_date, parse_datetime

if TYPE_CHECKING:
    from .writes import RecordWriter, WriteContext

TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else",
                 "Deferred")
CLOSED_STATUSES = frozenset({"Completed"})
PRIORITIES = ("High", "Normal", "Low")
ACTIVITY_TYPES = ("Call", "Email", "Meeting", "Other")
TASK_SUBTYPES = ("Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn")
CALL_TYPES = ("Internal", "Inbound", "Outbound")
SHOW_AS = ("Busy", "OutOfOffice", "Free")
WHAT_TARGETS = ("Account", "Opportunity")
WHO_TARGETS = ("Contact", "Lead")
MAX_EVENT_MINUTES = 14 * 24 * 60  # Salesforce: an event lasts at most 14 days


def _polymorphic(name: str, label: str, targets: tuple[str, ...], relationship: str,
                 child: str) -> FieldDef:
    return FieldDef(name, "reference", label, length=18, reference_to=targets,
                    relationship_name=relationship, child_relationship=child,
                    cascade_delete=True)


def _datetime(name: str, label: str, *, createable: bool = True,
              updateable: bool = True) -> FieldDef:
    return FieldDef(name, "datetime", label, createable=createable, updateable=updateable)


def _read_only(definition: FieldDef) -> FieldDef:
    return replace(definition, createable=False, updateable=False)


def _common(child: str) -> list[FieldDef]:
    """The fields Task and Event share: the relations and what the activity is."""
    return [
        _polymorphic("WhoId", "Name ID", WHO_TARGETS, "Who", child),
        _polymorphic("WhatId", "Related To ID", WHAT_TARGETS, "What", child),
        _string("Subject", "Subject", 255, type_="combobox", name_field=True),
        _read_only(FieldDef("AccountId", "reference", "Account ID", length=18,
                            reference_to=("Account",), relationship_name="Account")),
        _picklist("Type", "Type", ACTIVITY_TYPES),
        _string("Description", "Description", 32000, type_="textarea", filterable=False),
        _bool("IsArchived", "Archived", createable=False, updateable=False),
    ]


def activity_objects() -> list[ObjectDef]:
    """The Task and Event definitions (key prefixes 00T and 00U, as in every org)."""
    task = _obj("Task", "Task", "Tasks", "00T", [
        *_common("Tasks"),
        _date("ActivityDate", "Due Date Only"),
        _picklist("Status", "Status", TASK_STATUSES, required=True, default="Not Started"),
        _picklist("Priority", "Priority", PRIORITIES, required=True, default="Normal"),
        _bool("IsHighPriority", "High Priority", createable=False, updateable=False),
        _bool("IsClosed", "Closed", createable=False, updateable=False),
        _number("CallDurationInSeconds", "int", "Call Duration", 8, 0),
        _picklist("CallType", "Call Type", CALL_TYPES),
        _string("CallDisposition", "Call Result", 255),
        _picklist("TaskSubtype", "Task Subtype", TASK_SUBTYPES, updateable=False,
                  default="Task"),
        _datetime("CompletedDateTime", "Completed Date/Time", createable=False,
                  updateable=False),
        _datetime("ReminderDateTime", "Reminder Date/Time"),
        _bool("IsReminderSet", "Reminder Set"),
    ], owner=True, indexed_fields=("WhatId", "WhoId"))
    event = _obj("Event", "Event", "Events", "00U", [
        *_common("Events"),
        _string("Location", "Location", 255),
        _bool("IsAllDayEvent", "All-Day Event"),
        _datetime("ActivityDateTime", "Due Date Time"),
        _date("ActivityDate", "Due Date Only"),
        _number("DurationInMinutes", "int", "Duration", 8, 0),
        _datetime("StartDateTime", "Start Date Time"),
        _datetime("EndDateTime", "End Date Time"),
        _date("EndDate", "End Date Only", createable=False, updateable=False),
        _bool("IsPrivate", "Private"),
        _picklist("ShowAs", "Show Time As", SHOW_AS, default="Busy"),
        _picklist("EventSubtype", "Event Subtype", ("Event",), updateable=False,
                  default="Event"),
        _bool("IsChild", "Is Child", createable=False, updateable=False),
        _bool("IsGroupEvent", "Group Event", createable=False, updateable=False),
        _datetime("ReminderDateTime", "Reminder Date/Time"),
        _bool("IsReminderSet", "Reminder Set"),
    ], owner=True, indexed_fields=("WhatId", "WhoId"))
    return [task, event]


# -- the rules on write ----------------------------------------------------------------------


def _relations(writer: RecordWriter, record: dict[str, Any], ctx: WriteContext) -> None:
    """A lead cannot be paired with a record; AccountId follows WhatId, then the contact."""
    who, what = record.get("WhoId"), record.get("WhatId")
    if who is not None and who.startswith("00Q") and what is not None:
        raise ApiError(400, "FIELD_INTEGRITY_EXCEPTION",
                       "Related To ID: an activity about a lead cannot also be related to a "
                       "record", ["WhatId"])
    account = None
    if what is not None and what.startswith("001"):
        account = what
    elif what is not None and what.startswith("006"):
        account = (writer.load_live(ctx, "Opportunity", what) or {}).get("AccountId")
    elif who is not None and who.startswith("003"):
        account = (writer.load_live(ctx, "Contact", who) or {}).get("AccountId")
    record["AccountId"] = account


def derive_task(writer: RecordWriter, record: dict[str, Any], old: dict[str, Any] | None,
                changed: set[str], ctx: WriteContext) -> None:
    _relations(writer, record, ctx)
    closed = record.get("Status") in CLOSED_STATUSES
    was_closed = bool(old and old.get("IsClosed"))
    record["IsClosed"] = closed
    record["IsHighPriority"] = record.get("Priority") == "High"
    if closed and not was_closed:
        record["CompletedDateTime"] = ctx.now
    elif not closed:
        record["CompletedDateTime"] = None


def _minutes_between(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds() // 60)


def derive_event(writer: RecordWriter, record: dict[str, Any], old: dict[str, Any] | None,
                 changed: set[str], ctx: WriteContext) -> None:
    """Start, end, duration and dates agree; the field the caller sent wins."""
    _relations(writer, record, ctx)
    if record.get("IsAllDayEvent"):
        day = record.get("ActivityDate") or (record.get("StartDateTime") or "")[:10] or None
        if day is None:
            raise ApiError(400, "REQUIRED_FIELD_MISSING",
                           "Required fields are missing: [ActivityDate]", ["ActivityDate"])
        first = parse_date(day)
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        record["ActivityDateTime"] = None
        if "DurationInMinutes" not in changed and "EndDateTime" not in changed:
            record["DurationInMinutes"] = 1440
    else:
        sent = "ActivityDateTime" if "ActivityDateTime" in changed else "StartDateTime"
        start_text = record.get(sent) or record.get("StartDateTime") or record.get(
            "ActivityDateTime")
        if start_text is None:
            raise ApiError(400, "REQUIRED_FIELD_MISSING",
                           "Required fields are missing: [ActivityDateTime]",
                           ["ActivityDateTime"])
        start = parse_datetime(start_text)
        record["ActivityDateTime"] = format_datetime(start)
    record["StartDateTime"] = format_datetime(start)
    record["ActivityDate"] = format_date(start.date())
    if "EndDateTime" in changed and "DurationInMinutes" not in changed \
            and record.get("EndDateTime") is not None:
        record["DurationInMinutes"] = _minutes_between(start,
                                                       parse_datetime(record["EndDateTime"]))
    minutes = record.get("DurationInMinutes")
    if minutes is None:
        raise ApiError(400, "REQUIRED_FIELD_MISSING",
                       "Required fields are missing: [DurationInMinutes]", ["DurationInMinutes"])
    if not 0 <= minutes <= MAX_EVENT_MINUTES:
        raise ApiError(400, "FIELD_INTEGRITY_EXCEPTION",
                       "Duration: an event lasts from 0 minutes to 14 days",
                       ["DurationInMinutes"])
    end = start + timedelta(minutes=minutes)
    record["EndDateTime"] = format_datetime(end)
    record["EndDate"] = format_date(end.date())
