"""What a POST, PUT or DELETE means to a Close organization.

Close fills in what it derives: an opportunity's `status_label` / `status_type` from
its `status_id` (and `date_won` the day it is marked won), `lead_name` / `user_name`,
`value_formatted`; a contact or an opportunity must belong to an existing lead. An
opportunity's custom fields are `custom.cf_…` keys of the body (a field the organization
declares; a number field takes a number; null clears it). A PUT
changes only the keys it sends (Close's PUT is a PATCH). Deleting a lead deletes what
hangs off it, each with its own event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.close.sandbox.errors import ApiError, bad_request
from connectors.close.sandbox.store import (
    OPPORTUNITY_CUSTOM_FIELD_KIND,
    CloseStore,
    ListQuery,
    parse_time,
)

READ_ONLY = frozenset({"id", "date_created", "date_updated", "organization_id", "lead_name",
                       "user_name", "status_label", "status_type", "value_formatted"})
VALUE_PERIODS = ("one_time", "monthly", "annual")


def event_type(document: Mapping[str, Any]) -> str:
    """The event log's `object_type`: `lead`, `opportunity`, `activity.call`..."""
    kind = str(document.get("id", "")).split("_", 1)[0]
    if kind == "acti":
        return f"activity.{str(document.get('_type', 'note')).lower()}"
    return {"lead": "lead", "cont": "contact", "oppo": "opportunity",
            "task": "task.lead"}.get(kind, kind)


class Writes:
    def __init__(self, store: CloseStore) -> None:
        self.store = store

    def me(self) -> dict[str, Any]:
        me = self.store.get("user", self.store.meta("me_id", "")) or {}
        organization = {"id": self.store.meta("organization_id"),
                        "name": self.store.meta("organization_name")}
        return {**me, "organizations": [organization]}

    def create(self, kind: str, activity_type: str | None,
               body: Mapping[str, Any]) -> dict[str, Any]:
        document = self._prepare(kind, {k: v for k, v in body.items() if k not in READ_ONLY},
                                 None)
        if kind == "activity":
            document["_type"] = activity_type or document.get("_type") or "Note"
        if kind == "task":
            document.update(_type="lead", is_complete=bool(document.get("is_complete", False)))
        document["organization_id"] = self.store.meta("organization_id")
        lead_id = document.get("lead_id") if kind != "lead" else None
        return self.store.insert(kind, document, object_type=_object_type(kind, document),
                                 lead_id=lead_id)

    def update(self, kind: str, object_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        before = self.store.get(kind, object_id)
        if before is None:
            raise ApiError(404, {"error": "Not found"})
        changes = self._prepare(kind, {k: v for k, v in body.items() if k not in READ_ONLY},
                                before)
        updated = self.store.update(kind, object_id, changes,
                                    object_type=_object_type(kind, before))
        if updated is None:
            raise ApiError(404, {"error": "Not found"})
        return updated

    def delete(self, kind: str, object_id: str) -> None:
        if not self.store.delete(kind, object_id, object_type=event_type):
            raise ApiError(404, {"error": "Not found"})

    def raw(self, kind: str, object_id: str, payload: Mapping[str, Any]) -> None:
        """Store values as they are, without checks (tests of bad values)."""
        if self.store.update(kind, object_id, payload,
                             object_type=_object_type(kind, payload)) is None:
            raise ApiError(404, {"error": "Not found"})

    # -- derived fields -------------------------------------------------------------

    def _prepare(self, kind: str, changes: dict[str, Any],
                 before: Mapping[str, Any] | None) -> dict[str, Any]:
        merged = {**(before or {}), **changes}
        if kind in ("contact", "opportunity", "activity", "task"):
            lead = self.store.get("lead", str(merged.get("lead_id") or ""))
            if lead is None:
                raise bad_request("", lead_id="Lead does not exist." if merged.get("lead_id")
                                  else "This field is required.")
            if kind == "opportunity":
                changes["lead_name"] = lead.get("name")
        if kind == "opportunity":
            self._opportunity(changes, merged, before)
        if kind == "lead" and "name" in changes:
            changes["display_name"] = changes["name"]
        return changes

    def _opportunity(self, changes: dict[str, Any], merged: Mapping[str, Any],
                     before: Mapping[str, Any] | None) -> None:
        if before is None or "status_id" in changes:
            status = self._status(merged.get("status_id"))
            changes.update(status_id=status["id"], status_label=status["label"],
                           status_type=status["type"])
            if status["type"] == "won" and not merged.get("date_won"):
                changes["date_won"] = self.store.clock().date().isoformat()
        if merged.get("value_period", "one_time") not in VALUE_PERIODS:
            raise bad_request("", value_period=f"Must be one of {', '.join(VALUE_PERIODS)}.")
        if before is None:
            changes.setdefault("value_period", "one_time")
            changes.setdefault("value_currency", self.store.meta("currency", "USD"))
            changes.setdefault("confidence", 0)
        value = merged.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise bad_request("", value="Enter a whole number.")
        if "date_won" in changes and changes["date_won"] is not None:
            try:
                parse_time(str(changes["date_won"]))
            except ValueError:
                raise bad_request("", date_won="Enter a valid date.") from None
        self._custom_values(changes)
        if "user_id" in changes:
            user = self.store.get("user", str(changes["user_id"] or ""))
            changes["user_name"] = _full_name(user) if user else None
        if value is not None:
            currency = merged.get("value_currency") or "USD"
            changes["value_formatted"] = f"{value / 100:,.2f} {currency}"

    def _custom_values(self, changes: Mapping[str, Any]) -> None:
        """`custom.cf_…` keys name a declared opportunity custom field; a number field's
        value is a number (or null, which clears it)."""
        for key, value in changes.items():
            if not key.startswith("custom."):
                continue
            field = self.store.get(OPPORTUNITY_CUSTOM_FIELD_KIND, key.removeprefix("custom."))
            if field is None:
                raise bad_request("", **{key: "Custom field does not exist."})
            if field.get("type") == "number" and value is not None and (
                    isinstance(value, bool) or not isinstance(value, int | float)):
                raise bad_request("", **{key: "Enter a number."})

    def _status(self, status_id: Any) -> dict[str, Any]:
        if status_id is None:  # Close puts a new opportunity in the first active status
            statuses = self.store.select(_statuses())[0]
            return next(s for s in statuses if s["type"] == "active")
        status = self.store.get("status", str(status_id))
        if status is None:
            raise bad_request("", status_id="Opportunity status does not exist.")
        return status


def _statuses() -> ListQuery:
    return ListQuery("status", order=(), limit=1000)


def _object_type(kind: str, document: Mapping[str, Any]) -> str:
    if kind == "activity":
        return f"activity.{str(document.get('_type', 'Note')).lower()}"
    return "task.lead" if kind == "task" else kind


def _full_name(user: Mapping[str, Any]) -> str:
    return " ".join(p for p in (user.get("first_name"), user.get("last_name")) if p)
