"""The record service's bodies in and out: REST field names to SuiteQL columns and back.

NetSuite's REST record API names fields in camelCase (`companyName`), references as
`{"id": "12"}`, checkboxes as JSON booleans and sublists as `{"items": [...]}`;
SuiteQL reads the same fields lower-cased, with 'T'/'F'. Values a field cannot hold
are refused with NetSuite's error, never stored half-converted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from .schema import TABLES, modified_column
from .store import AccountStore

READ_ONLY = {"id", "mainline", "lastmodifieddate", "datecreated", "createddate",
             "linelastmodifieddate", "linecreateddate", "uniquekey"}
# An opportunity's status follows its entity status (server._values); not written directly.
READ_ONLY_IN = {"transaction": {"status", "type"}, "transactionline": {"transaction"}}
# REST names that differ from the SuiteQL column, per table.
ALIASES = {"transactionline": {"amount": "netamount", "line": "linesequencenumber"}}


class RecordError(ValueError):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def columns_of(table: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A REST body as column values of `table`, or RecordError."""
    spec = TABLES[table]
    out: dict[str, Any] = {}
    for name, value in body.items():
        column = ALIASES.get(table, {}).get(name.lower(), name.lower())
        if column == "links" or (table == "transaction" and column == "item"):
            continue  # the transaction's `item` is its lines' sublist (write_lines)
        if (column not in spec.columns or column in READ_ONLY
                or column in READ_ONLY_IN.get(table, ())):
            raise RecordError(400, "INVALID_FIELD" if column not in spec.columns
                              else "READ_ONLY_FIELD",
                              f"Invalid field '{name}' for record '{table}'.")
        kind = spec.columns[column]
        if value is None:
            out[column] = None
        elif kind == "int":
            ref = value.get("id") if isinstance(value, Mapping) else value
            try:
                out[column] = int(str(ref))
            except ValueError:
                raise RecordError(400, "INVALID_REFERENCE",
                                  f"Invalid reference '{ref}' for field '{name}'.") from None
        elif kind == "bool":
            if not isinstance(value, bool):
                raise RecordError(400, "INVALID_FIELD_VALUE",
                                  f"Field '{name}' takes true or false.")
            out[column] = "T" if value else "F"
        elif kind == "datetime":
            try:
                moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                moment = None
            if moment is None or moment.tzinfo is None:
                raise RecordError(400, "INVALID_FIELD_VALUE",
                                  f"Invalid date-time value '{value}' for field '{name}': "
                                  "use ISO 8601 with an offset.")
            out[column] = float(int(moment.timestamp()))
        elif kind == "date":
            try:
                out[column] = date.fromisoformat(str(value)).isoformat()
            except ValueError:
                raise RecordError(400, "INVALID_FIELD_VALUE",
                                  f"Invalid date value '{value}' for field '{name}'.") from None
        elif isinstance(value, bool | Mapping | list):
            raise RecordError(400, "INVALID_FIELD_VALUE", f"Invalid value for field '{name}'.")
        else:
            out[column] = str(value)
    return out


def write_lines(store: AccountStore, transaction: int, lines: list[Mapping[str, Any]],
                *, replace: bool) -> None:
    """Apply an `item` sublist: lines naming `line` change, others are added; with
    `replace`, lines not named go (no DeletedRecord: NetSuite logs no line deletes)."""
    existing = {int(r[0]): int(r[1]) for r in store.fetchall(
        'SELECT linesequencenumber, uniquekey FROM "transactionline" WHERE "transaction" = ? '
        """AND "mainline" = 'F'""", (transaction,))}
    kept: set[int] = set()
    now = store.write_epoch()
    for line in lines:
        values = columns_of("transactionline", line)
        number = line.get("line")
        if number is not None and int(number) in existing:
            kept.add(int(number))
            store.update("transactionline", existing[int(number)], values)
            continue
        sequence = max([*existing, *kept, 0]) + 1
        kept.add(sequence)
        existing[sequence] = store.insert("transactionline", {
            **values, "transaction": transaction, "linesequencenumber": sequence,
            "mainline": "F"}, stamp=now)
    if replace:
        for number, key in existing.items():
            if number not in kept:
                store.execute('DELETE FROM "transactionline" WHERE "uniquekey" = ?', (key,))


def add_main_line(store: AccountStore, transaction: int, stamp: float | None = None) -> None:
    """The header line every NetSuite transaction has (line 0, mainline 'T', no item)."""
    store.insert("transactionline", {"transaction": transaction, "linesequencenumber": 0,
                                     "mainline": "T"}, stamp=stamp)


def record_body(store: AccountStore, table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row as the record service's GET shows it."""
    spec = TABLES[table]
    out: dict[str, Any] = {"links": []}
    for column, value in row.items():
        if value is None:
            continue
        kind = spec.columns[column]
        if kind == "int" and column != spec.key:
            out[column] = {"id": str(value)}
        elif kind == "bool":
            out[column] = value == "T"
        elif kind == "datetime" and isinstance(value, int | float):
            out[column] = store.to_iso(float(value))
        else:
            out[column] = str(value) if column == spec.key else value
    return out


def touch(store: AccountStore, table: str, key: int) -> None:
    store.update(table, key, {}, touch=modified_column(table) in TABLES[table].columns)
