"""Seeded activities: the calls, e-mails, meetings and to-dos sellers log on their deals.

A few per deal, more on won deals (a deal that closes has had more meetings), all dated
inside the deal's life: from its creation to its close, or to the anchor for an open deal.
About one open deal in five went quiet part-way through its life (no activity since),
so stalled deals exist to be found. Drawn from a random stream of their own, so adding
activities changes none of the other seeded records.

Records are `activity` drafts in the common model's words; `extra["kind"]` keeps the four
seeded kinds apart (call, email, meeting, todo) for CRMs that store them differently.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from .deal_builder import Draft, millis

if TYPE_CHECKING:
    from .deal_builder import Builder

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


def _life(rng: random.Random, deal: Draft, anchor: float) -> tuple[float, float]:
    """When the deal's activities may happen: created to closed (or to now, or to going quiet)."""
    start = float(deal.scratch["created"])
    if deal.fields["is_closed"]:
        end = min(float(deal.fields["close_date"]) + 0.75 * DAY, anchor - 1.0)
    else:
        end = anchor - 1.0
        if rng.random() < QUIET_SHARE:
            end = start + (end - start) * rng.uniform(0.1, 0.5)
    return start, max(start, end)


def build_activities(rng: random.Random, builder: Builder, opportunities: list[Draft]) -> None:
    """Adds the seeded deals' activities to `builder`."""
    anchor = builder.anchor
    for deal in opportunities:
        outcome = "open" if not deal.fields["is_closed"] else (
            "won" if deal.fields["is_won"] else "lost")
        start, end = _life(rng, deal, anchor)
        account = deal.refs["account_id"]
        owner = deal.refs["owner_id"]
        assert account is not None and owner is not None
        contacts: list[Draft | None] = list(account.scratch.get("contacts") or [None])
        for _ in range(rng.randint(*PER_DEAL[outcome])):
            at = rng.uniform(start, end)
            kind = _kind(rng)
            refs: dict[str, Draft | None] = {
                "opportunity_id": deal, "contact_id": rng.choice(contacts),
                "account_id": account, "owner_id": owner, "lead_id": None}
            if kind == "meeting":
                record = _meeting(rng, builder, at, start, anchor, refs)
            else:
                record = _task(rng, builder, kind, at, anchor, refs,
                               still_open=outcome == "open" and at > anchor - 14 * DAY)
            record.creator = record.modifier = owner


def _stamp(record: Draft, created: float, modified: float) -> None:
    record.created = millis(created)
    record.modified = max(record.created, millis(modified))


def _task(rng: random.Random, builder: Builder, kind: str, at: float, anchor: float,
          refs: dict[str, Draft | None], *, still_open: bool) -> Draft:
    extra: dict[str, object] = {"kind": kind, "priority": "Normal", "call_direction": None,
                                "call_duration_seconds": None, "call_result": None}
    if kind == "call":
        subject = rng.choice(CALL_SUBJECTS)
        extra.update(call_direction=rng.choice(("Outbound", "Outbound", "Inbound")),
                     call_duration_seconds=rng.randint(60, 2400),
                     call_result=rng.choice(CALL_RESULTS))
    elif kind == "email":
        subject = rng.choice(EMAIL_SUBJECTS)
    else:
        subject = rng.choice(TODO_SUBJECTS)
    duration = extra["call_duration_seconds"]
    fields: dict[str, object] = {
        "subject": subject, "activity_type": "task" if kind == "todo" else kind,
        "duration_minutes": round(duration / 60, 2) if isinstance(duration, int) else None}
    if kind == "todo" and still_open:
        # A to-do planned recently and not done yet (its due date never after the anchor).
        due = min(at + rng.uniform(1, 7) * DAY, anchor - 1.0)
        fields.update(status=rng.choice(("Not Started", "In Progress")), is_closed=False,
                      activity_at=None, due_date=due)
        record = builder.new("activity", fields, extra, refs)
        _stamp(record, at, at)
        return record
    created = at - rng.uniform(1, 5) * DAY if kind == "todo" else at
    fields.update(status="Completed", is_closed=True, activity_at=millis(at), due_date=at)
    record = builder.new("activity", fields, extra, refs)
    _stamp(record, min(created, at), at)
    return record


def _meeting(rng: random.Random, builder: Builder, at: float, life_start: float,
             anchor: float, refs: dict[str, Draft | None]) -> Draft:
    minutes = rng.choice((30, 45, 60, 60, 90))
    begin = min(at, anchor - minutes * 60 - 1.0)
    begin -= begin % 900  # on a quarter hour, ended before the anchor
    end = begin + minutes * 60
    record = builder.new("activity", {
        "subject": rng.choice(MEETING_SUBJECTS), "activity_type": "meeting", "status": None,
        "activity_at": begin, "due_date": None, "is_closed": None,
        "duration_minutes": float(minutes),
    }, {"kind": "meeting", "location": rng.choice(
        (None, "Video call", "Customer office", "Our office")), "ends_at": end}, refs)
    booked = max(life_start, begin - rng.uniform(0.5, 10) * DAY)
    _stamp(record, min(booked, begin), begin)
    return record
