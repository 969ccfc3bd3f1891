"""Sugar's filter API in SQL: `filter`, `order_by`, `fields`, and GET's bracket parameters.

A filter is a list of conditions, all of which must hold; a condition is
`{"field": value}` (equals), `{"field": {"$op": value}}`, or `{"$and" | "$or": [...]}`.
Date-time values are compared as instants (any offset), on the indexed columns; other
fields on the record's JSON as Sugar stores them (text). A malformed filter is a 422
`invalid_parameter`, as Sugar answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from connectors.sugarcrm.sandbox.store import COLUMNS, parse_time, stamp

# Date-time fields: stored in UTC, compared as instants, answered in the user's zone.
DATETIME_FIELDS = frozenset({"date_modified", "date_entered", "date_start", "date_end",
                             "date_due", "date_sent"})
_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_COMPARE = {"$equals": "=", "$not_equals": "!=", "$gt": ">", "$gte": ">=", "$lt": "<",
            "$lte": "<="}


class FilterError(ValueError):
    """A filter Sugar would refuse; the message is its `error_message`."""


def column(name: str) -> str:
    if not _FIELD.fullmatch(name):
        raise FilterError(f"Invalid field: {name!r}")
    return name if name in COLUMNS else f"json_extract(body, '$.{name}')"


def _value(field: str, value: Any) -> Any:
    if field in DATETIME_FIELDS:
        try:
            return stamp(parse_time(str(value)))
        except ValueError:
            raise FilterError(f"Invalid date-time for {field}: {value!r}") from None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | str) or value is None:
        return value
    raise FilterError(f"Invalid value for {field}")


def _field_condition(field: str, test: Any, args: list[Any]) -> str:
    target = column(field)
    if not isinstance(test, Mapping):
        args.append(_value(field, test))
        return f"{target} = ?"
    parts = []
    for operator, value in test.items():
        if operator in _COMPARE:
            args.append(_value(field, value))
            parts.append(f"{target} {_COMPARE[operator]} ?")
        elif operator in ("$in", "$not_in"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"{operator} needs a non-empty list")
            args.extend(_value(field, v) for v in value)
            negate = "NOT " if operator == "$not_in" else ""
            parts.append(f"{target} {negate}IN ({', '.join('?' * len(value))})")
        elif operator == "$is_null":
            parts.append(f"({target} IS NULL OR {target} = '')")
        elif operator == "$not_null":
            parts.append(f"({target} IS NOT NULL AND {target} != '')")
        elif operator in ("$starts", "$contains"):
            args.append(f"{'' if operator == '$starts' else '%'}{value}%")
            parts.append(f"{target} LIKE ?")
        else:
            raise FilterError(f"Did not recognize the operator: {operator}")
    if not parts:
        raise FilterError(f"Empty condition on {field}")
    return " AND ".join(parts)


def condition(test: Any, args: list[Any]) -> str:
    """One condition (a dict) as SQL, its parameters appended to `args`."""
    if not isinstance(test, Mapping) or not test:
        raise FilterError("A filter condition must be a non-empty object")
    parts = []
    for key, value in test.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"{key} needs a non-empty list of conditions")
            joined = f" {key[1:].upper()} ".join(f"({condition(v, args)})" for v in value)
            parts.append(f"({joined})")
        else:
            parts.append(_field_condition(str(key), value, args))
    return " AND ".join(parts)


def where(filters: Any, deleted: bool) -> tuple[str, list[Any]]:
    """The WHERE clause of a filter request (`deleted`: include deleted records)."""
    if filters in (None, "", []):
        filters = []
    if not isinstance(filters, list):
        raise FilterError("The filter must be a list of conditions")
    args: list[Any] = []
    parts = [f"({condition(f, args)})" for f in filters]
    if not deleted:
        parts.append("deleted = 0")
    return " AND ".join(parts) or "1 = 1", args


def order(text: Any) -> str:
    """`order_by` ("date_modified:ASC,id:ASC") as SQL; Sugar's default is newest first.
    Ties keep the order records were written in (no id tie-break unless asked)."""
    clauses = []
    for part in str(text or "date_modified:DESC").split(","):
        name, _, direction = part.strip().partition(":")
        direction = (direction or "ASC").upper()
        if direction not in ("ASC", "DESC"):
            raise FilterError(f"Invalid order direction: {direction}")
        clauses.append(f"{column(name)} {direction}")
    return ", ".join([*clauses, "rowid ASC"])


def bracket_params(args: Mapping[str, str]) -> dict[str, Any]:
    """GET's PHP-style parameters (`filter[0][date_modified][$gte]=...`) as nested JSON:
    objects whose keys are all indexes become lists."""
    tree: dict[str, Any] = {}
    for key, value in args.items():
        names = re.findall(r"\[([^\]]*)\]", key)
        head = key.split("[", 1)[0]
        node = tree
        for name in [head, *names][:-1]:
            node = node.setdefault(name, {})
        node[[head, *names][-1]] = value
    return {k: _lists(v) for k, v in tree.items()}


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _lists(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items
