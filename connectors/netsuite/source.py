"""SuiteQL as the adapter writes it: a `Source` per table read, and NetSuite's date-time text.

SuiteQL shows a bare date-time as the account's *date* only ("3/9/2026"), so every
date-time is selected through `TO_CHAR(..., 'YYYY-MM-DD HH24:MI:SS')` and read in the
account's time zone; literals go back as `TO_TIMESTAMP` of the same wall-clock text.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

STAMP_FORMAT = "YYYY-MM-DD HH24:MI:SS"
DATE_FORMAT = "YYYY-MM-DD"
MODIFIED = "lastmodifieddate"  # the output name of every source's modification stamp


def stamp(expression: str) -> str:
    return f"TO_CHAR({expression}, '{STAMP_FORMAT}')"


def day(expression: str) -> str:
    return f"TO_CHAR({expression}, '{DATE_FORMAT}')"


@dataclass(frozen=True)
class Source:
    """How one common object is read: FROM, joins, the SELECT list and its meaning."""

    table: str  # "customer c"
    id_column: str  # "c.id": unique, what the keyset pages on
    modified_column: str | None  # "c.lastmodifieddate"; None: re-read whole every sync
    select: Mapping[str, str]  # output name → SuiteQL expression
    fields: Mapping[str, str]  # common column → output name (derived columns aside)
    joins: str = ""
    where: str = ""  # the filter that makes the table this object ("t.type = 'Opprtnty'")
    # DeletedRecord types that mean this object; () = NetSuite logs no deletes for it.
    deleted_types: tuple[str, ...] = ()
    negated: Mapping[str, str] = field(default_factory=dict)  # common bool ← NOT 'T'/'F'

    def query(self, condition: str = "", order: str = "", omit: Collection[str] = ()) -> str:
        items = ", ".join(f"{expr} AS {name}" for name, expr in self.select.items()
                          if name not in omit)
        where = " AND ".join(f"({c})" for c in (self.where, condition) if c)
        return (f"SELECT {items} FROM {self.table} {self.joins}".rstrip()
                + (f" WHERE {where}" if where else "") + (f" ORDER BY {order}" if order else ""))


def parse_stamp(value: str, tz: ZoneInfo) -> datetime:
    """`2026-03-09 00:45:46` in the account's time zone → aware UTC (the earlier instant of
    an hour that repeats when clocks go back: a cursor may read again, never skip)."""
    local = datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")
    return local.replace(tzinfo=tz).astimezone(UTC)


def local_stamp(moment: datetime, tz: ZoneInfo) -> str:
    """An instant as the account's wall-clock text, for TO_TIMESTAMP literals."""
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
