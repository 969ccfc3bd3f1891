"""The shared deal model rendered as a NetSuite account's records.

NetSuite words for the common objects: users are employees (sales reps with a
supervisor), accounts customers (billing address in `entityaddress`, industry and
size in custom entity fields), products non-inventory sale items, price books price
levels with their prices in `pricing`, opportunities transactions of type
'Opprtnty' whose item lines are `transactionline` rows. Internal ids are integers
in creation order. Calls, to-dos and meetings are `phonecall`, `task` and
`calendarevent` records; leads and e-mails are not rendered (see the connector's
objects); the deal model's signal lives in opportunities and their lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connectors.sandbox_kit.deal_model import World, WorldRecord

from .records import add_main_line
from .store import AccountStore

# Opportunity status codes: A In Progress, B Issued Estimate, C Closed - Won, D Closed - Lost.
WON, LOST, OPEN = "C", "D", "A"


def _epoch(moment: datetime) -> float:
    return float(int(moment.timestamp()))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _bool(value: Any) -> str:
    return "T" if value else "F"


class _Ids:
    """Neutral ids of the deal model → NetSuite internal ids, per object."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.names: dict[tuple[str, str], int] = {}

    def __getitem__(self, neutral: str | None) -> int | None:
        return None if neutral is None else self.ids[neutral]

    def named(self, store: AccountStore, table: str, name: str, **extra: Any) -> int:
        """The id of a small list value (department, category, status), created once."""
        key = (table, name)
        if key not in self.names:
            self.names[key] = store.insert(table, {"name": name, **extra})
        return self.names[key]


def _stamps(record: WorldRecord, created: str = "datecreated") -> dict[str, float]:
    return {created: _epoch(record.created_at), "lastmodifieddate": _epoch(record.modified_at)}


def seed_world(store: AccountStore, world: World) -> None:
    """Insert every record of `world` (an empty account only)."""
    ids = _Ids()
    objects: Mapping[str, tuple[WorldRecord, ...]] = world.objects
    with store.transaction():
        currencies = {r.fields["currency"] for r in objects["price_book_entry"]} | {"USD"}
        currency_ids = {symbol: store.insert("currency", {"symbol": symbol, "name": symbol})
                        for symbol in sorted(currencies)}
        for user in objects["user"]:  # managers come first in creation order
            f = user.fields
            ids.ids[user.id] = store.insert("employee", {
                "entityid": f["name"], "firstname": user.extra.get("first_name"),
                "lastname": user.extra.get("last_name"), "email": f["email"],
                "title": f["title"],
                "department": ids.named(store, "department", f["department"])
                if f["department"] else None,
                "supervisor": ids[f["manager_id"]], "isinactive": _bool(not f["is_active"]),
                "issalesrep": "T", **_stamps(user)})
        for book in objects["price_book"]:
            ids.ids[book.id] = store.insert("pricelevel", {
                "name": "Base Price" if book.fields["is_standard"] else book.fields["name"],
                "isinactive": _bool(not book.fields["is_active"])})
        for product in objects["product"]:
            f = product.fields
            ids.ids[product.id] = store.insert("item", {
                "itemid": f["product_code"], "displayname": f["name"], "itemtype": "NonInvtPart",
                "custitem_family": f["family"], "isinactive": _bool(not f["is_active"]),
                "cost": _text(f["unit_cost"]), **_stamps(product, "createddate")})
        for entry in objects["price_book_entry"]:
            f = entry.fields
            store.insert("pricing", {
                "item": ids[f["product_id"]], "pricelevel": ids[f["price_book_id"]],
                "currency": currency_ids[f["currency"]], "unitprice": _text(f["unit_price"]),
                "isinactive": _bool(not f["is_active"])})
        _seed_customers(store, ids, objects)
        _seed_opportunities(store, ids, objects, currency_ids["USD"])
        _seed_activities(store, ids, objects.get("activity", ()))


def _seed_customers(store: AccountStore, ids: _Ids,
                    objects: Mapping[str, tuple[WorldRecord, ...]]) -> None:
    for account in objects["account"]:  # parents come first in creation order
        f = account.fields
        address = store.insert("entityaddress", {
            "country": f["billing_country"], "state": f["billing_state"],
            "city": account.extra.get("city")})
        ids.ids[account.id] = store.insert("customer", {
            "entityid": f["name"], "companyname": f["name"],
            "category": ids.named(store, "customercategory", f["account_type"])
            if f["account_type"] else None,
            "custentity_industry": f["industry"],
            "custentity_employee_count": _text(f["employee_count"]),
            "custentity_annual_revenue": _text(f["annual_revenue"]), "url": f["website"],
            "salesrep": ids[f["owner_id"]], "parent": ids[f["parent_id"]],
            "defaultbillingaddress": address,
            "searchstage": "Prospect" if f["account_type"] == "Prospect" else "Customer",
            "isinactive": "F", **_stamps(account)})
    for contact in objects["contact"]:
        f = contact.fields
        ids.ids[contact.id] = store.insert("contact", {
            "entityid": f"{f['first_name']} {f['last_name']}", "company": ids[f["account_id"]],
            "firstname": f["first_name"], "lastname": f["last_name"], "email": f["email"],
            "title": f["title"], "owner": ids[f["owner_id"]], **_stamps(contact)})


def _seed_opportunities(store: AccountStore, ids: _Ids,
                        objects: Mapping[str, tuple[WorldRecord, ...]], usd: int) -> None:
    entries = {e.id: e for e in objects["price_book_entry"]}
    for number, deal in enumerate(objects["opportunity"], start=1):
        f = deal.fields
        status = WON if f["is_won"] else LOST if f["is_closed"] else OPEN
        ids.ids[deal.id] = key = store.insert("transaction", {
            "tranid": f"OPP{number:05d}", "type": "Opprtnty", "title": f["name"],
            "entity": ids[f["account_id"]], "projectedtotal": _text(f["amount"]),
            "entitystatus": ids.named(store, "entitystatus", f["stage"],
                                      probability=f["probability"]),
            "status": status, "probability": _text(f["probability"]),
            "expectedclosedate": f["close_date"].isoformat() if f["close_date"] else None,
            "employee": ids[f["owner_id"]], "currency": usd,
            "custbody_lead_source": f["lead_source"],
            "custbody_opportunity_type": f["opportunity_type"],
            **_stamps(deal, "createddate")})
        add_main_line(store, key, _epoch(deal.created_at))
    sequence: dict[int, int] = {}
    for line in objects["opportunity_line"]:
        f = line.fields
        transaction = ids[f["opportunity_id"]]
        assert transaction is not None
        sequence[transaction] = sequence.get(transaction, 0) + 1
        entry = entries.get(f["price_book_entry_id"] or "")
        ids.ids[line.id] = store.insert("transactionline", {
            "transaction": transaction, "linesequencenumber": sequence[transaction],
            "mainline": "F",
            "item": ids[f["product_id"]], "quantity": _text(f["quantity"]),
            "rate": _text(f["unit_price"]), "netamount": _text(f["total_price"]),
            "price": ids[entry.fields["price_book_id"]] if entry else None,
            "custcol_list_price": _text(f["list_price"]),
            "custcol_discount": _text(f["discount"]),
            "linecreateddate": _epoch(line.created_at),
            "linelastmodifieddate": _epoch(line.modified_at)})


def _seed_activities(store: AccountStore, ids: _Ids, activities: tuple[WorldRecord, ...]
                     ) -> None:
    for act in activities:
        f = act.fields
        kind, at = f["activity_type"], f["activity_at"]
        links = {"company": ids[f["account_id"]], "transaction": ids[f["opportunity_id"]],
                 **_stamps(act, "createddate")}
        if kind == "meeting":
            minutes = float(f["duration_minutes"] or 30)
            store.insert("calendarevent", {
                "title": f["subject"], "status": "CONFIRMED", "organizer": ids[f["owner_id"]],
                "startdate": _epoch(at) if at else None,
                "enddate": _epoch(at) + minutes * 60 if at else None, **links})
        elif kind in ("call", "task"):
            done = bool(f["is_closed"])
            due = f["due_date"] or (at.date() if at else None)
            store.insert("phonecall" if kind == "call" else "task", {
                "title": f["subject"], "assigned": ids[f["owner_id"]],
                "contact": ids[f["contact_id"]],
                "status": "COMPLETE" if done else ("SCHEDULED" if kind == "call" else "NOTSTART"),
                "startdate" if kind == "call" else "duedate": due.isoformat() if due else None,
                "completeddate": _epoch(at) if done and at else None, **links,
                **({"custevent_duration_minutes": _text(f["duration_minutes"])}
                   if kind == "call" else {})})
        # e-mails are NetSuite `message` records: not rendered, not read
