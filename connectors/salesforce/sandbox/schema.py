"""sObject definitions for the sandbox org and the describe documents built from them.

Definitions are data, not code: the writer, the SOQL compiler and describe
all read the same `FieldDef`s, so what describe promises is what queries and
writes enforce.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ApiError

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
CUSTOM_FIELD_TYPES = frozenset(
    {"string", "double", "currency", "percent", "int", "boolean", "date", "datetime",
     "picklist", "textarea"}
)
_CUSTOM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*__c$")


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


# ---------------------------------------------------------------------------
# Picklists shared with the generator.

INDUSTRIES = (
    "Agriculture", "Apparel", "Banking", "Biotechnology", "Chemicals", "Communications",
    "Construction", "Consulting", "Education", "Electronics", "Energy", "Engineering",
    "Entertainment", "Finance", "Food & Beverage", "Government", "Healthcare", "Hospitality",
    "Insurance", "Machinery", "Manufacturing", "Media", "Not For Profit", "Retail",
    "Shipping", "Technology", "Telecommunications", "Transportation", "Utilities", "Other",
)
ACCOUNT_TYPES = (
    "Prospect", "Customer - Direct", "Customer - Channel", "Channel Partner / Reseller",
    "Installation Partner", "Technology Partner", "Other",
)
LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
OPPORTUNITY_TYPES = (
    "New Business", "Existing Customer - Upgrade", "Existing Customer - Replacement",
    "Existing Customer - Downgrade",
)
LEAD_STATUSES = (
    "Open - Not Contacted", "Working - Contacted", "Closed - Converted",
    "Closed - Not Converted",
)
# Stage → (default probability, IsClosed, IsWon, ForecastCategory)
STAGES: dict[str, tuple[int, bool, bool, str]] = {
    "Prospecting": (10, False, False, "Pipeline"),
    "Qualification": (10, False, False, "Pipeline"),
    "Needs Analysis": (20, False, False, "Pipeline"),
    "Value Proposition": (50, False, False, "Pipeline"),
    "Id. Decision Makers": (60, False, False, "Pipeline"),
    "Perception Analysis": (70, False, False, "Pipeline"),
    "Proposal/Price Quote": (75, False, False, "BestCase"),
    "Negotiation/Review": (90, False, False, "Commit"),
    "Closed Won": (100, True, True, "Closed"),
    "Closed Lost": (0, True, False, "Omitted"),
}
FORECAST_CATEGORIES = ("Omitted", "Pipeline", "BestCase", "Commit", "Closed")
GEOCODE_ACCURACY = ("Address", "NearAddress", "Block", "Street", "ExtendedZip", "Zip",
                    "Neighborhood", "City", "County", "State", "Unknown")
PRODUCT_FAMILIES = ("Platform", "Analytics", "Integrations", "Professional Services",
                    "Support", "Training")

BILLING_PARTS = ("BillingStreet", "BillingCity", "BillingState", "BillingPostalCode",
                 "BillingCountry", "BillingLatitude", "BillingLongitude",
                 "BillingGeocodeAccuracy")
# compound field → (component field, key inside the address JSON)
ADDRESS_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "BillingAddress": (
        ("BillingCity", "city"), ("BillingCountry", "country"),
        ("BillingGeocodeAccuracy", "geocodeAccuracy"), ("BillingLatitude", "latitude"),
        ("BillingLongitude", "longitude"), ("BillingPostalCode", "postalCode"),
        ("BillingState", "state"), ("BillingStreet", "street"),
    ),
}


def _billing_fields() -> list[FieldDef]:
    def part(name: str, label: str, type_: str, length: int = 0, **kw: Any) -> FieldDef:
        return FieldDef(name, type_, label, length=length, compound_field_name="BillingAddress",
                        **kw)

    return [
        part("BillingStreet", "Billing Street", "textarea", 255),
        part("BillingCity", "Billing City", "string", 40),
        part("BillingState", "Billing State/Province", "string", 80),
        part("BillingPostalCode", "Billing Zip/Postal Code", "string", 20),
        part("BillingCountry", "Billing Country", "string", 80),
        part("BillingLatitude", "Billing Latitude", "double", precision=18, scale=15),
        part("BillingLongitude", "Billing Longitude", "double", precision=18, scale=15),
        part("BillingGeocodeAccuracy", "Billing Geocode Accuracy", "picklist", 40,
             picklist=GEOCODE_ACCURACY),
        FieldDef("BillingAddress", "address", "Billing Address", createable=False,
                 updateable=False, filterable=False, sortable=False,
                 components=tuple(part for part, _ in ADDRESS_KEYS["BillingAddress"])),
    ]


def standard_objects() -> dict[str, ObjectDef]:
    """The org's standard objects, keyed by API name."""
    account = _obj("Account", "Account", "Accounts", "001", [
        _string("Name", "Account Name", 255, required=True, name_field=True),
        _picklist("Type", "Account Type", ACCOUNT_TYPES),
        _ref("ParentId", "Parent Account ID", "Account", "Parent", child="ChildAccounts"),
        *_billing_fields(),
        _string("Phone", "Account Phone", 40, type_="phone"),
        _string("Website", "Website", 255, type_="url"),
        _picklist("Industry", "Industry", INDUSTRIES),
        _number("AnnualRevenue", "currency", "Annual Revenue", 18, 0),
        _number("NumberOfEmployees", "int", "Employees", 8, 0),
        _string("Description", "Account Description", 32000, type_="textarea",
                filterable=False),
        _number("Revenue_Per_Employee__c", "currency", "Revenue per Employee", 18, 2,
                custom=True, formula="IF(NumberOfEmployees > 0, AnnualRevenue / "
                                     "NumberOfEmployees, null)"),
    ], owner=True, indexed_fields=("ParentId",))

    contact = _obj("Contact", "Contact", "Contacts", "003", [
        _ref("AccountId", "Account ID", "Account", "Account", child="Contacts", cascade=True),
        _string("LastName", "Last Name", 80, required=True),
        _string("FirstName", "First Name", 40),
        _derived_name(),
        _string("Title", "Title", 128),
        _string("Department", "Department", 80),
        _string("Email", "Email", 80, type_="email"),
        _string("Phone", "Business Phone", 40, type_="phone"),
        _picklist("LeadSource", "Lead Source", LEAD_SOURCES),
    ], owner=True, indexed_fields=("AccountId",))

    lead = _obj("Lead", "Lead", "Leads", "00Q", [
        _string("LastName", "Last Name", 80, required=True),
        _string("FirstName", "First Name", 40),
        _derived_name(),
        _string("Title", "Title", 128),
        _string("Company", "Company", 255, required=True),
        _string("Email", "Email", 80, type_="email"),
        _string("Phone", "Phone", 40, type_="phone"),
        _picklist("Status", "Status", LEAD_STATUSES, required=True,
                  default="Open - Not Contacted"),
        _picklist("LeadSource", "Lead Source", LEAD_SOURCES),
        _picklist("Industry", "Industry", INDUSTRIES),
        _picklist("Rating", "Rating", ("Hot", "Warm", "Cold")),
        _number("AnnualRevenue", "currency", "Annual Revenue", 18, 0),
        _number("NumberOfEmployees", "int", "Employees", 8, 0),
        _string("Country", "Country", 80),
        _bool("IsConverted", "Converted", createable=True, updateable=False),
        _date("ConvertedDate", "Converted Date", createable=False, updateable=False),
        _ref("ConvertedAccountId", "Converted Account ID", "Account", "ConvertedAccount",
             createable=False, updateable=False),
        _ref("ConvertedContactId", "Converted Contact ID", "Contact", "ConvertedContact",
             createable=False, updateable=False),
        _ref("ConvertedOpportunityId", "Converted Opportunity ID", "Opportunity",
             "ConvertedOpportunity", createable=False, updateable=False),
    ], owner=True)

    opportunity = _obj("Opportunity", "Opportunity", "Opportunities", "006", [
        _ref("AccountId", "Account ID", "Account", "Account", child="Opportunities",
             cascade=True),
        _string("Name", "Name", 120, required=True, name_field=True),
        _string("Description", "Description", 32000, type_="textarea", filterable=False),
        _picklist("StageName", "Stage", STAGES, required=True, restricted=True),
        _number("Amount", "currency", "Amount", 18, 2),
        _number("Probability", "percent", "Probability (%)", 3, 0),
        _number("ExpectedRevenue", "currency", "Expected Amount", 18, 2, createable=False,
                updateable=False),
        _date("CloseDate", "Close Date", required=True),
        _picklist("Type", "Opportunity Type", OPPORTUNITY_TYPES),
        _string("NextStep", "Next Step", 255),
        _picklist("LeadSource", "Lead Source", LEAD_SOURCES),
        _bool("IsClosed", "Closed", createable=False, updateable=False),
        _bool("IsWon", "Won", createable=False, updateable=False),
        _picklist("ForecastCategory", "Forecast Category", FORECAST_CATEGORIES,
                  createable=False, updateable=False),
        _bool("HasOpportunityLineItem", "Has Line Item", createable=False, updateable=False),
        _ref("Pricebook2Id", "Price Book ID", "Pricebook2", "Pricebook2",
             child="Opportunities"),
    ], owner=True, indexed_fields=("AccountId",))

    line_item = _obj("OpportunityLineItem", "Opportunity Product", "Opportunity Product",
                     "00k", [
        _ref("OpportunityId", "Opportunity ID", "Opportunity", "Opportunity",
             child="OpportunityLineItems", required=True, cascade=True, updateable=False),
        _ref("PricebookEntryId", "Price Book Entry ID", "PricebookEntry", "PricebookEntry",
             child="OpportunityLineItems", updateable=False),
        _ref("Product2Id", "Product ID", "Product2", "Product2", updateable=False),
        _number("Quantity", "double", "Quantity", 12, 2, required=True),
        _number("UnitPrice", "currency", "Sales Price", 18, 2),
        _number("ListPrice", "currency", "List Price", 18, 2, createable=False,
                updateable=False),
        _number("Discount", "percent", "Discount", 5, 2),
        _number("TotalPrice", "currency", "Total Price", 18, 2, createable=False,
                updateable=False),
        _date("ServiceDate", "Date"),
        _string("Description", "Line Description", 255),
    ], owner=False, indexed_fields=("OpportunityId",))

    product = _obj("Product2", "Product", "Products", "01t", [
        _string("Name", "Product Name", 255, required=True, name_field=True),
        _string("ProductCode", "Product Code", 255),
        _string("Description", "Product Description", 4000, type_="textarea"),
        _bool("IsActive", "Active"),
        _picklist("Family", "Product Family", PRODUCT_FAMILIES),
        _number("Unit_Cost__c", "currency", "Unit Cost", 16, 2, custom=True),
    ], owner=False)

    pricebook = _obj("Pricebook2", "Price Book", "Price Books", "01s", [
        _string("Name", "Price Book Name", 255, required=True, name_field=True),
        _bool("IsActive", "Active"),
        _bool("IsStandard", "Is Standard Price Book", createable=False, updateable=False),
        _string("Description", "Description", 255),
    ], owner=False)

    entry = _obj("PricebookEntry", "Price Book Entry", "Price Book Entries", "01u", [
        FieldDef("Name", "string", "Product Name", length=255, createable=False,
                 updateable=False, name_field=True),
        _ref("Pricebook2Id", "Price Book ID", "Pricebook2", "Pricebook2",
             child="PricebookEntries", required=True, updateable=False),
        _ref("Product2Id", "Product ID", "Product2", "Product2", child="PricebookEntries",
             required=True, updateable=False),
        _number("UnitPrice", "currency", "List Price", 18, 2, required=True),
        _bool("IsActive", "Active"),
        _bool("UseStandardPrice", "Use Standard Price"),
        _string("ProductCode", "Product Code", 255, createable=False, updateable=False),
    ], owner=False, indexed_fields=("Product2Id",))

    user = _obj("User", "User", "Users", "005", [
        _string("Username", "Username", 80, required=True, unique=True),
        _string("LastName", "Last Name", 80, required=True),
        _string("FirstName", "First Name", 40),
        _derived_name(),
        _string("Alias", "Alias", 8),
        _string("Email", "Email", 128, type_="email"),
        _string("Title", "Title", 80),
        _string("Department", "Department", 80),
        _bool("IsActive", "Active", default=True),
        _ref("ManagerId", "Manager ID", "User", "Manager", child="ManagedUsers"),
        _picklist("UserType", "User Type", ("Standard",), createable=False, updateable=False),
        # Required on insert (checked by the writer, so users seeded before they existed
        # stay updatable): what Salesforce asks of every new user.
        _string("TimeZoneSidKey", "Time Zone", 40),
        _string("LocaleSidKey", "Locale", 40),
        _string("EmailEncodingKey", "Email Encoding", 40),
        _string("LanguageLocaleKey", "Language", 40),
        _string("ProfileId", "Profile ID", 18),
    ], owner=False, has_is_deleted=False, deletable=False)

    organization = _obj("Organization", "Organization", "Organizations", "00D", [
        _string("Name", "Name", 80, name_field=True, createable=False, updateable=False),
        _bool("IsSandbox", "Is Sandbox", createable=False, updateable=False),
        _picklist("OrganizationType", "Edition", ("Enterprise Edition",), createable=False,
                  updateable=False),
        _string("InstanceName", "Instance Name", 5, createable=False, updateable=False),
        _string("DefaultLocaleSidKey", "Locale", 40, createable=False, updateable=False),
        _string("TimeZoneSidKey", "Default Time Zone", 40, createable=False, updateable=False),
    ], owner=False, has_is_deleted=False, deletable=False, createable=False,
        updateable=False, replicateable=False)

    from .activities import activity_objects

    objects = [account, contact, lead, opportunity, line_item, product, pricebook, entry,
               user, organization, *activity_objects()]
    return {obj.name: obj for obj in objects}


# ---------------------------------------------------------------------------
# Custom fields and the live registry.


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
