"""SugarCRM activities: the common `activity`, read from four modules.

Sugar keeps logged calls in `Calls`, meetings in `Meetings`, to-dos in `Tasks` and e-mails
in `Emails`, each with its own records and stamps; each module is one part of the read
(`connectors.parts.read_parts`: a cursor per module, one LiveIds for all). Sugar's ids are
UUIDs, unique across modules, so source ids need no prefix; a record's module is its
`_module` (every answer of the filter API names it).

An activity hangs off one record, `parent_type` / `parent_id`: an account, an opportunity,
a lead or a contact becomes that column (any other parent, a case say, links nothing);
the contact is also `contact_id` where the module has one. When the parent is an
opportunity, Sugar names no account: `account_id` is None (the deal names it).

Decisions: a call's or meeting's length is `duration_hours` × 60 + `duration_minutes`; a
call's `status` is Sugar's word (Held, Planned, Not Held), a meeting has none (the common
model's rule); a task is closed when its status is "Completed", its due date is the day of
`date_due` as Sugar writes it (in the user's zone), and it has no `activity_at` (Sugar
keeps no completion time); an e-mail happened at `date_sent`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

PARTS: tuple[str, ...] = ("Calls", "Meetings", "Tasks", "Emails")
KIND = {"Calls": "call", "Meetings": "meeting", "Tasks": "task", "Emails": "email"}
PARENT_COLUMNS = {"Accounts": "account_id", "Opportunities": "opportunity_id",
                  "Leads": "lead_id", "Contacts": "contact_id"}
# Common column -> (Sugar field, kind) per module (kinds as in `mapping._read`).
FIELDS: dict[str, dict[str, tuple[str, str]]] = {
    "Calls": {"subject": ("name", "text"), "status": ("status", "text"),
              "activity_at": ("date_start", "datetime"), "owner_id": ("assigned_user_id", "id"),
              "contact_id": ("contact_id", "id")},
    "Meetings": {"subject": ("name", "text"), "activity_at": ("date_start", "datetime"),
                 "owner_id": ("assigned_user_id", "id"), "contact_id": ("contact_id", "id")},
    "Tasks": {"subject": ("name", "text"), "status": ("status", "text"),
              "due_date": ("date_due", "day_of"), "owner_id": ("assigned_user_id", "id"),
              "contact_id": ("contact_id", "id")},
    "Emails": {"subject": ("name", "text"), "activity_at": ("date_sent", "datetime"),
               "owner_id": ("assigned_user_id", "id")},
}

Reader = Callable[[Any, str, str], Any]


def derived(module: str, record: Mapping[str, Any], read: Reader) -> dict[str, Any]:
    """The columns no single field gives: kind, links from the parent, length, closed."""
    out: dict[str, Any] = {"activity_type": KIND[module], "account_id": None,
                           "opportunity_id": None, "lead_id": None, "is_closed": None,
                           "duration_minutes": None}
    parent = PARENT_COLUMNS.get(str(record.get("parent_type")))
    if parent is not None:
        out[parent] = read(record.get("parent_id"), "id", f"{parent}: parent_id")
    if module in ("Calls", "Meetings"):
        hours = read(record.get("duration_hours"), "int", "duration_minutes: duration_hours")
        minutes = read(record.get("duration_minutes"), "int",
                       "duration_minutes: duration_minutes")
        if hours is not None and minutes is not None:
            out["duration_minutes"] = hours * 60 + minutes
    if module == "Tasks":
        out["is_closed"] = record.get("status") == "Completed"
    return out
