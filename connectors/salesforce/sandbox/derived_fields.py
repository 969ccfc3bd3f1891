"""Fields Salesforce derives on every write: names, stage flags and probabilities, expected
revenue, line-item prices and totals, and a user's checks. Each `derive_*` takes the record
after the write, the record before it (None on insert), the fields the call set and the
write's context, as `activities.py` does for tasks and events.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .errors import ApiError
from .ids import normalize_id
from .standard_objects import STAGES

if TYPE_CHECKING:
    from .writes import RecordWriter, WriteContext

# What Salesforce requires of a new user (an insert without one fails).
USER_REQUIRED_ON_INSERT = ("Username", "LastName", "Email", "Alias", "TimeZoneSidKey",
                           "LocaleSidKey", "EmailEncodingKey", "LanguageLocaleKey", "ProfileId")


def derive_person(record: dict[str, Any], old: dict[str, Any] | None, changed: set[str],
                  ctx: WriteContext) -> None:
    record["Name"] = " ".join(p for p in (record.get("FirstName"), record.get("LastName"))
                              if p) or None


def derive_user(writer: RecordWriter, record: dict[str, Any], old: dict[str, Any] | None,
                changed: set[str], ctx: WriteContext) -> None:
    """Salesforce's checks on a user: its required fields, a known profile and a
    username no other user has."""
    derive_person(record, old, changed, ctx)
    if old is None:
        missing = [f for f in USER_REQUIRED_ON_INSERT if record.get(f) in (None, "")]
        if missing:
            raise ApiError(400, "REQUIRED_FIELD_MISSING",
                           f"Required fields are missing: [{', '.join(missing)}]", missing)
    if "ProfileId" in changed and (
            normalize_id(str(record.get("ProfileId"))) != writer.sandbox.profile_id()):
        raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY",
                       f"invalid cross reference id: {record.get('ProfileId')}",
                       ["ProfileId"])
    if "Username" in changed:
        table = writer.obj("User").table
        clash = ctx.conn.execute(
            f'SELECT Id FROM "{table}" WHERE json_extract(data, \'$.Username\') = ? '
            "AND Id != ?", (record["Username"], record.get("Id") or "")).fetchone()
        if clash is not None:
            raise ApiError(400, "DUPLICATE_USERNAME",
                           "Duplicate Username.<br>The username already exists in this or "
                           "another Salesforce organization. Usernames must be unique "
                           "across all Salesforce organizations.", ["Username"])
    record["UserType"] = "Standard"


def derive_account(record: dict[str, Any], old: dict[str, Any] | None, changed: set[str],
                   ctx: WriteContext) -> None:
    if record.get("ParentId") is not None and record.get("ParentId") == record.get("Id"):
        raise ApiError(400, "FIELD_INTEGRITY_EXCEPTION",
                       "Parent Account ID: id value of incorrect type (self reference)",
                       ["ParentId"])


def expected_revenue(record: dict[str, Any]) -> None:
    amount, probability = record.get("Amount"), record.get("Probability")
    record["ExpectedRevenue"] = (
        round(amount * probability / 100, 2)
        if amount is not None and probability is not None else None
    )


def derive_opportunity(record: dict[str, Any], old: dict[str, Any] | None,
                       changed: set[str], ctx: WriteContext) -> None:
    stage = record.get("StageName")
    if stage in STAGES:
        probability, closed, won, forecast = STAGES[stage]
        record["IsClosed"], record["IsWon"], record["ForecastCategory"] = closed, won, forecast
        if "Probability" not in changed and (old is None or old.get("StageName") != stage):
            record["Probability"] = probability
    if old is not None and old.get("HasOpportunityLineItem"):
        record["Amount"] = old.get("Amount")  # the line-item rollup owns Amount
    expected_revenue(record)


def derive_line_item(writer: RecordWriter, record: dict[str, Any], old: dict[str, Any] | None,
                     changed: set[str], ctx: WriteContext) -> None:
    if old is None:
        _price_new_line(writer, record, ctx)
    quantity = record.get("Quantity")
    if quantity is not None and quantity == 0:
        raise ApiError(400, "FIELD_INTEGRITY_EXCEPTION",
                       "field integrity exception: Quantity (quantity must be non-zero)",
                       ["Quantity"])
    unit_price = record.get("UnitPrice")
    if quantity is not None and unit_price is not None:
        discount = record.get("Discount") or 0
        record["TotalPrice"] = round(quantity * unit_price * (1 - discount / 100), 2)


def _price_new_line(writer: RecordWriter, record: dict[str, Any], ctx: WriteContext) -> None:
    opportunity_id = record.get("OpportunityId")
    opportunity = writer.load_live(ctx, "Opportunity", opportunity_id) if opportunity_id else None
    if opportunity is None:
        raise ApiError(400, "REQUIRED_FIELD_MISSING",
                       "Required fields are missing: [OpportunityId]", ["OpportunityId"])
    entry_id, product_id = record.get("PricebookEntryId"), record.get("Product2Id")
    if entry_id is not None:
        entry = writer.load_live(ctx, "PricebookEntry", entry_id) or {}
        if product_id is not None and product_id != entry.get("Product2Id"):
            raise ApiError(400, "FIELD_INTEGRITY_EXCEPTION",
                           "field integrity exception: Product2Id (does not match the "
                           "price book entry's product)", ["Product2Id"])
    elif product_id is not None:
        pricebook_id = opportunity.get("Pricebook2Id") or writer.sandbox.standard_pricebook_id(
            ctx.conn)
        entries = writer.obj("PricebookEntry")
        row = ctx.conn.execute(
            f'SELECT data FROM "{entries.table}" WHERE json_extract(data, \'$.Product2Id\') '
            "= ? AND json_extract(data, '$.Pricebook2Id') = ? AND IsDeleted = 0 LIMIT 1",
            (product_id, pricebook_id),
        ).fetchone()
        if row is None:
            raise ApiError(400, "FIELD_INTEGRITY_EXCEPTION",
                           "field integrity exception: PricebookEntryId (no price book "
                           "entry for this product in the opportunity's price book)",
                           ["Product2Id"])
        entry = json.loads(row[0])
    else:
        raise ApiError(400, "REQUIRED_FIELD_MISSING",
                       "Required fields are missing: [PricebookEntryId]",
                       ["PricebookEntryId"])
    pricebook = opportunity.get("Pricebook2Id")
    if pricebook is not None and pricebook != entry.get("Pricebook2Id"):
        raise ApiError(400, "FIELD_INTEGRITY_EXCEPTION",
                       "field integrity exception: PricebookEntryId (pricebook entry is in a "
                       "different pricebook than the one assigned to the opportunity)",
                       ["PricebookEntryId"])
    record["PricebookEntryId"] = entry["Id"]
    record["Product2Id"] = entry["Product2Id"]
    record["ListPrice"] = entry["UnitPrice"]
    if record.get("UnitPrice") is None:
        record["UnitPrice"] = entry["UnitPrice"]


def derive_entry(writer: RecordWriter, record: dict[str, Any], old: dict[str, Any] | None,
                 changed: set[str], ctx: WriteContext) -> None:
    product = writer.load_live(ctx, "Product2", record.get("Product2Id") or "")
    if product is not None:
        record["Name"] = product.get("Name")
        record["ProductCode"] = product.get("ProductCode")
