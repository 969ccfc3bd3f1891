"""Bulk API 2.0 result pages (CSV) read as the records REST would give (see `bulk.py`).

Kept apart from the job calls because it needs no connection: a helper process parses
large pages with it (`bulk_parse.py`), and tests compare it with REST directly.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from connectors.base import ConnectorError

_NUMBER_TYPES = frozenset({"int", "double", "currency", "percent"})


def _number(text: str) -> int | float | None:
    """As `json.loads` would read the same spelling (REST sends it as a JSON number)."""
    if text == "":
        return None
    digits = text[1:] if text[:1] == "-" else text
    return int(text) if digits.isdigit() else float(text)


def _boolean(text: str) -> bool | str | None:
    if text == "":
        return None
    return {"true": True, "false": False}.get(text, text)  # anything else: mapping says so


def _datetime(text: str) -> str | None:
    if text == "":
        return None
    return text[:-1] + "+0000" if text.endswith("Z") else text


def _text(text: str) -> str | None:
    return text or None


def converter(field_type: str) -> Callable[[str], Any]:
    """CSV text -> the value REST's JSON gives for a field of this describe type."""
    if field_type == "boolean":
        return _boolean
    if field_type in _NUMBER_TYPES:
        return _number
    if field_type == "datetime":
        return _datetime
    return _text


def csv_records(text: str, sobject: str, types: Mapping[str, str], version: str,
                *, delimiter: str = ",") -> Iterator[dict[str, Any]]:
    """One results page (header row first) as REST-shaped records, one at a time (a page
    holds up to 50,000: only its text is kept whole, so memory is flat in the page size)."""
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(rows, None)
    if not header:
        return
    convert = [converter(types.get(name, "string")) for name in header]
    url = f"/services/data/v{version}/sobjects/{sobject}/"
    for row in rows:
        if len(row) != len(header):
            raise ConnectorError(f"Salesforce Bulk page of {sobject}: a row of {len(row)} "
                                 f"fields under a header of {len(header)}")
        record: dict[str, Any] = {"attributes": {"type": sobject, "url": ""}}
        for name, to_value, text_value in zip(header, convert, row, strict=True):
            record[name] = to_value(text_value)
        record["attributes"]["url"] = url + str(record.get("Id") or "")
        yield record
