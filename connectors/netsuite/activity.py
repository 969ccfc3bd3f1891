"""NetSuite activities: the common `activity`, read from three record types.

NetSuite keeps logged calls as `phonecall`, to-dos as `task` and meetings as
`calendarevent`, each with its own internal ids, stamps and DeletedRecord type; each is
one part of the read (`connectors.parts.read_parts`: a cursor per part, one
LiveIds for all). Source ids carry the record type (`phonecall:12`), as ids of different
types may meet. E-mails are `message` records and are not read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from connectors.netsuite.source import MODIFIED, Source, day, parse_stamp, stamp

PARTS: tuple[str, ...] = ("phonecall", "task", "calendarevent")
KIND = {"phonecall": "call", "task": "task", "calendarevent": "meeting"}
# Statuses a call or a to-do can have, and whether each means done.
DONE = {"COMPLETE": True, "SCHEDULED": False, "NOTSTART": False, "PROGRESS": False,
        "DEFERRED": False}


def _common(alias: str, part: str) -> dict[str, str]:
    return {"recordtype": f"'{part}'", "id": f"{alias}.id",
            MODIFIED: stamp(f"{alias}.lastmodifieddate"), "created": stamp(f"{alias}.createddate"),
            "title": f"{alias}.title", "status": f"{alias}.status", "company": f"{alias}.company",
            "transaction": f"{alias}.transaction"}


_LINKS = {"subject": "title", "account_id": "company", "opportunity_id": "transaction",
          "source_created_at": "created"}

SOURCES: dict[str, Source] = {
    "phonecall": Source(
        "phonecall a", "a.id", "a.lastmodifieddate",
        {**_common("a", "phonecall"), "startdate": day("a.startdate"),
         "completeddate": stamp("a.completeddate"), "assigned": "a.assigned",
         "contact": "a.contact", "duration": "a.custevent_duration_minutes"},
        {**_LINKS, "status": "status", "due_date": "startdate", "activity_at": "completeddate",
         "owner_id": "assigned", "contact_id": "contact", "duration_minutes": "duration"},
        deleted_types=("phonecall",)),
    "task": Source(
        "task a", "a.id", "a.lastmodifieddate",
        {**_common("a", "task"), "duedate": day("a.duedate"),
         "completeddate": stamp("a.completeddate"), "assigned": "a.assigned",
         "contact": "a.contact"},
        {**_LINKS, "status": "status", "due_date": "duedate", "activity_at": "completeddate",
         "owner_id": "assigned", "contact_id": "contact"},
        deleted_types=("task",)),
    "calendarevent": Source(
        "calendarevent a", "a.id", "a.lastmodifieddate",
        {**_common("a", "calendarevent"), "startdate": stamp("a.startdate"),
         "enddate": stamp("a.enddate"), "organizer": "a.organizer"},
        {**_LINKS, "activity_at": "startdate", "owner_id": "organizer"},
        deleted_types=("calendarevent",)),
}


class Refused(ValueError):
    """A value the activity's derived columns cannot be taken from."""


def part_of(raw: Mapping[str, Any]) -> str | None:
    part = raw.get("recordtype")
    return str(part) if part in SOURCES else None


def source_id(part: str, record_id: Any) -> str:
    return f"{part}:{record_id}"


def derived(part: str, raw: Mapping[str, Any], fields: Mapping[str, Any], tz: ZoneInfo
            ) -> dict[str, Any]:
    """The columns no single field holds: the kind, done or not, a meeting's length."""
    out: dict[str, Any] = {"activity_type": KIND[part], "lead_id": None}
    if part == "calendarevent":
        out["is_closed"] = None  # meetings have no done flag
        start, end = fields.get("activity_at"), raw.get("enddate")
        if start is not None and end is not None:
            finish = parse_stamp(str(end), tz)
            out["duration_minutes"] = (finish - start).total_seconds() / 60
        return out
    status = raw.get("status")
    if status not in DONE:
        raise Refused(f"status={status!r:.80} is none of {sorted(DONE)}")
    out["is_closed"] = DONE[str(status)]
    return out
