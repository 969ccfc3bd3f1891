"""The shared deal model rendered as a HubSpot portal.

Accounts become companies, contacts contacts (their company in `associatedcompanyid`),
opportunities deals in the "Sales Pipeline" (stage ids, HubSpot's `dealstage`, with the
stage label and closed / won flags in the pipeline's stage metadata), opportunity lines
line items (`price` the unit list price, `discount` the per-unit discount in currency,
`amount` the line total, as HubSpot computes it), products products, users owners. A
deal's company and a line item's deal are associations (v4), as on HubSpot. Property
values are strings: amounts in their shortest decimal form, stamps ISO 8601 with
milliseconds. Not rendered: leads, price books and activities (not offered by the adapter).

Ids are numbers handed out in creation order from the portal's high-water mark, so a seed
always gives the same portal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from connectors.hubspot.sandbox.store import MODIFIED_PROPERTY, HubSpotStore, iso, to_ms
from connectors.sandbox_kit.deal_builder import STAGES
from connectors.sandbox_kit.deal_model import World, WorldRecord

PIPELINE_ID = "default"
# HubSpot-defined association type ids: (from, to) -> type id.
ASSOCIATION_TYPES: dict[tuple[str, str], int] = {
    ("deals", "companies"): 5, ("companies", "deals"): 6,  # primary company of a deal
    ("line_items", "deals"): 20, ("deals", "line_items"): 19,
    ("contacts", "companies"): 1, ("companies", "contacts"): 2,
}


def stage_id(label: str) -> str:
    """HubSpot-style internal stage id: lower-case letters and digits of the label."""
    return re.sub(r"[^a-z0-9]", "", label.lower()) or "stage"


def number_text(value: Any) -> str | None:
    """A number as HubSpot keeps it: a string, in its shortest exact decimal form."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def date_text(value: Any) -> str | None:
    """A date or date-time property: ISO 8601 (a day is midnight UTC, as HubSpot's date
    pickers store it)."""
    if isinstance(value, datetime):
        return iso(to_ms(value))
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00.000Z"
    return None if value is None else str(value)


def pipeline(stages: Mapping[str, tuple[bool, bool, int]], stamp: str) -> dict[str, Any]:
    """The deal pipeline: stages in order with `isClosed` and `probability` metadata."""
    return {
        "id": PIPELINE_ID, "label": "Sales Pipeline", "displayOrder": 0, "archived": False,
        "createdAt": stamp, "updatedAt": stamp,
        "stages": [{"id": stage_id(label), "label": label, "displayOrder": index,
                    "archived": False, "createdAt": stamp, "updatedAt": stamp,
                    "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
                    "metadata": {"isClosed": "true" if closed else "false",
                                 "probability": "1.0" if won else (
                                     "0.0" if closed else f"{probability / 100:.1f}")}}
                   for index, (label, (closed, won, probability)) in enumerate(stages.items())],
    }


def default_stages() -> dict[str, tuple[bool, bool, int]]:
    return {label: (closed, won, probability)
            for label, (probability, closed, won, _) in STAGES.items()}


def render(world: World, store: HubSpotStore) -> None:
    """Load the world into an empty store, with the pipeline, owners and associations."""
    ids: dict[str, int] = {}

    def ref(neutral: Any) -> str | None:
        return None if neutral is None else str(ids[str(neutral)])

    names = ("user", "account", "contact", "product", "opportunity", "opportunity_line")
    records = [r for name in names for r in world.objects.get(name, ())]
    first = store.next_id(len(records))
    ids.update({record.id: first + index for index, record in enumerate(records)})
    stages = default_stages()
    for record in world.objects.get("opportunity", ()):
        f = record.fields
        stages.setdefault(str(f["stage"]), (bool(f["is_closed"]), bool(f["is_won"]), 0))
    store.set_meta("pipeline", pipeline(stages, iso(to_ms(world.anchor))))

    store.load_owners([{
        "id": str(ids[r.id]), "email": r.fields["email"], "firstName": r.extra["first_name"],
        "lastName": r.extra["last_name"], "userId": ids[r.id] + 9_000_000, "type": "PERSON",
        "createdAt": iso(to_ms(r.created_at)), "updatedAt": iso(to_ms(r.modified_at)),
        "archived": False, "teams": []} for r in world.objects.get("user", ())])

    def base(kind: str, record: WorldRecord, props: dict[str, Any]) -> dict[str, Any]:
        created, modified = iso(to_ms(record.created_at)), iso(to_ms(record.modified_at))
        object_id = str(ids[record.id])
        props.update(hs_object_id=object_id, createdate=created)
        props[MODIFIED_PROPERTY[kind]] = modified
        return {"id": object_id, "createdAt": created, "updatedAt": modified,
                "archived": False, "properties": props}

    store.load("companies", [base("companies", r, {
        "name": r.fields["name"], "industry": r.fields["industry"],
        "numberofemployees": number_text(r.fields["employee_count"]),
        "annualrevenue": number_text(r.fields["annual_revenue"]),
        "country": r.fields["billing_country"], "state": r.fields["billing_state"],
        "website": r.fields["website"], "type": r.fields["account_type"],
        "hubspot_owner_id": ref(r.fields["owner_id"]),
        "hs_parent_company_id": ref(r.fields["parent_id"])})
        for r in world.objects.get("account", ())])
    store.load("contacts", [base("contacts", r, {
        "firstname": r.fields["first_name"], "lastname": r.fields["last_name"],
        "email": r.fields["email"], "jobtitle": r.fields["title"],
        "associatedcompanyid": ref(r.fields["account_id"]),
        "hubspot_owner_id": ref(r.fields["owner_id"])})
        for r in world.objects.get("contact", ())])
    store.load("products", [base("products", r, {
        "name": r.fields["name"], "hs_sku": r.fields["product_code"],
        "product_family": r.fields["family"], "active": number_text(r.fields["is_active"]),
        "hs_cost_of_goods_sold": number_text(r.fields["unit_cost"]),
        "price": number_text(r.extra.get("list_price"))})
        for r in world.objects.get("product", ())])
    store.load("deals", [base("deals", r, {
        "dealname": r.fields["name"], "amount": number_text(r.fields["amount"]),
        "dealstage": stage_id(str(r.fields["stage"])), "pipeline": PIPELINE_ID,
        "closedate": date_text(r.fields["close_date"]),
        "hs_deal_stage_probability": number_text(
            Decimal(repr(r.fields["probability"])) / 100
            if r.fields["probability"] is not None else None),
        "dealtype": r.fields["opportunity_type"], "lead_source": r.fields["lead_source"],
        "hubspot_owner_id": ref(r.fields["owner_id"])})
        for r in world.objects.get("opportunity", ())])
    store.load("line_items", [base("line_items", r, _line(r, ref))
                              for r in world.objects.get("opportunity_line", ())])
    pairs: list[tuple[str, int, str, int, int]] = []
    for record in world.objects.get("opportunity", ()):
        if record.fields["account_id"] is not None:
            pairs += both("deals", ids[record.id], "companies", ids[record.fields["account_id"]])
    for record in world.objects.get("opportunity_line", ()):
        pairs += both("line_items", ids[record.id], "deals",
                      ids[record.fields["opportunity_id"]])
    store.associate(pairs)


def _line(record: WorldRecord, ref: Any) -> dict[str, Any]:
    f = record.fields
    list_price = Decimal(repr(f["list_price"]))
    discount = list_price - Decimal(repr(f["unit_price"]))
    return {"name": record.extra.get("description") or f"Line {record.id}",
            "hs_product_id": ref(f["product_id"]), "quantity": number_text(f["quantity"]),
            "price": number_text(list_price), "discount": number_text(discount),
            "amount": number_text(f["total_price"])}


def both(from_kind: str, from_id: int, to_kind: str, to_id: int
         ) -> list[tuple[str, int, str, int, int]]:
    """An association in both directions, each with its HubSpot-defined type id."""
    return [(from_kind, from_id, to_kind, to_id, ASSOCIATION_TYPES[(from_kind, to_kind)]),
            (to_kind, to_id, from_kind, from_id, ASSOCIATION_TYPES[(to_kind, from_kind)])]
