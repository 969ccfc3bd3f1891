"""What a POST, PUT or DELETE means to a Sugar instance.

Sugar fills in what it derives: a user's `full_name`, the `account_name` of a contact or
an opportunity, an opportunity's `probability` from its `sales_stage` (unless one is
sent), `amount_usdollar`; it stores currency and decimal fields as text with six (or two,
for quantities) decimals and refuses a value that is no number or no date. A PUT changes
only what it sends. A DELETE marks the record deleted (and an opportunity's revenue line
items with it); a deleted record answers 404.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.sugarcrm.sandbox.store import SugarStore, parse_time, stamp

MODULES = ("Users", "Accounts", "Contacts", "Leads", "ProductTemplates", "Opportunities",
           "RevenueLineItems", "Calls", "Meetings", "Tasks", "Emails")
READ_ONLY = frozenset({"id", "date_modified", "date_entered", "deleted", "created_by",
                       "modified_user_id", "_module", "_acl", "full_name", "account_name",
                       "amount_usdollar"})
REQUIRED = {"Accounts": "name", "Contacts": "last_name", "Leads": "last_name",
            "Opportunities": "name", "ProductTemplates": "name", "Users": "user_name",
            "RevenueLineItems": "name", "Calls": "name", "Meetings": "name", "Tasks": "name",
            "Emails": "name"}
CURRENCY = frozenset({"amount", "likely_case", "best_case", "worst_case", "discount_price",
                      "list_price", "cost_price", "discount_amount", "total_amount"})
DATES = frozenset({"date_closed"})
DATETIMES = frozenset({"date_start", "date_end", "date_due", "date_sent"})
# Sugar's sales stages and the probability each sets (sales_probability_dom).
SALES_STAGES = {"Prospecting": 10, "Qualification": 20, "Needs Analysis": 25,
                "Value Proposition": 30, "Id. Decision Makers": 40, "Perception Analysis": 50,
                "Proposal/Price Quote": 65, "Negotiation/Review": 80, "Closed Won": 100,
                "Closed Lost": 0}
_NUMBER = re.compile(r"-?(\d+(\.\d*)?|\.\d+)")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def sugar_decimal(value: Any, places: int, field: str) -> str | None:
    """A number as Sugar stores a decimal field: text with `places` decimals, exactly."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise ApiError(422, "invalid_parameter", f"Invalid number for {field}")
    text = repr(value) if isinstance(value, float) else str(value).strip()
    if not _NUMBER.fullmatch(text):
        raise ApiError(422, "invalid_parameter", f"Invalid number for {field}: {value!r}")
    try:
        exact = Decimal(text)
        quantized = exact.quantize(Decimal(1).scaleb(-places))
    except InvalidOperation:
        raise ApiError(422, "invalid_parameter", f"Invalid number for {field}") from None
    if quantized != exact:
        raise ApiError(422, "invalid_parameter", f"{field} has more than {places} decimals")
    return f"{quantized:f}"


class Writes:
    def __init__(self, store: SugarStore) -> None:
        self.store = store

    def me(self, user_id: str) -> dict[str, Any]:
        user = self.store.get("Users", user_id) or {}
        return {"current_user": {"id": user_id, "user_name": user.get("user_name"),
                                 "full_name": user.get("full_name"), "type": "user",
                                 "is_manager": False}}

    def get(self, module: str, record_id: str) -> dict[str, Any]:
        record = self.store.get(module, record_id)
        if record is None:
            raise ApiError(404, "not_found",
                           f"Could not find record: {record_id} in module: {module}")
        return record

    def create(self, module: str, body: Mapping[str, Any], user_id: str) -> dict[str, Any]:
        changes = self._prepare(module, body, None)
        if not changes.get(REQUIRED[module]):
            raise ApiError(422, "missing_parameter",
                           f"Missing parameter: {REQUIRED[module]}")
        changes.setdefault("created_by", user_id)
        changes["modified_user_id"] = user_id
        return self.store.insert(module, changes)

    def update(self, module: str, record_id: str, body: Mapping[str, Any],
               user_id: str) -> dict[str, Any]:
        before = self.get(module, record_id)
        changes = self._prepare(module, body, before)
        changes["modified_user_id"] = user_id
        updated = self.store.update(module, record_id, changes)
        if updated is None:
            raise ApiError(404, "not_found",
                           f"Could not find record: {record_id} in module: {module}")
        return updated

    def delete(self, module: str, record_id: str, user_id: str) -> dict[str, Any]:
        if self.store.update(module, record_id, {"modified_user_id": user_id},
                             delete=True) is None:
            raise ApiError(404, "not_found",
                           f"Could not find record: {record_id} in module: {module}")
        if module == "Opportunities":  # Sugar deletes an opportunity's line items with it
            lines = self.store.select("RevenueLineItems", "json_extract(body, "
                                      "'$.opportunity_id') = ? AND deleted = 0", [record_id],
                                      "id", 10_000, 0)
            for line in lines:
                self.store.update("RevenueLineItems", line["id"],
                                  {"modified_user_id": user_id}, delete=True)
        return {"id": record_id}

    def raw(self, module: str, record_id: str, payload: Mapping[str, Any]) -> None:
        """Store values as they are, unchecked (tests of bad values)."""
        if self.store.update(module, record_id, payload) is None:
            raise ApiError(404, "not_found", f"Could not find record: {record_id}")

    # -- derived fields ---------------------------------------------------------------

    def _prepare(self, module: str, body: Mapping[str, Any],
                 before: Mapping[str, Any] | None) -> dict[str, Any]:
        changes = {k: v for k, v in body.items() if k not in READ_ONLY}
        for key in list(changes):
            if key in CURRENCY:
                changes[key] = sugar_decimal(changes[key], 6, key)
            elif key == "quantity":
                changes[key] = sugar_decimal(changes[key], 2, key)
            elif key in DATETIMES and changes[key] not in (None, ""):
                try:
                    changes[key] = stamp(parse_time(str(changes[key])))
                except ValueError:
                    raise ApiError(422, "invalid_parameter",
                                   f"Invalid date-time for {key}: {changes[key]!r}") from None
            elif key in DATES and changes[key] not in (None, ""):
                try:
                    date.fromisoformat(str(changes[key]))
                except ValueError:
                    raise ApiError(422, "invalid_parameter",
                                   f"Invalid date for {key}: {changes[key]!r}") from None
        merged = {**(before or {}), **changes}
        if module == "Users" and ({"first_name", "last_name"} & set(changes)):
            changes["full_name"] = " ".join(
                p for p in (merged.get("first_name"), merged.get("last_name")) if p)
        if module in ("Contacts", "Opportunities", "RevenueLineItems") and (
                "account_id" in changes):
            account = self.store.get("Accounts", str(changes["account_id"] or ""))
            changes["account_name"] = account.get("name") if account else ""
        if module == "Opportunities":
            self._opportunity(changes, before)
        return changes

    def _opportunity(self, changes: dict[str, Any], before: Mapping[str, Any] | None) -> None:
        if before is None:
            changes.setdefault("sales_stage", "Prospecting")
            changes.setdefault("currency_id", "-99")
        if "sales_stage" in changes:
            stage = changes["sales_stage"]
            if stage not in SALES_STAGES:
                raise ApiError(422, "invalid_parameter", f"Invalid sales_stage: {stage!r}")
            changes.setdefault("probability", SALES_STAGES[stage])
            changes["sales_status"] = stage if stage in ("Closed Won", "Closed Lost") else (
                "In Progress")
        if "amount" in changes:
            changes["amount_usdollar"] = changes["amount"]
