"""The shared deal model rendered as a Close organization.

Each common record becomes what Close would hold: accounts become leads (with the
company profile in lead custom fields), contacts join their lead under one `name`,
opportunities carry `value` in cents — the sum of their lines' totals, Close having no
line items — their value at list price (the lines' quantity × list price, in currency
units) in the opportunity custom field "List Price", and an opportunity status per stage,
typed active / won / lost. Calls,
e-mails and meetings become typed activities on the deal's lead, to-dos its tasks
(`/task/`). Not rendered: the common `lead` (Close's leads *are* the companies),
products, price books and lines (Close has none).

Ids are Close-shaped and derived from the neutral ids and the seed, so a seed always gives
the same organization.
"""

from __future__ import annotations

import hashlib
import string
from collections import defaultdict
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from connectors.close.sandbox.serve import LEAD_CUSTOM_FIELDS, ORGANIZATION_ID, custom_field_id
from connectors.close.sandbox.store import PREFIXES, CloseStore, close_time
from connectors.sandbox_kit.deal_builder import STAGES
from connectors.sandbox_kit.deal_model import World, WorldRecord

_ALPHABET = string.ascii_letters + string.digits
# Common activity kinds rendered, and Close's `_type` for each.
ACTIVITY_TYPES = {"call": "Call", "email": "Email", "meeting": "Meeting"}


def close_id(kind: str, neutral_id: str, seed: int) -> str:
    """A stable Close-shaped id for a neutral id: prefix + 43 letters and digits."""
    digest = int.from_bytes(hashlib.sha256(f"{seed}/{neutral_id}".encode()).digest(), "big")
    chars = []
    for _ in range(43):
        digest, index = divmod(digest, len(_ALPHABET))
        chars.append(_ALPHABET[index])
    return f"{PREFIXES[kind]}_{''.join(chars)}"


def _alnum(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def custom_key(name: str) -> str:
    """Where a lead or an opportunity carries a custom field (`custom.cf_…`)."""
    return f"custom.{custom_field_id(name)}"


LIST_PRICE_KEY = custom_key("List Price")


def list_totals(world: World) -> dict[str, Decimal]:
    """Each deal's value at list price: the sum over its lines of quantity × list price,
    exactly (decimal arithmetic on the numbers as the deal model writes them)."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in world.objects.get("opportunity_line", ()):
        f = line.fields
        totals[f["opportunity_id"]] += Decimal(repr(f["quantity"])) * Decimal(
            repr(f["list_price"]))
    return dict(totals)


def json_number(value: Decimal) -> int | float:
    """A decimal as the JSON number Close would hold: whole as an integer, else the float
    that says the same number (ValueError when no float does)."""
    if value == value.to_integral_value():
        return int(value)
    number = float(value)
    if Decimal(repr(number)) != value:
        raise ValueError(f"{value} has more digits than a JSON number here holds")
    return number


def statuses_for(world: World) -> list[tuple[str, str]]:
    """One opportunity status per stage of the deal model's pipeline (in its order), typed
    active / won / lost, and any other stage the deals use."""
    seen: dict[str, str] = {
        stage: "active" if not closed else ("won" if won else "lost")
        for stage, (_, closed, won, _) in STAGES.items()}
    for record in world.objects.get("opportunity", ()):
        f = record.fields
        kind = "active" if not f["is_closed"] else ("won" if f["is_won"] else "lost")
        seen.setdefault(str(f["stage"]), kind)
    return list(seen.items())


def render(world: World) -> dict[str, list[dict[str, Any]]]:
    """Close documents by store kind (`lead`, `contact`, `opportunity`, `user`, `activity`)."""
    seed = world.seed
    ids: dict[str, str] = {}

    def ref(kind: str, neutral: Any) -> str | None:
        if neutral is None:
            return None
        key = f"{kind}/{neutral}"
        if key not in ids:
            ids[key] = close_id(kind, str(neutral), seed)
        return ids[key]

    def base(kind: str, record: WorldRecord) -> dict[str, Any]:
        return {"id": ref(kind, record.id), "organization_id": ORGANIZATION_ID,
                "date_created": close_time(record.created_at),
                "date_updated": close_time(record.modified_at)}

    users = {r.id: r for r in world.objects.get("user", ())}
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in users.values():
        out["user"].append({**base("user", record), "first_name": record.extra["first_name"],
                            "last_name": record.extra["last_name"],
                            "email": record.fields["email"], "image": None,
                            "organizations": [ORGANIZATION_ID]})
    accounts = {r.id: r for r in world.objects.get("account", ())}
    for record in accounts.values():
        out["lead"].append(_lead(base("lead", record), record, ref))
    lead_names = {ref("lead", a.id): a.fields["name"] for a in accounts.values()}
    for record in world.objects.get("contact", ()):
        f, x = record.fields, record.extra
        out["contact"].append({
            **base("contact", record), "lead_id": ref("lead", f["account_id"]),
            "name": " ".join(p for p in (f["first_name"], f["last_name"]) if p),
            "title": f["title"], "emails": [{"email": f["email"], "type": "office"}]
            if f["email"] else [], "phones": [{"phone": x["phone"], "type": "office"}]
            if x.get("phone") else []})
    line_cents: dict[str, int] = defaultdict(int)
    for line in world.objects.get("opportunity_line", ()):
        line_cents[line.fields["opportunity_id"]] += round(line.fields["total_price"] * 100)
    statuses = {label: (f"stat_{i:02d}{_alnum(label):0<41}"[:48], kind)
                for i, (label, kind) in enumerate(statuses_for(world))}
    list_total = list_totals(world)
    for record in world.objects.get("opportunity", ()):
        doc = _opportunity(base("opportunity", record), record, ref, line_cents, statuses,
                           users, lead_names)
        if record.id in list_total:  # a deal without lines has no list price: unset
            doc[LIST_PRICE_KEY] = json_number(list_total[record.id])
        out["opportunity"].append(doc)
    for record in world.objects.get("activity", ()):
        kind = ACTIVITY_TYPES.get(record.fields["activity_type"])
        if kind is not None:
            out["activity"].append(_activity(base("activity", record), record, ref, kind))
        elif record.fields["activity_type"] == "task":
            out["task"].append(_task(base("task", record), record, ref, users))
    out["status"] = [{"id": sid, "label": label, "type": kind, "organization_id": ORGANIZATION_ID,
                      "date_created": close_time(world.anchor),
                      "date_updated": close_time(world.anchor)}
                     for label, (sid, kind) in statuses.items()]
    return dict(out)


def _lead(doc: dict[str, Any], record: WorldRecord, ref: Any) -> dict[str, Any]:
    f, x = record.fields, record.extra
    values = {"Industry": f["industry"], "Employees": f["employee_count"],
              "Annual Revenue": f["annual_revenue"], "Account Type": f["account_type"],
              "Lead Owner": ref("user", f["owner_id"])}
    doc.update(name=f["name"], display_name=f["name"], url=f["website"],
               description=x.get("description"), status_label="Potential",
               addresses=[{"label": "business", "address_1": x.get("street"),
                           "city": x.get("city"), "state": f["billing_state"],
                           "zipcode": x.get("postal_code"), "country": f["billing_country"]}])
    for name, _ in LEAD_CUSTOM_FIELDS:
        doc[custom_key(name)] = values[name]
    return doc


def _opportunity(doc: dict[str, Any], record: WorldRecord, ref: Any,
                 line_cents: Mapping[str, int], statuses: Mapping[str, tuple[str, str]],
                 users: Mapping[str, WorldRecord], lead_names: Mapping[Any, Any]
                 ) -> dict[str, Any]:
    f = record.fields
    status_id, status_type = statuses[str(f["stage"])]
    owner = users.get(f["owner_id"])
    value = line_cents.get(record.id)
    if value is None and f["amount"] is not None:
        value = round(f["amount"] * 100)
    close_date = f["close_date"]
    lead_id = ref("lead", f["account_id"])
    doc.update(lead_id=lead_id, lead_name=lead_names.get(lead_id), note=f["name"],
               value=value, value_period="one_time", value_currency="USD",
               value_formatted=f"{(value or 0) / 100:,.2f} USD",
               confidence=round(f["probability"]) if f["probability"] is not None else 0,
               status_id=status_id, status_label=f["stage"], status_type=status_type,
               date_won=close_date.isoformat() if isinstance(close_date, date) else None,
               user_id=ref("user", f["owner_id"]), contact_id=None,
               user_name=owner.fields["name"] if owner else None)
    return doc


def _activity(doc: dict[str, Any], record: WorldRecord, ref: Any, kind: str) -> dict[str, Any]:
    f, x = record.fields, record.extra
    at = f["activity_at"]
    doc.update(_type=kind, lead_id=ref("lead", f["account_id"]),
               contact_id=ref("contact", f["contact_id"]), user_id=ref("user", f["owner_id"]))
    if kind == "Call":
        doc.update(direction=str(x.get("call_direction") or "outbound").lower(),
                   duration=x.get("call_duration_seconds"), disposition=x.get("call_result"),
                   note=f["subject"], status="completed")
    elif kind == "Email":
        doc.update(subject=f["subject"], direction="outgoing", status="sent",
                   date_sent=close_time(at) if isinstance(at, datetime) else None)
    else:
        minutes = f["duration_minutes"]
        seconds = round(minutes * 60) if minutes is not None else None
        ends = x.get("ends_at")
        doc.update(title=f["subject"], status="completed", duration=seconds,
                   starts_at=close_time(at) if isinstance(at, datetime) else None,
                   ends_at=close_time(ends) if isinstance(ends, datetime) else None)
    return doc


def _task(doc: dict[str, Any], record: WorldRecord, ref: Any,
          users: Mapping[str, WorldRecord]) -> dict[str, Any]:
    f = record.fields
    owner = users.get(f["owner_id"])
    due = f["due_date"]
    doc.update(_type="lead", lead_id=ref("lead", f["account_id"]),
               contact_id=ref("contact", f["contact_id"]),
               assigned_to=ref("user", f["owner_id"]),
               assigned_to_name=owner.fields["name"] if owner else None, text=f["subject"],
               date=due.isoformat() if isinstance(due, date) else None,
               is_dateless=due is None, is_complete=bool(f["is_closed"]))
    return doc


def seed_store(store: CloseStore, world: World) -> None:
    """Load a rendered world into an empty store; the integration user is `/me/`."""
    documents = render(world)
    for kind, docs in documents.items():
        if kind == "status" and not docs:
            continue
        store.load(kind, docs)
    if documents.get("user"):
        store.set_meta("me_id", documents["user"][0]["id"])
