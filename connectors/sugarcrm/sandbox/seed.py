"""The shared deal model rendered as a SugarCRM instance.

Each common record becomes what Sugar would hold, in its modules and dropdown values:
users (with `reports_to_id`), accounts, contacts, leads (statuses New / In Process /
Converted / Dead), product templates (list, cost and unit prices), opportunities (amount
in the system currency `-99`, Sugar's sales stages, which the deal model's stages are
among) and their revenue line items (quantity, `discount_price` per unit, `likely_case`
total, the discount as a percent), and calls, meetings, tasks and e-mails on their deals.
Not rendered: price books (Sugar prices live on the product template and the line).

Stamps are whole seconds (Sugar keeps no finer); ids are UUIDs derived from the neutral
ids and the seed, so a seed always gives the same instance.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from connectors.sandbox_kit.deal_model import World, WorldRecord
from connectors.sugarcrm.sandbox.store import SugarStore, stamp
from connectors.sugarcrm.sandbox.writes import sugar_decimal

INTEGRATION_USER = "accrue_api"
LEAD_SOURCES = {"Web": "Web Site", "Phone Inquiry": "Cold Call", "Partner Referral": "Partner",
                "Purchased List": "Direct Mail", "Other": "Other"}
LEAD_STATUSES = {"Open - Not Contacted": "New", "Working - Contacted": "In Process",
                 "Closed - Converted": "Converted", "Closed - Not Converted": "Dead"}
ACTIVITY_MODULES = {"call": "Calls", "meeting": "Meetings", "todo": "Tasks", "email": "Emails"}
ACCOUNT_TYPES = {"Customer - Direct": "Customer", "Customer - Channel": "Customer",
                 "Prospect": "Prospect", "Channel Partner / Reseller": "Reseller",
                 "Technology Partner": "Partner", "Other": "Other"}


def sugar_id(neutral_id: str, seed: int) -> str:
    digest = hashlib.sha256(f"sugar/{seed}/{neutral_id}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _money(value: Any) -> str | None:
    return sugar_decimal(value, 6, "amount") if value is not None else None


def _day(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, date) else None


def render(world: World) -> dict[str, list[dict[str, Any]]]:
    """Sugar records by module."""
    def ref(neutral: Any) -> str:
        return sugar_id(str(neutral), world.seed) if neutral is not None else ""

    def base(record: WorldRecord) -> dict[str, Any]:
        return {"id": ref(record.id), "date_entered": stamp(record.created_at),
                "date_modified": stamp(record.modified_at), "deleted": 0,
                "created_by": ref(record.extra.get("created_by_id")),
                "modified_user_id": ref(record.extra.get("modified_by_id"))}

    out: dict[str, list[dict[str, Any]]] = {}
    users = world.objects.get("user", ())
    out["Users"] = [{
        **base(r), "user_name": INTEGRATION_USER if i == 0 else r.extra["username"].split("@")[0],
        "first_name": r.extra["first_name"], "last_name": r.extra["last_name"],
        "full_name": r.fields["name"], "email1": r.fields["email"], "title": r.fields["title"],
        "department": r.fields["department"], "reports_to_id": ref(r.fields["manager_id"]),
        "status": "Active" if r.fields["is_active"] else "Inactive",
        "is_admin": i == 0} for i, r in enumerate(users)]
    accounts = {r.id: r for r in world.objects.get("account", ())}
    out["Accounts"] = [_account(base(r), r, ref) for r in accounts.values()]
    out["Contacts"] = [{
        **base(r), "first_name": r.fields["first_name"], "last_name": r.fields["last_name"],
        "email1": r.fields["email"], "title": r.fields["title"],
        "department": r.extra.get("department"), "account_id": ref(r.fields["account_id"]),
        "account_name": accounts[r.fields["account_id"]].fields["name"],
        "assigned_user_id": ref(r.fields["owner_id"]), "phone_work": r.extra.get("phone"),
        "lead_source": LEAD_SOURCES.get(r.extra.get("lead_source") or "", "")}
        for r in world.objects.get("contact", ())]
    out["Leads"] = [{
        **base(r), "first_name": r.fields["first_name"], "last_name": r.fields["last_name"],
        "account_name": r.fields["company"], "email1": r.fields["email"],
        "status": LEAD_STATUSES.get(r.fields["status"], "New"),
        "lead_source": LEAD_SOURCES.get(r.fields["lead_source"] or "", ""),
        "assigned_user_id": ref(r.fields["owner_id"]), "converted": r.fields["is_converted"],
        "opportunity_id": ref(r.fields["converted_opportunity_id"]),
        "account_id": ref(r.extra.get("converted_account_id")),
        "contact_id": ref(r.extra.get("converted_contact_id")), "title": r.extra.get("title"),
        "phone_work": r.extra.get("phone"), "primary_address_country": r.extra.get("country")}
        for r in world.objects.get("lead", ())]
    products = {r.id: r for r in world.objects.get("product", ())}
    out["ProductTemplates"] = [{
        **base(r), "name": r.fields["name"], "mft_part_num": r.fields["product_code"],
        "category_name": r.fields["family"], "category_id": ref(f"family/{r.fields['family']}"),
        "cost_price": _money(r.fields["unit_cost"]), "list_price": _money(r.extra["list_price"]),
        "discount_price": _money(r.extra["list_price"]), "currency_id": "-99",
        "active_status": "Active" if r.fields["is_active"] else "Inactive",
        "status": "Available", "description": r.extra.get("description")}
        for r in products.values()]
    opportunities = {r.id: r for r in world.objects.get("opportunity", ())}
    out["Opportunities"] = [_opportunity(base(r), r, ref, accounts)
                            for r in opportunities.values()]
    out["RevenueLineItems"] = [_line(base(r), r, ref, opportunities, products)
                               for r in world.objects.get("opportunity_line", ())]
    for r in world.objects.get("activity", ()):
        module = ACTIVITY_MODULES[r.extra["kind"]]
        out.setdefault(module, []).append(_activity(base(r), r, ref, module))
    return out


def _moment(value: Any) -> str | None:
    return stamp(value) if isinstance(value, datetime) else None


def _hours_minutes(minutes: float | None) -> dict[str, int | None]:
    if minutes is None:
        return {"duration_hours": None, "duration_minutes": None}
    whole = round(minutes)
    return {"duration_hours": whole // 60, "duration_minutes": whole % 60}


def _activity(doc: dict[str, Any], r: WorldRecord, ref: Callable[[Any], str],
              module: str) -> dict[str, Any]:
    """A call, meeting, task or e-mail on its deal (`parent_type` Opportunities)."""
    f, x = r.fields, r.extra
    parent = ("Opportunities", f["opportunity_id"]) if f["opportunity_id"] else (
        ("Accounts", f["account_id"]) if f["account_id"] else ("", None))
    doc.update(name=f["subject"], parent_type=parent[0], parent_id=ref(parent[1]),
               assigned_user_id=ref(f["owner_id"]))
    if module != "Emails":
        doc["contact_id"] = ref(f["contact_id"])
    if module == "Calls":
        seconds = x.get("call_duration_seconds")
        doc.update(status="Held", direction=x.get("call_direction") or "Outbound",
                   date_start=_moment(f["activity_at"]), description=x.get("call_result"),
                   **_hours_minutes(seconds / 60 if seconds is not None else None))
    elif module == "Meetings":
        doc.update(status="Held", date_start=_moment(f["activity_at"]),
                   date_end=_moment(x.get("ends_at")), location=x.get("location"),
                   **_hours_minutes(f["duration_minutes"]))
    elif module == "Tasks":
        due = f["due_date"]
        doc.update(status="Completed" if f["is_closed"] else f["status"], priority="Medium",
                   date_due=f"{due.isoformat()}T12:00:00+00:00" if isinstance(due, date)
                   else None)
    else:
        doc.update(date_sent=_moment(f["activity_at"]), state="Archived", type="out",
                   status="sent")
    return doc


def _account(doc: dict[str, Any], r: WorldRecord, ref: Callable[[Any], str]) -> dict[str, Any]:
    f, x = r.fields, r.extra
    revenue = f["annual_revenue"]
    doc.update(name=f["name"], industry=f["industry"],
               employees=str(f["employee_count"]) if f["employee_count"] is not None else "",
               annual_revenue=f"{Decimal(repr(revenue)):f}".removesuffix(".0")
               if revenue is not None else "",
               billing_address_street=x.get("street"), billing_address_city=x.get("city"),
               billing_address_state=f["billing_state"],
               billing_address_postalcode=x.get("postal_code"),
               billing_address_country=f["billing_country"], website=f["website"],
               account_type=ACCOUNT_TYPES.get(f["account_type"] or "", "Other"),
               assigned_user_id=ref(f["owner_id"]), parent_id=ref(f["parent_id"]),
               phone_office=x.get("phone"), description=x.get("description"))
    return doc


def _opportunity(doc: dict[str, Any], r: WorldRecord, ref: Callable[[Any], str],
                 accounts: dict[str, WorldRecord]) -> dict[str, Any]:
    f = r.fields
    stage = f["stage"]
    amount = _money(f["amount"])
    doc.update(name=f["name"], account_id=ref(f["account_id"]),
               account_name=accounts[f["account_id"]].fields["name"], amount=amount,
               amount_usdollar=amount, currency_id="-99", sales_stage=stage,
               sales_status=stage if stage in ("Closed Won", "Closed Lost") else "In Progress",
               probability=round(f["probability"]) if f["probability"] is not None else None,
               date_closed=_day(f["close_date"]),
               opportunity_type="New Business" if f["opportunity_type"] == "New Business"
               else "Existing Business",
               lead_source=LEAD_SOURCES.get(f["lead_source"] or "", ""),
               assigned_user_id=ref(f["owner_id"]), next_step=r.extra.get("next_step"),
               description=r.extra.get("description"))
    return doc


def _line(doc: dict[str, Any], r: WorldRecord, ref: Callable[[Any], str],
          opportunities: dict[str, WorldRecord], products: dict[str, WorldRecord]
          ) -> dict[str, Any]:
    f = r.fields
    deal = opportunities[f["opportunity_id"]]
    product = products[f["product_id"]]
    percent = Decimal(repr(r.extra["discount_rate"])) * 100
    total = _money(f["total_price"])
    doc.update(name=product.fields["name"], opportunity_id=ref(f["opportunity_id"]),
               account_id=ref(deal.fields["account_id"]),
               product_template_id=ref(f["product_id"]),
               quantity=sugar_decimal(f["quantity"], 2, "quantity"),
               list_price=_money(f["list_price"]), discount_price=_money(f["unit_price"]),
               cost_price=_money(product.fields["unit_cost"]), likely_case=total,
               best_case=total, worst_case=total, discount_select=True,
               discount_amount=sugar_decimal(percent, 6, "discount_amount"),
               currency_id="-99", sales_stage=deal.fields["stage"],
               date_closed=_day(deal.fields["close_date"]),
               assigned_user_id=ref(deal.fields["owner_id"]),
               service_start_date=_day(r.extra.get("service_date")))
    return doc


def seed_store(store: SugarStore, world: World) -> None:
    """Load a rendered world into an empty store."""
    for module, documents in render(world).items():
        if documents:
            store.load(module, documents)
