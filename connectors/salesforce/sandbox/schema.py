"""How the sandbox org describes an sObject: `FieldDef`, `ObjectDef`, the field types, and
the small constructors the object tables (`standard_objects.py`, `activities.py`) use.

Definitions are data, not code: the writer, the SOQL compiler and describe
(`registry.py`) all read the same `FieldDef`s, so what describe promises is what
queries and writes enforce.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Field types the sandbox understands, with their SOAP type for describe.
SOAP_TYPES: dict[str, str] = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "textarea": "xsd:string",
    "picklist": "xsd:string",
    "combobox": "xsd:string",
    "email": "xsd:string",
    "url": "xsd:string",
    "phone": "xsd:string",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "address": "urn:address",
}
STRING_TYPES = frozenset({"string", "textarea", "picklist", "combobox", "email", "url",
                          "phone"})
NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})
# Columns kept outside the JSON document so SQLite can index them.
COLUMN_FIELDS = frozenset({"Id", "SystemModstamp", "IsDeleted"})


@dataclass(frozen=True)
class FieldDef:
    """One sObject field; attribute names follow the describe keys they feed."""

    name: str
    type: str
    label: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    digits: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    calculated: bool = False
    formula: str | None = None
    custom: bool = False
    compound_field_name: str | None = None
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    child_relationship: str | None = None
    cascade_delete: bool = False
    picklist: tuple[str, ...] = ()
    default_value: Any = None
    defaulted_on_create: bool = False
    restricted_picklist: bool = False
    filterable: bool = True
    sortable: bool = True
    name_field: bool = False
    unique: bool = False
    external_id: bool = False
    components: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        """Salesforce's rule: not nillable, createable, no default → must be sent."""
        return not self.nillable and self.createable and not self.defaulted_on_create

    @property
    def is_string(self) -> bool:
        return self.type in STRING_TYPES

    def describe(self) -> dict[str, Any]:
        """The field entry of an sObject describe."""
        is_text = self.type in STRING_TYPES or self.type in ("id", "reference")
        return {
            "aggregatable": self.type not in ("textarea", "address", "boolean"),
            "autoNumber": False,
            "byteLength": self.length * 3 if is_text else 0,
            "calculated": self.calculated,
            "calculatedFormula": self.formula,
            "cascadeDelete": self.cascade_delete,
            "caseSensitive": False,
            "compoundFieldName": self.compound_field_name,
            "controllerName": None,
            "createable": self.createable,
            "custom": self.custom,
            "defaultValue": self.default_value if self.type == "boolean" else None,
            "defaultValueFormula": (
                None if self.default_value is None or self.type == "boolean"
                else repr(self.default_value)
            ),
            "defaultedOnCreate": self.defaulted_on_create,
            "dependentPicklist": False,
            "deprecatedAndHidden": False,
            "digits": self.digits,
            "displayLocationInDecimal": False,
            "encrypted": False,
            "externalId": self.external_id,
            "extraTypeInfo": None,
            "filterable": self.filterable,
            "filteredLookupInfo": None,
            "groupable": self.type not in NUMBER_TYPES and self.type not in ("textarea", "address"),
            "highScaleNumber": False,
            "htmlFormatted": False,
            "idLookup": self.type == "id" or self.unique,
            "inlineHelpText": None,
            "label": self.label,
            "length": self.length,
            "mask": None,
            "maskType": None,
            "name": self.name,
            "nameField": self.name_field,
            "namePointing": len(self.reference_to) > 1,
            "nillable": self.nillable,
            "permissionable": self.nillable and not self.calculated and self.updateable,
            "picklistValues": [
                {
                    "active": True,
                    "defaultValue": value == self.default_value,
                    "label": value,
                    "validFor": None,
                    "value": value,
                }
                for value in self.picklist
            ],
            "polymorphicForeignKey": len(self.reference_to) > 1,
            "precision": self.precision,
            "queryByDistance": False,
            "referenceTargetField": None,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "relationshipOrder": None,
            "restrictedDelete": False,
            "restrictedPicklist": self.restricted_picklist,
            "scale": self.scale,
            "searchPrefilterable": False,
            "soapType": SOAP_TYPES[self.type],
            "sortable": self.sortable,
            "type": self.type,
            "unique": self.unique,
            "updateable": self.updateable,
            "writeRequiresMasterRead": False,
        }


# A derivation hook: (record after the write, record before it or None, context).
DeriveHook = Callable[[dict[str, Any], dict[str, Any] | None, Any], None]


@dataclass(frozen=True)
class ObjectDef:
    """One sObject type and what the API allows on it."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: tuple[FieldDef, ...]
    createable: bool = True
    updateable: bool = True
    deletable: bool = True
    queryable: bool = True
    replicateable: bool = True
    custom: bool = False
    indexed_fields: tuple[str, ...] = ()
    by_lower: Mapping[str, FieldDef] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_lower", {f.name.lower(): f for f in self.fields})

    def field(self, name: str) -> FieldDef | None:
        """Case-insensitive field lookup, as Salesforce does it."""
        return self.by_lower.get(name.lower())

    @property
    def table(self) -> str:
        return f"sobj_{self.name}"

    def has_field(self, name: str) -> bool:
        return name.lower() in self.by_lower

    def urls(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "compactLayouts": f"{base}/describe/compactLayouts",
            "rowTemplate": f"{base}/{{ID}}",
            "approvalLayouts": f"{base}/describe/approvalLayouts",
            "defaultValues": f"{base}/defaultValues?recordTypeId&fields",
            "listviews": f"{base}/listviews",
            "describe": f"{base}/describe",
            "quickActions": f"{base}/quickActions",
            "layouts": f"{base}/describe/layouts",
            "sobject": base,
        }

    def describe_global_entry(self, version: str) -> dict[str, Any]:
        """The entry for this object in `GET sobjects/`."""
        return {
            "activateable": False,
            "associateEntityType": None,
            "associateParentEntity": None,
            "createable": self.createable,
            "custom": self.custom,
            "customSetting": False,
            "deepCloneable": False,
            "deletable": self.deletable,
            "deprecatedAndHidden": False,
            "feedEnabled": False,
            "hasSubtypes": False,
            "isInterface": False,
            "isSubtype": False,
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": self.label_plural,
            "layoutable": True,
            "mergeable": self.name in ("Account", "Contact", "Lead"),
            "mruEnabled": True,
            "name": self.name,
            "queryable": self.queryable,
            "replicateable": self.replicateable,
            "retrieveable": True,
            "searchable": True,
            "triggerable": self.createable,
            "undeletable": self.deletable,
            "updateable": self.updateable,
            "urls": self.urls(version),
        }


# ---------------------------------------------------------------------------
# Field constructors: keep the object tables below readable.


def _id() -> FieldDef:
    return FieldDef(
        "Id", "id", "Record ID", length=18, nillable=False, createable=False,
        updateable=False, defaulted_on_create=True,
    )


def _string(name: str, label: str, length: int = 255, *, required: bool = False,
            name_field: bool = False, type_: str = "string", filterable: bool = True,
            createable: bool = True, updateable: bool = True, unique: bool = False,
            custom: bool = False) -> FieldDef:
    return FieldDef(
        name, type_, label, length=length, nillable=not required, name_field=name_field,
        filterable=filterable, sortable=filterable, createable=createable,
        updateable=updateable, unique=unique, custom=custom,
    )


def _derived_name(length: int = 121) -> FieldDef:
    return FieldDef(
        "Name", "string", "Full Name", length=length, nillable=False, createable=False,
        updateable=False, name_field=True, defaulted_on_create=True,
    )


def _picklist(name: str, label: str, values: Iterable[str], *, required: bool = False,
              default: str | None = None, restricted: bool = False,
              createable: bool = True, updateable: bool = True) -> FieldDef:
    return FieldDef(
        name, "picklist", label, length=255, nillable=not required, picklist=tuple(values),
        default_value=default, defaulted_on_create=default is not None,
        restricted_picklist=restricted, createable=createable, updateable=updateable,
    )


def _bool(name: str, label: str, *, default: bool = False, createable: bool = True,
          updateable: bool = True) -> FieldDef:
    return FieldDef(
        name, "boolean", label, nillable=False, default_value=default,
        defaulted_on_create=True, createable=createable, updateable=updateable,
    )


def _number(name: str, type_: str, label: str, precision: int, scale: int, *,
            required: bool = False, createable: bool = True, updateable: bool = True,
            custom: bool = False, formula: str | None = None) -> FieldDef:
    calculated = formula is not None
    return FieldDef(
        name, type_, label, precision=0 if type_ == "int" else precision,
        scale=0 if type_ == "int" else scale, digits=precision if type_ == "int" else 0,
        nillable=not required, createable=createable and not calculated,
        updateable=updateable and not calculated, custom=custom, calculated=calculated,
        formula=formula,
    )


def _date(name: str, label: str, *, required: bool = False, createable: bool = True,
          updateable: bool = True) -> FieldDef:
    return FieldDef(name, "date", label, nillable=not required, createable=createable,
                    updateable=updateable)


def _ref(name: str, label: str, to: str, relationship: str, *, child: str | None = None,
         required: bool = False, cascade: bool = False, createable: bool = True,
         updateable: bool = True, defaulted: bool = False) -> FieldDef:
    return FieldDef(
        name, "reference", label, length=18, nillable=not required, reference_to=(to,),
        relationship_name=relationship, child_relationship=child, cascade_delete=cascade,
        createable=createable, updateable=updateable, defaulted_on_create=defaulted,
    )


def _system_fields(*, owner: bool, deletable: bool = True) -> tuple[list[FieldDef], list[FieldDef]]:
    """(head, tail): Id/IsDeleted first, audit fields last, as describe orders them."""
    head = [_id()]
    if deletable:
        head.append(_bool("IsDeleted", "Deleted", createable=False, updateable=False))
    tail: list[FieldDef] = []
    if owner:
        tail.append(_ref("OwnerId", "Owner ID", "User", "Owner", required=True, defaulted=True))
    tail += [
        FieldDef("CreatedDate", "datetime", "Created Date", nillable=False, createable=False,
                 updateable=False, defaulted_on_create=True),
        _ref("CreatedById", "Created By ID", "User", "CreatedBy", required=True,
             createable=False, updateable=False, defaulted=True),
        FieldDef("LastModifiedDate", "datetime", "Last Modified Date", nillable=False,
                 createable=False, updateable=False, defaulted_on_create=True),
        _ref("LastModifiedById", "Last Modified By ID", "User", "LastModifiedBy",
             required=True, createable=False, updateable=False, defaulted=True),
        FieldDef("SystemModstamp", "datetime", "System Modstamp", nillable=False,
                 createable=False, updateable=False, defaulted_on_create=True),
    ]
    return head, tail


def _obj(name: str, label: str, plural: str, prefix: str, body: list[FieldDef], *,
         owner: bool, deletable: bool = True, has_is_deleted: bool = True,
         **kwargs: Any) -> ObjectDef:
    head, tail = _system_fields(owner=owner, deletable=has_is_deleted)
    return ObjectDef(name, label, plural, prefix, tuple(head + body + tail),
                     deletable=deletable, **kwargs)
