"""Seeds an org with the kit's deal model, rendered as Salesforce records.

`seed(sandbox, n_opportunities, seed)` builds `connectors.sandbox_kit.deal_model`'s world
and maps it onto Salesforce: its object and field names, its 18-character ids (given in
creation order, so the same seed and anchor give the same ids), its audit fields and the
odd later `SystemModstamp` a system process leaves behind. The sales process itself — who
sells what at which discount, and which deals are won — lives in the kit, so every CRM's
sandbox holds the same signal; the true parameters are served at `/_sandbox/truth`.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from ...sandbox_kit.deal_model import World, WorldRecord, build_world
from ...sandbox_kit.fakes import slug
from .ids import PROFILE_PREFIX, make_id

if TYPE_CHECKING:
    from .sandbox import SalesforceSandbox

DAY = 86400.0
TOUCH_SHARE = 0.04  # records a system process touched later (SystemModstamp only)
# Salesforce object per world object, in insert order; activities split into Task / Event.
SOBJECTS = (("user", "User"), ("product", "Product2"), ("price_book", "Pricebook2"),
            ("price_book_entry", "PricebookEntry"), ("account", "Account"),
            ("contact", "Contact"), ("lead", "Lead"), ("opportunity", "Opportunity"),
            ("opportunity_line", "OpportunityLineItem"))
# Locale settings every seeded user has (Salesforce requires them of a new user).
USER_SETTINGS = {"TimeZoneSidKey": "GMT", "LocaleSidKey": "en_US", "EmailEncodingKey": "UTF-8",
                 "LanguageLocaleKey": "en_US", "ProfileId": make_id(PROFILE_PREFIX, 1)}
_TOUCHED = frozenset({"user", "product", "account", "contact", "lead", "opportunity"})


@dataclass(frozen=True)
class SeedSummary:
    """What `seed` produced, for logs and benchmarks."""

    counts: dict[str, int]
    seconds: float
    win_rate: float


@functools.lru_cache(maxsize=8192)
def _day_text(day_number: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day_number * 86400))


def _ts_seconds(seconds: float) -> str:
    """REST datetime text; a hot path (over a million calls per 100k deals)."""
    millis_total = round(seconds * 1000)
    day_number, millis = divmod(millis_total, 86_400_000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{_day_text(day_number)}T{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}+0000"


def _ts(value: datetime | None) -> str | None:
    return None if value is None else _ts_seconds(value.timestamp())


def _day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


Render = Callable[[WorldRecord, dict[str, str | None]], dict[str, Any]]


def _user(r: WorldRecord, ref: dict[str, str | None]) -> dict[str, Any]:
    f, x = r.fields, r.extra
    return {"Username": x["username"], "LastName": x["last_name"], "FirstName": x["first_name"],
            "Name": f["name"], "Alias": (x["first_name"][0] + slug(x["last_name"]))[:8].lower(),
            "Email": f["email"], "Title": f["title"], "Department": f["department"],
            "IsActive": f["is_active"], "UserType": "Standard", "ManagerId": ref["manager_id"],
            **USER_SETTINGS}


def _product(r: WorldRecord, ref: dict[str, str | None]) -> dict[str, Any]:
    f = r.fields
    return {"Name": f["name"], "ProductCode": f["product_code"],
            "Description": r.extra["description"], "IsActive": f["is_active"],
            "Family": f["family"], "Unit_Cost__c": f["unit_cost"]}


def _price_book(r: WorldRecord, ref: dict[str, str | None]) -> dict[str, Any]:
    f = r.fields
    return {"Name": f["name"], "IsActive": f["is_active"], "IsStandard": f["is_standard"],
            "Description": f["description"]}


def _entry(r: WorldRecord, ref: dict[str, str | None]) -> dict[str, Any]:
    f = r.fields
    return {"Pricebook2Id": ref["price_book_id"], "Product2Id": ref["product_id"],
            "Name": r.extra["name"], "UnitPrice": f["unit_price"], "IsActive": f["is_active"],
            "UseStandardPrice": False, "ProductCode": r.extra["product_code"]}


def _account(r: WorldRecord, ref: dict[str, str | None]) -> dict[str, Any]:
    f, x = r.fields, r.extra
    revenue, employees = f["annual_revenue"], f["employee_count"]
    return {"OwnerId": ref["owner_id"], "ParentId": ref["parent_id"], "Name": f["name"],
            "Type": f["account_type"], "BillingStreet": x["street"], "BillingCity": x["city"],
            "BillingState": f["billing_state"], "BillingPostalCode": x["postal_code"],
            "BillingCountry": f["billing_country"], "BillingLatitude": None,
            "BillingLongitude": None, "BillingGeocodeAccuracy": None, "Phone": x["phone"],
            "Website": f["website"], "Industry": f["industry"], "AnnualRevenue": revenue,
            "NumberOfEmployees": employees, "Description": x["description"],
            "Revenue_Per_Employee__c": round(revenue / employees, 2) if revenue else None}


def _contact(r: WorldRecord, ref: dict[str, str | None]) -> dict[str, Any]:
    f, x = r.fields, r.extra
    return {"AccountId": ref["account_id"], "OwnerId": ref["owner_id"],
            "LastName": f["last_name"], "FirstName": f["first_name"],
            "Name": f"{f['first_name']} {f['last_name']}", "Title": f["title"],
            "Department": x["department"], "Email": f["email"], "Phone": x["phone"],
            "LeadSource": x["lead_source"]}


def _lead(r: WorldRecord, ref: dict[str, str | None]) -> dict[str, Any]:
    f, x = r.fields, r.extra
    converted_at = x["converted_at"]
    return {"OwnerId": ref["owner_id"], "ConvertedAccountId": ref["converted_account_id"],
            "ConvertedContactId": ref["converted_contact_id"],
            "ConvertedOpportunityId": ref["converted_opportunity_id"],
            "LastName": f["last_name"], "FirstName": f["first_name"],
            "Name": f"{f['first_name']} {f['last_name']}", "Title": x["title"],
            "Company": f["company"], "Email": f["email"], "Phone": x["phone"],
            "Status": f["status"], "LeadSource": f["lead_source"], "Industry": f["industry"],
            "Rating": x["rating"], "AnnualRevenue": x["annual_revenue"],
            "NumberOfEmployees": x["employee_count"], "Country": x["country"],
            "IsConverted": f["is_converted"],
            "ConvertedDate": None if converted_at is None else _day(converted_at.date())}


def _opportunity(r: WorldRecord, ref: dict[str, str | None]) -> dict[str, Any]:
    f, x = r.fields, r.extra
    probability = int(f["probability"])
    return {"AccountId": ref["account_id"], "OwnerId": ref["owner_id"],
            "Pricebook2Id": ref["price_book_id"], "Name": f["name"],
            "Description": x["description"], "StageName": f["stage"], "Amount": f["amount"],
            "Probability": probability,
            "ExpectedRevenue": round(f["amount"] * probability / 100, 2),
            "CloseDate": _day(f["close_date"]), "Type": f["opportunity_type"],
            "NextStep": x["next_step"], "LeadSource": f["lead_source"],
            "IsClosed": f["is_closed"], "IsWon": f["is_won"],
            "ForecastCategory": x["forecast_category"], "HasOpportunityLineItem": True}


def _line(r: WorldRecord, ref: dict[str, str | None]) -> dict[str, Any]:
    f = r.fields
    return {"OpportunityId": ref["opportunity_id"], "Product2Id": ref["product_id"],
            "PricebookEntryId": ref["price_book_entry_id"], "Quantity": f["quantity"],
            "UnitPrice": f["unit_price"], "ListPrice": f["list_price"], "Discount": None,
            "TotalPrice": f["total_price"], "Description": r.extra["description"],
            "ServiceDate": _day(r.extra["service_date"])}


def _activity(r: WorldRecord, ref: dict[str, str | None]) -> dict[str, Any]:
    """A Task (call, e-mail, to-do) or an Event (meeting), told apart by `_sobject`."""
    f, x = r.fields, r.extra
    common = {"WhatId": ref["opportunity_id"], "WhoId": ref["contact_id"],
              "AccountId": ref["account_id"], "OwnerId": ref["owner_id"],
              "Subject": f["subject"], "IsArchived": False}
    if x["kind"] == "meeting":
        begin, end = f["activity_at"], x["ends_at"]
        return {"_sobject": "Event", **common, "Type": "Meeting", "Location": x["location"],
                "IsAllDayEvent": False, "ActivityDateTime": _ts(begin),
                "ActivityDate": _day(begin.date()), "DurationInMinutes": int(
                    f["duration_minutes"]), "StartDateTime": _ts(begin),
                "EndDateTime": _ts(end), "EndDate": _day(end.date()), "IsPrivate": False,
                "ShowAs": "Busy", "EventSubtype": "Event", "IsChild": False,
                "IsGroupEvent": False, "IsReminderSet": False}
    subtype, kind = {"call": ("Call", "Call"), "email": ("Email", "Email")}.get(
        x["kind"], ("Task", "Other"))
    return {"_sobject": "Task", **common, "Priority": x["priority"], "IsHighPriority": False,
            "IsReminderSet": False, "TaskSubtype": subtype, "Type": kind,
            "CallType": x["call_direction"], "CallDurationInSeconds": x["call_duration_seconds"],
            "CallDisposition": x["call_result"], "Status": f["status"],
            "IsClosed": f["is_closed"], "ActivityDate": _day(f["due_date"]),
            "CompletedDateTime": _ts(f["activity_at"])}


RENDERERS: dict[str, Render] = {
    "user": _user, "product": _product, "price_book": _price_book, "price_book_entry": _entry,
    "account": _account, "contact": _contact, "lead": _lead, "opportunity": _opportunity,
    "opportunity_line": _line, "activity": _activity,
}


def _salesforce_ids(sandbox: SalesforceSandbox, conn: Any, world: World) -> dict[str, str]:
    """Neutral id → Salesforce id; the world's integration user is the org's own."""
    admin = world.objects["user"][0].id
    mapping = {admin: sandbox.admin_user_id}
    for name, sobject in (*SOBJECTS, ("activity", "Task"), ("activity", "Event")):
        records: Iterable[WorldRecord] = world.objects[name]
        if name == "user":
            records = [r for r in records if r.id != admin]
        elif name == "activity":
            meeting = sobject == "Event"
            records = [r for r in records if (r.extra["kind"] == "meeting") is meeting]
        records = list(records)
        prefix = sandbox.schema.require(sobject).key_prefix
        mapping.update(zip((r.id for r in records),
                           sandbox.store.allocate_ids(conn, prefix, len(records)), strict=True))
    return mapping


def render(world: World, ids: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """The world as Salesforce rows per sObject, ready for `insert_many`; `ids` maps the
    world's neutral ids to Salesforce's. The integration user exists already."""
    admin = world.objects["user"][0].id
    touch = random.Random(f"salesforce-modstamp/{world.seed}")
    anchor = world.anchor.timestamp()
    rows: dict[str, list[dict[str, Any]]] = {}
    for name, sobject in (*SOBJECTS, ("activity", "Task")):
        records = world.objects[name]
        ref_keys = {k for r in records[:1] for k in (*r.fields, *r.extra) if k.endswith("_id")}
        for record in records:
            if record.id == admin:
                continue
            refs: dict[str, str | None] = {}
            for key in ref_keys:
                value = record.fields[key] if key in record.fields else record.extra[key]
                refs[key] = None if value is None else ids[value]
            row = RENDERERS[name](record, refs)
            target = row.pop("_sobject", sobject)
            created = record.created_at.timestamp()
            modified = record.modified_at.timestamp()
            stamp = modified
            if name in _TOUCHED and touch.random() < TOUCH_SHARE:
                stamp = min(modified + touch.uniform(3600, 30 * DAY), anchor - 1.0)
            row.update(Id=ids[record.id], CreatedDate=_ts_seconds(created),
                       LastModifiedDate=_ts_seconds(modified), SystemModstamp=_ts_seconds(stamp),
                       CreatedById=refs["created_by_id"], LastModifiedById=refs["modified_by_id"])
            if name != "user":
                row["IsDeleted"] = False
            rows.setdefault(target, []).append(row)
    return rows


def seed(sandbox: SalesforceSandbox, n_opportunities: int, seed: int = 42, *,
         anchor: datetime | None = None, activities: bool = True) -> SeedSummary:
    """Fill an empty sandbox; same (seed, anchor) → identical data and ids."""
    if n_opportunities < 0:
        raise ValueError("n_opportunities must be >= 0")
    if not sandbox.is_empty():
        raise RuntimeError("the sandbox already has data; seed only an empty state file")
    now = sandbox.now()
    if anchor is None:
        anchor = now.replace(hour=0, minute=0, second=0, microsecond=0)
    anchor = anchor.astimezone(UTC) if anchor.tzinfo else anchor.replace(tzinfo=UTC)
    if anchor > now:
        raise ValueError("the anchor must not be in the future")
    started = time.perf_counter()
    world = build_world(n_opportunities, seed, anchor=anchor, activities=activities)
    counts: dict[str, int] = {}
    with sandbox.store.write() as conn:
        ids = _salesforce_ids(sandbox, conn, world)
        rows = render(world, ids)
        for sobject in (*(s for _, s in SOBJECTS), "Task", "Event"):
            obj = sandbox.schema.require(sobject)
            sandbox.store.drop_indexes(conn, obj)
            counts[sobject] = sandbox.store.insert_many(conn, obj, rows.get(sobject, []))
            sandbox.store.create_indexes(conn, obj)
        sandbox.store.analyze(conn)
        truth = dict(world.truth, generator="accrue-salesforce-sandbox/1",
                     anchor=anchor.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
                     sellers=[dict(s, id=ids[s["id"]]) for s in world.truth["sellers"]])
        sandbox.set_truth(conn, truth)
    return SeedSummary(counts, time.perf_counter() - started, truth["realized"]["win_rate"])
