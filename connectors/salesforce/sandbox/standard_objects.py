"""The org's standard objects (Account … OpportunityLineItem, User, Organization) and the
picklists the generator draws from: the data the sandbox's schema starts from."""

from __future__ import annotations

from typing import Any

from .schema import (
    FieldDef,
    ObjectDef,
    _bool,
    _date,
    _derived_name,
    _number,
    _obj,
    _picklist,
    _ref,
    _string,
)

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
