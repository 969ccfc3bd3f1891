"""Seeded activities: the calls, e-mails, meetings and to-dos sellers log on their deals.

A few per deal, more on won deals (a deal that closes has had more meetings), all dated
inside the deal's life: from its creation to its close, or to the anchor for an open deal.
About one open deal in five went quiet part-way through its life (no activity since),
so stalled deals exist to be found. Drawn from a random stream of their own, so adding
activities changes none of the other seeded records.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

Format = Callable[[float], str]  # seconds since the epoch -> Salesforce's text

DAY = 86400.0
# (fewest, most) activities per deal, by outcome.
PER_DEAL = {"won": (3, 7), "lost": (1, 4), "open": (1, 4)}
QUIET_SHARE = 0.2  # open deals whose activities stopped part-way
KINDS = (("call", 0.35), ("email", 0.3), ("meeting", 0.25), ("todo", 0.1))
CALL_SUBJECTS = ("Call", "Discovery call", "Follow-up call", "Pricing call", "Check-in call")
EMAIL_SUBJECTS = ("Email: proposal", "Email: pricing follow-up", "Email: next steps",
                  "Email: intro", "Email: order form")
MEETING_SUBJECTS = ("Product demo", "Discovery meeting", "Negotiation meeting",
                    "Executive briefing", "Technical workshop")
TODO_SUBJECTS = ("Send proposal", "Prepare quote", "Follow up on pricing", "Send contract",
                 "Book a demo")
CALL_RESULTS = ("Connected", "Left voicemail", "No answer", "Meeting booked")


def _kind(rng: random.Random) -> str:
    return rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS])[0]


def _life(rng: random.Random, deal: dict[str, Any], anchor: float) -> tuple[float, float]:
    """When the deal's activities may happen: created to closed (or to now, or to going quiet)."""
    start = float(deal["_created"])
    if deal["IsClosed"]:
        end = min(float(deal["_close"]) + 0.75 * DAY, anchor - 1.0)
    else:
        end = anchor - 1.0
        if rng.random() < QUIET_SHARE:
            end = start + (end - start) * rng.uniform(0.1, 0.5)
    return start, max(start, end)


def build_activities(rng: random.Random, anchor: float, opportunities: list[dict[str, Any]],
                     ts: Format, day: Format) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(tasks, events) for the seeded deals; `ts` / `day` format seconds as Salesforce does."""
    tasks: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for deal in opportunities:
        outcome = "open" if not deal["IsClosed"] else ("won" if deal["IsWon"] else "lost")
        start, end = _life(rng, deal, anchor)
        account = deal["_refs"]["AccountId"]
        owner = deal["_refs"]["OwnerId"]
        contacts = account.get("_contacts") or [None]
        for _ in range(rng.randint(*PER_DEAL[outcome])):
            at = rng.uniform(start, end)
            kind = _kind(rng)
            refs = {"WhatId": deal, "WhoId": rng.choice(contacts), "AccountId": account,
                    "OwnerId": owner, "CreatedById": owner, "LastModifiedById": owner}
            if kind == "meeting":
                events.append(_event(rng, at, start, anchor, refs, ts, day))
            else:
                tasks.append(_task(rng, kind, at, anchor, refs, ts, day,
                                   still_open=outcome == "open" and at > anchor - 14 * DAY))
    return tasks, events


def _audit(record: dict[str, Any], created: float, modified: float, ts: Format) -> None:
    record["CreatedDate"] = ts(created)
    record["LastModifiedDate"] = record["SystemModstamp"] = ts(max(created, modified))
    record["IsDeleted"] = False
    record["IsArchived"] = False


def _task(rng: random.Random, kind: str, at: float, anchor: float, refs: dict[str, Any],
          ts: Format, day: Format, *, still_open: bool) -> dict[str, Any]:
    record: dict[str, Any] = {"_refs": refs, "Priority": "Normal", "IsHighPriority": False,
                              "IsReminderSet": False, "CallType": None}
    if kind == "call":
        record.update(Subject=rng.choice(CALL_SUBJECTS), TaskSubtype="Call", Type="Call",
                      CallType=rng.choice(("Outbound", "Outbound", "Inbound")),
                      CallDurationInSeconds=rng.randint(60, 2400),
                      CallDisposition=rng.choice(CALL_RESULTS))
    elif kind == "email":
        record.update(Subject=rng.choice(EMAIL_SUBJECTS), TaskSubtype="Email", Type="Email")
    else:
        record.update(Subject=rng.choice(TODO_SUBJECTS), TaskSubtype="Task", Type="Other")
    if kind == "todo" and still_open:
        # A to-do planned recently and not done yet (its due date never after the anchor).
        due = min(at + rng.uniform(1, 7) * DAY, anchor - 1.0)
        record.update(Status=rng.choice(("Not Started", "In Progress")), IsClosed=False,
                      ActivityDate=day(due), CompletedDateTime=None)
        _audit(record, at, at, ts)
        return record
    created = at - rng.uniform(1, 5) * DAY if kind == "todo" else at
    record.update(Status="Completed", IsClosed=True, ActivityDate=day(at),
                  CompletedDateTime=ts(at))
    _audit(record, min(created, at), at, ts)
    return record


def _event(rng: random.Random, at: float, life_start: float, anchor: float,
           refs: dict[str, Any], ts: Format, day: Format) -> dict[str, Any]:
    minutes = rng.choice((30, 45, 60, 60, 90))
    begin = min(at, anchor - minutes * 60 - 1.0)
    begin -= begin % 900  # on a quarter hour, ended before the anchor
    end = begin + minutes * 60
    record: dict[str, Any] = {
        "_refs": refs, "Subject": rng.choice(MEETING_SUBJECTS), "Type": "Meeting",
        "Location": rng.choice((None, "Video call", "Customer office", "Our office")),
        "IsAllDayEvent": False, "ActivityDateTime": ts(begin), "ActivityDate": day(begin),
        "DurationInMinutes": minutes, "StartDateTime": ts(begin), "EndDateTime": ts(end),
        "EndDate": day(end), "IsPrivate": False, "ShowAs": "Busy", "EventSubtype": "Event",
        "IsChild": False, "IsGroupEvent": False, "IsReminderSet": False,
    }
    booked = max(life_start, begin - rng.uniform(0.5, 10) * DAY)
    _audit(record, min(booked, begin), begin, ts)
    return record
