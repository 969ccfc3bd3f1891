"""What the CRM object endpoints of HubSpot's v3 API do: list, read, search, create, update,
archive, and v4 association batch reads.

HubSpot's limits, as the sandbox enforces them (each a setting, so tests reach it with a few
dozen records): a list page holds at most 100 records; a search at most 200 per page, 5
filter groups of at most 6 filters (18 in all), one sort, and 10,000 results per query —
asking for a page past that is a 400, whatever the total. Property values are strings:
numbers are checked and kept as sent, date-times are normalised to ISO 8601 (HubSpot takes
epoch milliseconds or ISO text).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.hubspot.sandbox.seed import ASSOCIATION_TYPES, both
from connectors.hubspot.sandbox.store import (
    MODIFIED_PROPERTY,
    OBJECT_TYPES,
    HubSpotStore,
    iso,
    parse_stamp,
)

DATE_PROPERTIES = frozenset({"createdate", "hs_lastmodifieddate", "lastmodifieddate",
                             "closedate"})
NUMBER_PROPERTIES = frozenset({"hs_object_id", "amount", "quantity", "price", "discount",
                               "numberofemployees", "annualrevenue", "hs_cost_of_goods_sold",
                               "hs_deal_stage_probability", "hs_discount_percentage"})
READ_ONLY = frozenset({"hs_object_id", "createdate", "hs_lastmodifieddate", "lastmodifieddate"})
# What a read returns without `properties`: HubSpot's default set for each type.
DEFAULT_PROPERTIES: dict[str, tuple[str, ...]] = {
    "companies": ("name", "domain"), "contacts": ("firstname", "lastname", "email"),
    "deals": ("dealname", "amount", "closedate", "pipeline", "dealstage"),
    "line_items": ("name", "quantity", "price", "amount"), "products": ("name", "price"),
}
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "EQ": lambda a, b: a == b, "NEQ": lambda a, b: a != b, "LT": lambda a, b: a < b,
    "LTE": lambda a, b: a <= b, "GT": lambda a, b: a > b, "GTE": lambda a, b: a >= b,
}


class ApiError(Exception):
    """An error answer in HubSpot's shape: status, message, category."""

    def __init__(self, status: int, message: str, category: str = "VALIDATION_ERROR") -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"status": "error", "message": message,
                                     "correlationId": str(uuid.uuid4()), "category": category}


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


@dataclass(frozen=True)
class Limits:
    list_limit: int = 100
    search_limit: int = 200
    search_max_results: int = 10_000
    filter_groups: int = 5
    filters_per_group: int = 6
    filters_total: int = 18


def _comparable(name: str, value: Any) -> Any:
    """A property value (or a filter's) in the form HubSpot compares it in."""
    if value is None:
        return None
    if name in DATE_PROPERTIES:
        return parse_stamp(str(value))
    if name in NUMBER_PROPERTIES:
        return Decimal(str(value))
    return str(value)


class Objects:
    def __init__(self, store: HubSpotStore, limits: Limits) -> None:
        self.store = store
        self.limits = limits

    # -- reads ------------------------------------------------------------------------

    def shape(self, kind: str, record: Mapping[str, Any], wanted: list[str] | None
              ) -> dict[str, Any]:
        """A record as an answer carries it: the asked-for properties (null when unset)
        plus the ones every answer has."""
        names = list(wanted or DEFAULT_PROPERTIES[kind])
        names += ["hs_object_id", "createdate", MODIFIED_PROPERTY[kind]]
        props = record["properties"]
        shaped = {**record, "properties": {n: props.get(n) for n in dict.fromkeys(names)}}
        return shaped

    def list(self, kind: str, args: Mapping[str, str]) -> dict[str, Any]:
        limit = _int(args.get("limit"), 10, "limit")
        if limit > self.limits.list_limit:
            raise bad_request(f"limit must be at most {self.limits.list_limit}")
        after = _int(args.get("after"), 0, "after")
        archived = str(args.get("archived", "false")).lower() == "true"
        wanted = _names(_all(args, "properties"))
        records, next_after = self.store.page(kind, archived=archived, after=after, limit=limit)
        body: dict[str, Any] = {"results": [self.shape(kind, r, wanted) for r in records]}
        if next_after is not None:
            body["paging"] = {"next": {"after": str(next_after),
                                       "link": f"?after={next_after}"}}
        return body

    def read(self, kind: str, object_id: str, args: Mapping[str, str]) -> dict[str, Any]:
        record = self.store.get(kind, _id(object_id))
        archived = str(args.get("archived", "false")).lower() == "true"
        if record is None or bool(record.get("archived")) != archived:
            raise ApiError(404, "Object not found.", "OBJECT_NOT_FOUND")
        return self.shape(kind, record, _names(_all(args, "properties")))

    def search(self, kind: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /crm/v3/objects/{type}/search` over the (lagging) search index."""
        lim = self.limits
        limit = _int(request.get("limit"), 10, "limit")
        if not 0 < limit <= lim.search_limit:
            raise bad_request(f"limit must be between 1 and {lim.search_limit}")
        after = _int(request.get("after"), 0, "after")
        if after >= lim.search_max_results:
            raise bad_request(f"The search endpoints return at most {lim.search_max_results:,} "
                              "results per query: narrow the filters instead of paging "
                              "further.")
        groups = request.get("filterGroups") or []
        if not isinstance(groups, list) or len(groups) > lim.filter_groups:
            raise bad_request(f"at most {lim.filter_groups} filterGroups are allowed")
        filters = [g.get("filters") or [] for g in groups if isinstance(g, Mapping)]
        if len(filters) != len(groups) or any(len(f) > lim.filters_per_group for f in filters) \
                or sum(map(len, filters)) > lim.filters_total:
            raise bad_request(f"at most {lim.filters_per_group} filters per group and "
                              f"{lim.filters_total} in all are allowed")
        sorts = request.get("sorts") or []
        if not isinstance(sorts, list) or len(sorts) > 1:
            raise bad_request("Only one sort is allowed.")
        matching = [r for r in self.store.indexed(kind)
                    if not filters or any(all(_matches(r, f) for f in group) for group in filters)]
        matching.sort(key=lambda r: int(r["id"]))
        if sorts:
            name, descending = _sort(sorts[0])
            matching.sort(key=lambda r: _sort_key(name, r), reverse=descending)
        end = min(after + limit, lim.search_max_results)
        body: dict[str, Any] = {"total": len(matching), "results": [
            self.shape(kind, r, _names(request.get("properties")))
            for r in matching[after:end]]}
        if end < len(matching):
            body["paging"] = {"next": {"after": str(end), "link": ""}}
        return body

    # -- writes -----------------------------------------------------------------------

    def properties(self, kind: str, given: Any) -> dict[str, str | None]:
        """A write's properties as HubSpot stores them (strings), or a 400."""
        if not isinstance(given, Mapping):
            raise bad_request("properties must be an object")
        out: dict[str, str | None] = {}
        for name, value in given.items():
            if name in READ_ONLY or name == MODIFIED_PROPERTY[kind]:
                raise bad_request(f"{name} is a read only property; its value cannot be set.")
            if value is None or value == "":
                out[name] = None if value is None else ""
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            if not isinstance(value, str | int | float):
                raise bad_request(f"Property values were not valid: {name} is not a scalar")
            text = str(value)
            try:
                if name in DATE_PROPERTIES:
                    text = iso(parse_stamp(text))
                elif name in NUMBER_PROPERTIES:
                    Decimal(text)
            except (ValueError, InvalidOperation):
                raise bad_request(f"Property values were not valid: {text!r} is not a valid "
                                  f"{'date' if name in DATE_PROPERTIES else 'number'} for "
                                  f"{name}") from None
            out[name] = text
        if kind == "deals" and out.get("dealstage") is not None:
            stages = {s["id"] for s in self.store.meta("pipeline")["stages"]}
            if out["dealstage"] not in stages:
                raise bad_request(f"{out['dealstage']} is not a valid deal stage")
        return out

    def create(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
        props = self.properties(kind, body.get("properties") or {})
        pairs = [self._association(kind, a) for a in body.get("associations") or []]
        record = self.store.insert(kind, props, MODIFIED_PROPERTY[kind])
        self.store.associate([p for to_kind, to_id in pairs
                              for p in both(kind, int(record["id"]), to_kind, to_id)])
        return self.shape(kind, record, list(props))

    def _association(self, kind: str, association: Any) -> tuple[str, int]:
        """(to kind, to id) of a create's association; its object must exist."""
        try:
            to_id = _id(str(association["to"]["id"]))
            type_id = int(association["types"][0]["associationTypeId"])
        except (KeyError, IndexError, TypeError, ValueError):
            raise bad_request("associations must look like {\"to\": {\"id\": …}, "
                              "\"types\": [{\"associationCategory\": …, "
                              "\"associationTypeId\": …}]}") from None
        to_kind = next((t for (f, t), i in ASSOCIATION_TYPES.items()
                        if f == kind and i == type_id), None)
        if to_kind is None or self.store.get(to_kind, to_id) is None:
            raise bad_request(f"association type {type_id} to {to_id} is not valid here")
        return to_kind, to_id

    def update(self, kind: str, object_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        props = self.properties(kind, body.get("properties") or {})
        record = self.store.update(kind, _id(object_id), props, MODIFIED_PROPERTY[kind])
        if record is None:
            raise ApiError(404, "Object not found.", "OBJECT_NOT_FOUND")
        return self.shape(kind, record, list(props))

    def archive(self, kind: str, object_id: str) -> None:
        """HubSpot answers 204 whether or not the object existed."""
        self.store.archive(kind, _id(object_id))

    # -- associations v4 ----------------------------------------------------------------

    def batch_associations(self, from_kind: str, to_kind: str, body: Mapping[str, Any]
                           ) -> dict[str, Any]:
        if from_kind not in OBJECT_TYPES or to_kind not in OBJECT_TYPES:
            raise bad_request(f"Unknown object type {from_kind} or {to_kind}")
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or len(inputs) > 1000:
            raise bad_request("inputs must be a list of at most 1,000 ids")
        results = []
        now = iso(self.store.now_ms())
        for item in inputs:
            from_id = _id(str(item.get("id") if isinstance(item, Mapping) else ""))
            found = self.store.associations(from_kind, from_id, to_kind)
            if found:
                results.append({"from": {"id": str(from_id)}, "to": [
                    {"toObjectId": str(to_id), "associationTypes": [
                        {"category": "HUBSPOT_DEFINED", "typeId": t,
                         "label": "Primary" if t in (1, 5) else None} for t in types]}
                    for to_id, types in found]})
        return {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}


def _matches(record: Mapping[str, Any], spec: Any) -> bool:
    if not isinstance(spec, Mapping) or "propertyName" not in spec:
        raise bad_request("each filter needs propertyName and operator")
    name, operator = str(spec["propertyName"]), str(spec.get("operator", "EQ"))
    have = record["properties"].get(name)
    try:
        if operator == "HAS_PROPERTY":
            return have not in (None, "")
        if operator == "NOT_HAS_PROPERTY":
            return have in (None, "")
        if operator == "IN":
            return str(have) in {str(v) for v in spec.get("values") or []}
        if have in (None, ""):
            return operator == "NEQ"
        mine = _comparable(name, have)
        if operator == "BETWEEN":
            return bool(_comparable(name, spec["value"]) <= mine
                        <= _comparable(name, spec["highValue"]))
        return OPERATORS[operator](mine, _comparable(name, spec.get("value")))
    except KeyError:
        raise bad_request(f"Unsupported filter operator {operator} or a missing value") from None
    except (ValueError, InvalidOperation):
        raise bad_request(f"{spec.get('value')!r} is not a valid value for {name}") from None


def _sort(spec: Any) -> tuple[str, bool]:
    if isinstance(spec, str):
        return spec.lstrip("-"), spec.startswith("-")
    if isinstance(spec, Mapping) and "propertyName" in spec:
        return str(spec["propertyName"]), str(spec.get("direction", "ASCENDING")) == "DESCENDING"
    raise bad_request("a sort is a property name or {propertyName, direction}")


def _sort_key(name: str, record: Mapping[str, Any]) -> tuple[bool, Any]:
    value = record["properties"].get(name)
    try:
        return (value is None, _comparable(name, value) if value is not None else 0)
    except (ValueError, InvalidOperation):
        return (True, 0)


def _all(args: Mapping[str, str], name: str) -> list[str]:
    """A query parameter given repeated (`properties=a&properties=b`) or comma-separated."""
    values = args.getlist(name) if hasattr(args, "getlist") else [args.get(name) or ""]
    return [part for value in values for part in str(value).split(",") if part]


def _names(given: Any) -> list[str] | None:
    """Property names from a list (a search body, or `_all`'s), None when none are named."""
    if isinstance(given, list):
        return [str(n) for n in given if n] or None
    return None


def _int(value: Any, default: int, name: str) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise bad_request(f"{name} must be a whole number") from None
    if number < 0:
        raise bad_request(f"{name} must not be negative")
    return number


def _id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ApiError(404, "Object not found.", "OBJECT_NOT_FOUND") from None
