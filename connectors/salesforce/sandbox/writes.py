"""Record writes with Salesforce's validation, derived fields and recycle bin.

Every write path (REST single-record calls, sObject Collections, SOAP
undelete) goes through `RecordWriter`, so the rules are the same everywhere:
unknown field → INVALID_FIELD, read-only field → INVALID_FIELD_FOR_INSERT_UPDATE,
missing required field → REQUIRED_FIELD_MISSING, bad value → a type error;
derived fields (names, stage flags, line totals, the opportunity amount
rollup, formulas) are recomputed, and the audit fields always move forward.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from .activities import derive_event, derive_task
from .derived_fields import (
    derive_account,
    derive_entry,
    derive_line_item,
    derive_opportunity,
    derive_person,
    derive_user,
    expected_revenue,
)
from .errors import ApiError
from .ids import normalize_id
from .schema import NUMBER_TYPES, STRING_TYPES, FieldDef, ObjectDef
from .store import SandboxStore, StoredRecord
from .values import format_date, format_datetime, parse_date, parse_datetime

if TYPE_CHECKING:
    from .sandbox import SalesforceSandbox

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NUMERIC = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass
class WriteContext:
    """One API call's write: its transaction, acting user and clock reading."""

    conn: sqlite3.Connection
    user_id: str
    now: str  # REST-format UTC timestamp of the call
    touched_opportunities: set[str] = field(default_factory=set)


def _json_error(type_name: str, value: Any) -> ApiError:
    token = "VALUE_STRING" if isinstance(value, str) else (
        "VALUE_TRUE" if value is True else "VALUE_FALSE" if value is False else
        "START_OBJECT" if isinstance(value, dict) else
        "START_ARRAY" if isinstance(value, list) else "VALUE_NUMBER")
    return ApiError(400, "JSON_PARSER_ERROR",
                    f"Cannot deserialize instance of {type_name} from {token} value "
                    f"{json.dumps(value)} or request may be missing a required field")


def _next_stamp(now: str, previous: str | None) -> str:
    """`now`, unless that would not move the record's stamp forward."""
    if previous is None or now > previous:
        return now
    moved = parse_datetime(previous) + timedelta(milliseconds=1)
    return format_datetime(moved)


class RecordWriter:
    """Creates, updates, deletes and undeletes records of one sandbox."""

    def __init__(self, sandbox: SalesforceSandbox) -> None:
        self.sandbox = sandbox
        self._derive: dict[str, Callable[[dict[str, Any], dict[str, Any] | None, set[str],
                                          WriteContext], None]] = {
            "Account": derive_account,
            "Contact": derive_person,
            "Lead": derive_person,
            "User": partial(derive_user, self),
            "Opportunity": derive_opportunity,
            "OpportunityLineItem": partial(derive_line_item, self),
            "PricebookEntry": partial(derive_entry, self),
            "Task": partial(derive_task, self),
            "Event": partial(derive_event, self),
        }

    @property
    def store(self) -> SandboxStore:
        return self.sandbox.store

    # -- lookups -------------------------------------------------------------

    def obj(self, name: str) -> ObjectDef:
        return self.sandbox.schema.require(name)

    def load(self, ctx: WriteContext, obj: ObjectDef, record_id: str) -> StoredRecord | None:
        return self.store.get(ctx.conn, obj, record_id)

    def load_live(self, ctx: WriteContext, sobject: str, record_id: str) -> dict[str, Any] | None:
        stored = self.load(ctx, self.obj(sobject), record_id)
        return None if stored is None or stored.is_deleted else stored.data

    # -- validation ----------------------------------------------------------

    def _resolve_payload(self, obj: ObjectDef, payload: Mapping[str, Any], *,
                         creating: bool) -> dict[FieldDef, Any]:
        """Map payload keys to fields and check they may be written at all."""
        if not isinstance(payload, Mapping):
            raise ApiError(400, "JSON_PARSER_ERROR",
                           "The request body must be a JSON object of field values")
        resolved: dict[FieldDef, Any] = {}
        read_only: list[str] = []
        for key, value in payload.items():
            if key == "attributes":
                continue
            definition = obj.field(key)
            if definition is None:
                raise ApiError(400, "INVALID_FIELD",
                               f"No such column '{key}' on sobject of type {obj.name}")
            if definition.name == "Id" and creating:
                raise ApiError(400, "INVALID_FIELD", "cannot specify Id in an insert call",
                               ["Id"])
            allowed = definition.createable if creating else definition.updateable
            if not allowed:
                read_only.append(definition.name)
                continue
            resolved[definition] = value
        if read_only:
            raise ApiError(
                400, "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(read_only)}. Please check the "
                "security settings of this field and verify that it is read/write for your "
                "profile or permission set.", read_only)
        return resolved

    def coerce(self, ctx: WriteContext, definition: FieldDef, value: Any) -> Any:
        """Turn a JSON value into the stored form of the field, or fail like Salesforce."""
        type_ = definition.type
        if value is None:
            return False if type_ == "boolean" else None
        if type_ in STRING_TYPES:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise _json_error("String", value)
            text = value if isinstance(value, str) else str(value)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # JSON's \ud800 escape: not text Salesforce can store
                raise ApiError(400, "JSON_PARSER_ERROR",
                               f"{definition.label}: invalid UTF-8 (a lone surrogate)",
                               [definition.name]) from None
            if type_ != "textarea" and len(text) > definition.length:
                raise ApiError(400, "STRING_TOO_LONG",
                               f"{definition.label}: data value too large: {text[:40]} "
                               f"(max length={definition.length})", [definition.name])
            if type_ == "textarea" and len(text) > definition.length:
                raise ApiError(400, "STRING_TOO_LONG",
                               f"{definition.label}: data value too large (max length="
                               f"{definition.length})", [definition.name])
            if type_ == "picklist" and definition.restricted_picklist and (
                text not in definition.picklist
            ):
                raise ApiError(400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                               f"{definition.label}: bad value for restricted picklist field: "
                               f"{text}", [definition.name])
            if type_ == "email" and text and not _EMAIL.match(text):
                raise ApiError(400, "INVALID_EMAIL_ADDRESS",
                               f"{definition.label}: invalid email address: {text}",
                               [definition.name])
            return text if text != "" else None
        if type_ in ("id", "reference"):
            if not isinstance(value, str):
                raise _json_error("Id", value)
            if value == "":
                return None
            record_id = normalize_id(value)
            if record_id is None:
                raise ApiError(400, "MALFORMED_ID",
                               f"{definition.label}: id value of incorrect type: {value}",
                               [definition.name])
            if type_ == "reference":
                self._check_reference(ctx, definition, record_id)
            return record_id
        if type_ == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise _json_error("boolean", value)
        if type_ in NUMBER_TYPES:
            return self._coerce_number(definition, value)
        if type_ == "date":
            if isinstance(value, str):
                try:
                    return format_date(parse_date(value[:10]))
                except ValueError:
                    pass
            raise _json_error("date", value)
        if type_ == "datetime":
            if isinstance(value, str):
                try:
                    return format_datetime(parse_datetime(value))
                except ValueError:
                    pass
            raise _json_error("datetime", value)
        raise _json_error(type_, value)

    def _coerce_number(self, definition: FieldDef, value: Any) -> int | float:
        type_name = "int" if definition.type == "int" else "double"
        if isinstance(value, bool):
            raise _json_error(type_name, value)
        if isinstance(value, str):
            if not _NUMERIC.match(value.strip()):
                raise _json_error(type_name, value)
            value = float(value)
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise _json_error(type_name, value)
        if definition.type == "int":
            if float(value) != int(value):
                raise _json_error("int", value)
            number: int | float = int(value)
            limit = 10 ** max(definition.digits, 1)
        else:
            number = round(float(value), definition.scale)
            limit = 10 ** max(definition.precision - definition.scale, 1)
        if abs(number) >= limit:
            raise ApiError(400, "NUMBER_OUTSIDE_VALID_RANGE",
                           f"{definition.label}: value outside of valid range on numeric field: "
                           f"{value}", [definition.name])
        return number

    def _check_reference(self, ctx: WriteContext, definition: FieldDef, record_id: str) -> None:
        targets = [self.obj(name) for name in definition.reference_to]
        target = next((t for t in targets if t.key_prefix == record_id[:3]), None)
        if target is None:
            raise ApiError(400, "FIELD_INTEGRITY_EXCEPTION",
                           f"{definition.label}: id value of incorrect type: {record_id}",
                           [definition.name])
        stored = self.store.get(ctx.conn, target, record_id)
        if stored is None or stored.is_deleted:
            raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY",
                           f"invalid cross reference id: {record_id}", [definition.name])

    def _check_required(self, obj: ObjectDef, record: Mapping[str, Any]) -> None:
        missing = [f.name for f in obj.fields
                   if not f.nillable and f.createable and record.get(f.name) is None]
        if missing:
            raise ApiError(400, "REQUIRED_FIELD_MISSING",
                           f"Required fields are missing: [{', '.join(missing)}]", missing)

    def _apply_formulas(self, obj: ObjectDef, record: dict[str, Any]) -> None:
        for definition in obj.fields:
            if definition.calculated and definition.name == "Revenue_Per_Employee__c":
                revenue, employees = record.get("AnnualRevenue"), record.get("NumberOfEmployees")
                record[definition.name] = (
                    round(revenue / employees, 2) if revenue is not None and employees else None
                )

    # -- operations ----------------------------------------------------------

    def create(self, ctx: WriteContext, sobject: str, payload: Mapping[str, Any]) -> str:
        obj = self.obj(sobject)
        if not obj.createable:
            raise ApiError(400, "INVALID_TYPE_FOR_OPERATION",
                           f"entity type cannot be inserted: {obj.name}")
        values = self._resolve_payload(obj, payload, creating=True)
        record: dict[str, Any] = {}
        for definition in obj.fields:
            if definition.type == "address":
                continue
            if definition.defaulted_on_create and definition.default_value is not None:
                record[definition.name] = definition.default_value
            elif definition.type == "boolean":
                record[definition.name] = False
            else:
                record[definition.name] = None
        changed: set[str] = set()
        for definition, value in values.items():
            record[definition.name] = self.coerce(ctx, definition, value)
            changed.add(definition.name)
        if obj.has_field("OwnerId") and record.get("OwnerId") is None:
            record["OwnerId"] = ctx.user_id
        derive = self._derive.get(obj.name)
        if derive is not None:
            derive(record, None, changed, ctx)
        self._apply_formulas(obj, record)
        self._check_required(obj, record)
        record_id = self.store.allocate_ids(ctx.conn, obj.key_prefix, 1)[0]
        record["Id"] = record_id
        if "IsDeleted" in record:
            record["IsDeleted"] = False
        record.update({
            "CreatedDate": ctx.now, "CreatedById": ctx.user_id, "LastModifiedDate": ctx.now,
            "LastModifiedById": ctx.user_id, "SystemModstamp": ctx.now,
        })
        self.store.insert(ctx.conn, obj, record)
        if obj.name == "OpportunityLineItem":
            ctx.touched_opportunities.add(record["OpportunityId"])
        return record_id

    def _require_live(self, ctx: WriteContext, obj: ObjectDef, record_id: str) -> StoredRecord:
        normalized = normalize_id(record_id)
        if normalized is None or normalized[:3] != obj.key_prefix:
            raise ApiError(404, "NOT_FOUND", "Provided external ID field does not exist or is "
                           f"not accessible: {record_id}")
        stored = self.load(ctx, obj, normalized)
        if stored is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if stored.is_deleted:
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        return stored

    def update(self, ctx: WriteContext, sobject: str, record_id: str,
               payload: Mapping[str, Any]) -> None:
        obj = self.obj(sobject)
        if not obj.updateable:
            raise ApiError(400, "INVALID_TYPE_FOR_OPERATION",
                           f"entity type cannot be updated: {obj.name}")
        stored = self._require_live(ctx, obj, record_id)
        payload = dict(payload)
        given_id = payload.pop("Id", None) or payload.pop("id", None)
        if given_id is not None and normalize_id(str(given_id)) != stored.data["Id"]:
            raise ApiError(400, "INVALID_ID_FIELD",
                           "The Id field should not be specified in the sobject data.")
        if obj.name == "Lead" and stored.data.get("IsConverted"):
            raise ApiError(400, "CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead")
        values = self._resolve_payload(obj, payload, creating=False)
        old = stored.data
        record = dict(old)
        changed: set[str] = set()
        for definition, value in values.items():
            record[definition.name] = self.coerce(ctx, definition, value)
            changed.add(definition.name)
        derive = self._derive.get(obj.name)
        if derive is not None:
            derive(record, old, changed, ctx)
        self._apply_formulas(obj, record)
        self._check_required(obj, record)
        self._stamp(ctx, record)
        self.store.save(ctx.conn, obj, record, is_deleted=False)
        if obj.name == "OpportunityLineItem":
            ctx.touched_opportunities.add(record["OpportunityId"])

    def _stamp(self, ctx: WriteContext, record: dict[str, Any]) -> None:
        stamp = _next_stamp(ctx.now, record.get("SystemModstamp"))
        record["LastModifiedDate"] = stamp
        record["SystemModstamp"] = stamp
        record["LastModifiedById"] = ctx.user_id

    def delete(self, ctx: WriteContext, sobject: str, record_id: str) -> None:
        obj = self.obj(sobject)
        if not obj.deletable:
            raise ApiError(400, "INVALID_TYPE_FOR_OPERATION",
                           f"entity type cannot be deleted: {obj.name}")
        stored = self._require_live(ctx, obj, record_id)
        self._soft_delete(ctx, obj, stored.data, root=None)

    def _soft_delete(self, ctx: WriteContext, obj: ObjectDef, record: dict[str, Any],
                     root: str | None) -> None:
        record = dict(record)
        self._stamp(ctx, record)
        record["IsDeleted"] = True
        self.store.save(ctx.conn, obj, record, is_deleted=True,
                        deleted_date=record["SystemModstamp"], deleted_by=root)
        if obj.name == "OpportunityLineItem":
            ctx.touched_opportunities.add(record["OpportunityId"])
        for child, ref in self._cascade_children(obj):
            for child_id in self.store.child_ids(ctx.conn, child, ref, record["Id"],
                                                 deleted=False):
                child_record = self.store.get(ctx.conn, child, child_id)
                assert child_record is not None  # the store just listed its id
                self._soft_delete(ctx, child, child_record.data, root=root or record["Id"])

    def _cascade_children(self, obj: ObjectDef) -> list[tuple[ObjectDef, str]]:
        return [(child, f.name) for child in self.sandbox.schema.objects.values()
                for f in child.fields if f.cascade_delete and obj.name in f.reference_to]

    def undelete(self, ctx: WriteContext, record_id: str) -> None:
        """Restore a record from the recycle bin with the children its delete took along."""
        normalized = normalize_id(record_id)
        obj = self.sandbox.schema.by_prefix(normalized[:3]) if normalized else None
        if normalized is None or obj is None:
            raise ApiError(400, "MALFORMED_ID", f"malformed id {record_id}")
        stored = self.store.get(ctx.conn, obj, normalized)
        if stored is None:
            raise ApiError(400, "INVALID_ID_FIELD",
                           "invalid record id: the record is not in the recycle bin")
        if not stored.is_deleted:
            raise ApiError(400, "UNDELETE_FAILED", "Entity is not in the recycle bin")
        if stored.deleted_by is not None:
            raise ApiError(400, "UNDELETE_FAILED",
                           "Entity was deleted with its parent; undelete the parent instead")
        self._restore(ctx, obj, stored.data)
        for child_obj in self.sandbox.schema.objects.values():
            for child_id in self.store.cascade_deleted_ids(ctx.conn, child_obj, normalized):
                child = self.store.get(ctx.conn, child_obj, child_id)
                assert child is not None  # the store just listed its id
                self._restore(ctx, child_obj, child.data)

    def _restore(self, ctx: WriteContext, obj: ObjectDef, record: dict[str, Any]) -> None:
        record = dict(record)
        self._stamp(ctx, record)
        record["IsDeleted"] = False
        self.store.save(ctx.conn, obj, record, is_deleted=False)
        if obj.name == "OpportunityLineItem":
            ctx.touched_opportunities.add(record["OpportunityId"])

    def finish(self, ctx: WriteContext) -> None:
        """Roll line-item totals up to their opportunities (once per call, like a trigger)."""
        opportunity = self.obj("Opportunity")
        lines = self.obj("OpportunityLineItem")
        for opportunity_id in sorted(ctx.touched_opportunities):
            stored = self.store.get(ctx.conn, opportunity, opportunity_id)
            if stored is None or stored.is_deleted:
                continue
            total, count = ctx.conn.execute(
                f'SELECT sum(json_extract(data, \'$.TotalPrice\')), count(*) FROM "{lines.table}" '
                "WHERE json_extract(data, '$.OpportunityId') = ? AND IsDeleted = 0",
                (opportunity_id,),
            ).fetchone()
            record = dict(stored.data)
            record["HasOpportunityLineItem"] = bool(count)
            if count:
                record["Amount"] = round(float(total or 0), 2)
            expected_revenue(record)
            self._stamp(ctx, record)
            self.store.save(ctx.conn, opportunity, record, is_deleted=False)
        ctx.touched_opportunities.clear()
