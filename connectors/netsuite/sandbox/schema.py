"""The NetSuite tables the sandbox serves, with their SuiteQL column names and types.

Names follow NetSuite's SuiteQL data model (the "NetSuite2.com" analytics schema):
lower-case table and column names, references as integer internal ids, checkboxes
as 'T'/'F', custom fields prefixed `custentity_`, `custbody_`, `custcol_`, `custitem_`.
The sandbox keeps exactly these columns, so a query naming anything else fails as
NetSuite's does ("Field ... was not found") instead of quietly answering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnKind = Literal["int", "text", "float", "bool", "datetime", "date"]


@dataclass(frozen=True)
class Table:
    name: str
    columns: dict[str, ColumnKind]
    key: str = "id"  # the internal id column (NetSuite's `id`; entityaddress: `nkey`)
    # The record-service type(s) stored in this table and, per type, the fixed column
    # values that say so (transaction: type='Opprtnty').
    record_types: tuple[str, ...] = ()


def _table(table: str, key: str = "id", record_types: tuple[str, ...] = (),
           **columns: ColumnKind) -> Table:
    return Table(table, {key: "int", **columns}, key, record_types)


TABLES: dict[str, Table] = {t.name: t for t in (
    _table("department", name="text"),
    _table("customercategory", name="text"),
    _table("currency", symbol="text", name="text"),
    _table("entitystatus", name="text", probability="float"),
    _table("pricelevel", name="text", isinactive="bool"),
    _table("entityaddress", key="nkey", country="text", state="text", city="text"),
    _table("employee", record_types=("employee",), entityid="text", firstname="text",
           lastname="text", email="text", title="text", department="int", supervisor="int",
           isinactive="bool", issalesrep="bool", datecreated="datetime",
           lastmodifieddate="datetime"),
    _table("customer", record_types=("customer",), entityid="text", companyname="text",
           category="int", custentity_industry="text", custentity_employee_count="text",
           custentity_annual_revenue="text", url="text", salesrep="int", parent="int",
           defaultbillingaddress="int", searchstage="text", isinactive="bool",
           datecreated="datetime", lastmodifieddate="datetime"),
    _table("contact", record_types=("contact",), entityid="text", company="int",
           firstname="text", lastname="text", email="text", title="text", owner="int",
           datecreated="datetime", lastmodifieddate="datetime"),
    _table("item", record_types=("noninventorysaleitem",), itemid="text", displayname="text",
           itemtype="text", custitem_family="text", isinactive="bool", cost="text",
           createddate="datetime", lastmodifieddate="datetime"),
    # No internal id and no lastmodifieddate of its own: a price belongs to its item.
    Table("pricing", {"item": "int", "pricelevel": "int", "currency": "int",
                      "unitprice": "text", "isinactive": "bool"}, key="item"),
    _table("transaction", record_types=("opportunity",), tranid="text", type="text",
           title="text", entity="int", projectedtotal="text", entitystatus="int",
           status="text", probability="text", expectedclosedate="date", employee="int",
           currency="int", custbody_lead_source="text", custbody_opportunity_type="text",
           createddate="datetime", lastmodifieddate="datetime"),
    # Every transaction has a main line (mainline 'T', line 0: the header) besides its
    # item lines, as NetSuite's transactionline does: readers must filter it out.
    Table("transactionline", {"uniquekey": "int", "transaction": "int",
                              "linesequencenumber": "int", "mainline": "bool", "item": "int",
                              "quantity": "text",
                              "rate": "text", "netamount": "text", "price": "int",
                              "custcol_list_price": "text", "custcol_discount": "text",
                              "linecreateddate": "datetime", "linelastmodifieddate": "datetime"},
          key="uniquekey"),
    # Activities: calls, to-dos and meetings, each a record type of its own.
    _table("phonecall", record_types=("phonecall",), title="text", status="text",
           startdate="date", completeddate="datetime", assigned="int", company="int",
           contact="int", transaction="int", custevent_duration_minutes="text",
           createddate="datetime", lastmodifieddate="datetime"),
    _table("task", record_types=("task",), title="text", status="text", duedate="date",
           completeddate="datetime", assigned="int", company="int", contact="int",
           transaction="int", createddate="datetime", lastmodifieddate="datetime"),
    _table("calendarevent", record_types=("calendarevent",), title="text", status="text",
           startdate="datetime", enddate="datetime", organizer="int", company="int",
           transaction="int", createddate="datetime", lastmodifieddate="datetime"),
    Table("deletedrecord", {"recordid": "int", "type": "text", "name": "text",
                            "deleteddate": "datetime", "context": "text"}, key="recordid"),
    Table("dual", {"dummy": "text"}, key="dummy"),
)}

# Record-service types → (table, fixed column values).
RECORD_TYPES: dict[str, tuple[str, dict[str, str]]] = {
    "employee": ("employee", {}),
    "customer": ("customer", {}),
    "contact": ("contact", {}),
    "noninventorysaleitem": ("item", {"itemtype": "NonInvtPart"}),
    "opportunity": ("transaction", {"type": "Opprtnty"}),
    "phonecall": ("phonecall", {}),
    "task": ("task", {}),
    "calendarevent": ("calendarevent", {}),
}

# The column a write moves forward, per table (transaction lines have their own).
MODIFIED_COLUMN = {"transactionline": "linelastmodifieddate"}
CREATED_COLUMN = {"employee": "datecreated", "customer": "datecreated",
                  "contact": "datecreated", "transactionline": "linecreateddate"}


def modified_column(table: str) -> str:
    return MODIFIED_COLUMN.get(table, "lastmodifieddate")


def created_column(table: str) -> str:
    return CREATED_COLUMN.get(table, "createddate")


def ddl() -> str:
    """CREATE TABLE statements for every table (SQLite; identifiers quoted: `transaction`)."""
    affinity = {"int": "INTEGER", "text": "TEXT", "float": "REAL", "bool": "TEXT",
                "datetime": "REAL", "date": "TEXT"}
    statements = []
    for table in TABLES.values():
        cols = ", ".join(
            f'"{name}" {affinity[kind]}' + (" PRIMARY KEY" if name == table.key and table.name
                                            not in ("pricing", "dual", "deletedrecord") else "")
            for name, kind in table.columns.items())
        statements.append(f'CREATE TABLE IF NOT EXISTS "{table.name}" ({cols});')
        if "lastmodifieddate" in table.columns:
            statements.append(f'CREATE INDEX IF NOT EXISTS "{table.name}_lmd" ON "{table.name}" '
                              '("lastmodifieddate", "id");')
    statements.append('CREATE INDEX IF NOT EXISTS "line_txn" ON "transactionline" ("transaction");')
    statements.append('CREATE UNIQUE INDEX IF NOT EXISTS "pricing_key" ON "pricing" '
                      '("item", "pricelevel", "currency");')
    statements.append('CREATE INDEX IF NOT EXISTS "deleted_at" ON "deletedrecord" ("deleteddate");')
    # Each record type counts its ids from 1: a customer and a contact may share one.
    statements.append('CREATE UNIQUE INDEX IF NOT EXISTS "deleted_key" ON "deletedrecord" '
                      '("type", "recordid");')
    return "\n".join(statements)
