"""The live schema: the standard objects plus custom fields added at run time, and the
describe documents built from it."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .errors import ApiError
from .schema import FieldDef, ObjectDef
from .standard_objects import standard_objects

CUSTOM_FIELD_TYPES = frozenset(
    {"string", "double", "currency", "percent", "int", "boolean", "date", "datetime",
     "picklist", "textarea"}
)
_CUSTOM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*__c$")


def custom_field_from_spec(spec: Mapping[str, Any]) -> FieldDef:
    """Validate an admin request for a custom field and build its definition."""
    name = str(spec.get("name") or "")
    type_ = str(spec.get("type") or "").lower()
    if not _CUSTOM_NAME.match(name) or len(name) > 43:
        raise ApiError(400, "INVALID_FIELD",
                       f"Invalid custom field name {name!r}: use letters, digits and single "
                       "underscores, ending in __c")
    if type_ not in CUSTOM_FIELD_TYPES:
        raise ApiError(400, "INVALID_TYPE",
                       f"Unsupported custom field type {type_!r}; use one of "
                       f"{', '.join(sorted(CUSTOM_FIELD_TYPES))}")
    label = str(spec.get("label") or name[:-3].replace("_", " "))
    length = 0
    if type_ in ("string", "picklist"):
        length = int(spec.get("length") or 255)
        if not 1 <= length <= 255:
            raise ApiError(400, "INVALID_FIELD", "length must be between 1 and 255")
    elif type_ == "textarea":
        length = int(spec.get("length") or 32768)
        if not 1 <= length <= 131072:
            raise ApiError(400, "INVALID_FIELD", "length must be between 1 and 131072")
    picklist: tuple[str, ...] = ()
    if type_ == "picklist":
        values = spec.get("picklistValues") or spec.get("values") or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ApiError(400, "INVALID_FIELD", "picklistValues must be a list of strings")
        picklist = tuple(values)
    precision = int(spec.get("precision") or (18 if type_ in ("double", "currency") else 3))
    scale = int(spec.get("scale") or (2 if type_ == "currency" else 0))
    if type_ == "boolean":
        return FieldDef(name, "boolean", label, nillable=False, custom=True,
                        default_value=bool(spec.get("default", False)), defaulted_on_create=True)
    return FieldDef(
        name, type_, label, length=length,
        precision=precision if type_ in ("double", "currency", "percent") else 0,
        scale=scale if type_ in ("double", "currency", "percent") else 0,
        digits=9 if type_ == "int" else 0, custom=True, picklist=picklist,
        filterable=type_ != "textarea", sortable=type_ != "textarea",
    )


def custom_field_to_spec(definition: FieldDef, sobject: str) -> dict[str, Any]:
    """The admin-API view (and persisted form) of a custom field."""
    spec: dict[str, Any] = {"sobject": sobject, "name": definition.name,
                            "type": definition.type, "label": definition.label}
    if definition.length:
        spec["length"] = definition.length
    if definition.type in ("double", "currency", "percent"):
        spec["precision"], spec["scale"] = definition.precision, definition.scale
    if definition.picklist:
        spec["picklistValues"] = list(definition.picklist)
    if definition.type == "boolean":
        spec["default"] = bool(definition.default_value)
    return spec


class SchemaRegistry:
    """Standard objects plus run-time custom fields; swapped atomically on change.

    Readers take `self.objects` once per request and keep using that mapping,
    so a concurrent field change never shows them half an object.
    """

    def __init__(self) -> None:
        self._standard = standard_objects()
        self._lock = threading.Lock()
        self.objects: dict[str, ObjectDef] = dict(self._standard)
        self._by_lower = {name.lower(): obj for name, obj in self.objects.items()}
        self.version = 0

    def get(self, name: str) -> ObjectDef | None:
        """Case-insensitive object lookup (the REST API accepts `account`)."""
        return self._by_lower.get(name.lower())

    def require(self, name: str) -> ObjectDef:
        obj = self.get(name)
        if obj is None:
            raise ApiError(404, "NOT_FOUND",
                           f"The requested resource does not exist: sObject type '{name}' "
                           "is not supported.")
        return obj

    def by_prefix(self, prefix: str) -> ObjectDef | None:
        for obj in self.objects.values():
            if obj.key_prefix == prefix:
                return obj
        return None

    def set_custom_fields(self, fields: Mapping[str, list[FieldDef]]) -> None:
        """Rebuild every object from its standard definition plus `fields`."""
        with self._lock:
            rebuilt: dict[str, ObjectDef] = {}
            for name, obj in self._standard.items():
                extra = [f for f in fields.get(name, []) if not obj.has_field(f.name)]
                if extra:
                    # Custom fields go before the audit fields, as in real describes.
                    tail_at = next(i for i, f in enumerate(obj.fields)
                                   if f.name == "CreatedDate")
                    owner_at = next((i for i, f in enumerate(obj.fields)
                                     if f.name == "OwnerId"), tail_at)
                    cut = min(tail_at, owner_at)
                    obj = replace(obj, fields=obj.fields[:cut] + tuple(extra) + obj.fields[cut:])
                rebuilt[name] = obj
            self.objects = rebuilt
            self._by_lower = {name.lower(): obj for name, obj in rebuilt.items()}
            self.version += 1

    def is_standard_field(self, sobject: str, name: str) -> bool:
        obj = self._standard.get(sobject)
        return obj is not None and obj.has_field(name)


def child_relationships(objects: Mapping[str, ObjectDef], parent: str) -> list[dict[str, Any]]:
    """The `childRelationships` list of a describe, derived from reference fields."""
    result = []
    for obj in objects.values():
        for definition in obj.fields:
            if parent in definition.reference_to and definition.child_relationship:
                result.append({
                    "cascadeDelete": definition.cascade_delete,
                    "childSObject": obj.name,
                    "deprecatedAndHidden": False,
                    "field": definition.name,
                    "junctionIdListNames": [],
                    "junctionReferenceTo": [],
                    "relationshipName": definition.child_relationship,
                    "restrictedDelete": False,
                })
    return result


def describe_object(objects: Mapping[str, ObjectDef], obj: ObjectDef,
                    version: str) -> dict[str, Any]:
    """The full `sobjects/{T}/describe` document."""
    doc = obj.describe_global_entry(version)
    doc.update({
        "actionOverrides": [],
        "childRelationships": child_relationships(objects, obj.name),
        "compactLayoutable": True,
        "defaultImplementation": None,
        "extendedBy": None,
        "extendsInterfaces": None,
        "fields": [definition.describe() for definition in obj.fields],
        "implementedBy": None,
        "implementsInterfaces": None,
        "listviewable": None,
        "lookupLayoutable": None,
        "namedLayoutInfos": [],
        "networkScopeFieldName": None,
        "recordTypeInfos": [],
        "searchLayoutable": True,
        "sobjectDescribeOption": "FULL",
        "supportedScopes": [{"label": "All records", "name": "everything"}],
    })
    return doc
