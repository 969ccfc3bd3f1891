"""Compiling a parsed SOQL `Query` (`soql.py`) to SQLite SQL over the store's tables.

Values are always bound as parameters; filters, order and limits run inside SQLite so
large tables never reach Python. Relative date literals (`LAST_N_DAYS:7`) become UTC
day ranges here, and filter values must have the field's type (a quoted date on a date
field is an error, as in the real API).
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from .ids import normalize_id
from .schema import NUMBER_TYPES, STRING_TYPES, FieldDef, ObjectDef
from .soql import (
    BoolOp,
    Comparison,
    FieldRef,
    InList,
    Like,
    Literal,
    Not,
    Query,
    malformed,
    parse,
)
from .values import format_date, format_datetime, format_datetime_precise

# ---------------------------------------------------------------------------
# Relative date literals


def date_range(keyword: str, n: int, today: date) -> tuple[date, date]:
    """The half-open day range [start, end) a relative date literal denotes (UTC days)."""
    one = timedelta(days=1)
    if keyword == "TODAY":
        return today, today + one
    if keyword == "YESTERDAY":
        return today - one, today
    if keyword == "TOMORROW":
        return today + one, today + 2 * one
    if keyword in ("LAST_N_DAYS", "LAST_90_DAYS"):
        days = 90 if keyword == "LAST_90_DAYS" else n
        return today - days * one, today + one
    if keyword in ("NEXT_N_DAYS", "NEXT_90_DAYS"):
        days = 90 if keyword == "NEXT_90_DAYS" else n
        return today + one, today + (days + 1) * one
    if keyword == "N_DAYS_AGO":
        return today - n * one, today - (n - 1) * one
    if keyword.endswith("_WEEK"):
        sunday = today - timedelta(days=(today.weekday() + 1) % 7)
        shift = {"LAST_WEEK": -7, "THIS_WEEK": 0, "NEXT_WEEK": 7}[keyword]
        start = sunday + timedelta(days=shift)
        return start, start + 7 * one
    if keyword.endswith("_MONTH"):
        shift = {"LAST_MONTH": -1, "THIS_MONTH": 0, "NEXT_MONTH": 1}[keyword]
        month_index = today.year * 12 + today.month - 1 + shift
        year, month = divmod(month_index, 12)
        start = date(year, month + 1, 1)
        days = calendar.monthrange(year, month + 1)[1]
        return start, start + days * one
    if keyword.endswith("_YEAR"):
        shift = {"LAST_YEAR": -1, "THIS_YEAR": 0, "NEXT_YEAR": 1}[keyword]
        return date(today.year + shift, 1, 1), date(today.year + shift + 1, 1, 1)
    raise ValueError(keyword)


# ---------------------------------------------------------------------------
# Compilation


@dataclass
class CompiledQuery:
    """SQL fragments for one query; the engine adds deleted-row filtering and paging."""

    obj: ObjectDef
    count_only: bool
    fields: list[FieldDef]
    where: str
    params: list[Any]
    order_by: str
    limit: int | None
    offset: int | None


def field_sql(definition: FieldDef) -> str:
    """SQL for a field's stored value (real columns for the indexed system fields).

    The JSON path expression is spelled exactly like the expression indexes in
    the store so that SQLite can use them.
    """
    if definition.name in ("Id", "SystemModstamp", "IsDeleted"):
        return definition.name
    return f"json_extract(data, '$.{definition.name}')"


_NOT_NULL_COLUMNS = frozenset({"Id", "SystemModstamp", "IsDeleted"})


class _Compiler:
    def __init__(self, text: str, query: Query, obj: ObjectDef, now: datetime) -> None:
        self.text = text
        self.query = query
        self.obj = obj
        self.today = now.astimezone(UTC).date()
        self.params: list[Any] = []

    def resolve(self, ref: FieldRef) -> FieldDef:
        if len(ref.path) > 1:
            head = ref.path[0]
            if head.lower() == self.obj.name.lower() and len(ref.path) == 2:
                ref = FieldRef(ref.path[1:], ref.pos)
            else:
                raise malformed(
                    self.text, ref.pos,
                    f"Didn't understand relationship '{head}' in field path. The sandbox does "
                    "not support relationship fields; query the related object separately.",
                    "INVALID_FIELD")
        definition = self.obj.field(ref.path[0])
        if definition is None:
            raise malformed(
                self.text, ref.pos,
                f"No such column '{ref.path[0]}' on entity '{self.obj.name}'. If you are "
                "attempting to use a custom field, be sure to append the '__c' after the custom "
                "field name. Please reference your WSDL or the describe call for the "
                "appropriate names.", "INVALID_FIELD")
        return definition

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    # -- conditions ----------------------------------------------------------

    def condition(self, node: Any) -> str:
        if isinstance(node, BoolOp):
            return "(" + f" {node.op} ".join(self.condition(i) for i in node.items) + ")"
        if isinstance(node, Not):
            return f"(NOT {self.condition(node.item)})"
        if isinstance(node, Comparison):
            return self.comparison(node)
        if isinstance(node, InList):
            return self.in_list(node)
        if isinstance(node, Like):
            return self.like(node)
        raise TypeError(node)

    def filterable(self, ref: FieldRef) -> FieldDef:
        definition = self.resolve(ref)
        if not definition.filterable:
            raise malformed(self.text, ref.pos,
                            f"field '{definition.name}' can not be filtered in a query call",
                            "INVALID_FIELD")
        return definition

    def coerce(self, definition: FieldDef, literal: Literal) -> Any:
        """Check a literal against the field type; returns the value to bind."""
        kind, type_ = literal.kind, definition.type
        if kind == "null":
            return None
        wanted: str
        if type_ in ("id", "reference"):
            if kind == "string":
                normalized = normalize_id(literal.value)
                if normalized is None:
                    raise malformed(self.text, literal.pos, f"invalid ID field: {literal.value}",
                                    "INVALID_QUERY_FILTER_OPERATOR")
                return normalized
            wanted = "id"
        elif type_ in STRING_TYPES:
            if kind == "string":
                return literal.value
            wanted = "string"
        elif type_ == "boolean":
            if kind == "boolean":
                return 1 if literal.value else 0
            wanted = "boolean"
        elif type_ in NUMBER_TYPES:
            if kind == "number":
                return literal.value
            wanted = "double" if type_ != "int" else "int"
        elif type_ == "date":
            if kind == "date":
                return format_date(literal.value)
            if kind == "range":
                return literal.value
            wanted = "date"
        elif type_ == "datetime":
            if kind == "datetime":
                return format_datetime_precise(literal.value)
            if kind == "range":
                return literal.value
            wanted = "dateTime"
        else:
            wanted = type_
        quoted = "should be enclosed in quotes" if wanted in ("string", "id") else (
            "should not be enclosed in quotes")
        raise malformed(
            self.text, literal.pos,
            f"value of filter criterion for field '{definition.name}' must be of type "
            f"{wanted} and {quoted}", "INVALID_FIELD")

    def expr(self, definition: FieldDef) -> str:
        sql = field_sql(definition)
        if definition.is_string:
            sql = f"({sql} COLLATE NOCASE)"
        return sql

    def guard(self, definition: FieldDef, sql: str, when_null: int) -> str:
        """Make a predicate two-valued: SOQL has no UNKNOWN, a null simply matches or not."""
        if definition.name in _NOT_NULL_COLUMNS:
            return sql
        return f"IFNULL({sql}, {when_null})"

    def comparison(self, node: Comparison) -> str:
        definition = self.filterable(node.field)
        value = self.coerce(definition, node.value)
        column = self.expr(definition)
        op = node.op
        if node.value.kind == "null":
            if op == "=":
                return f"({field_sql(definition)} IS NULL)"
            if op == "!=":
                return f"({field_sql(definition)} IS NOT NULL)"
            raise malformed(self.text, node.value.pos,
                            "null can only be compared with = or !=")
        if node.value.kind == "range":
            return self.range_comparison(definition, op, value)
        if op == "!=":
            return self.guard(definition, f"{column} != {self.bind(value)}", 1)
        return self.guard(definition, f"{column} {op} {self.bind(value)}", 0)

    def range_comparison(self, definition: FieldDef, op: str, value: tuple[str, int]) -> str:
        start, end = date_range(value[0], value[1], self.today)
        if definition.type == "datetime":
            low = format_datetime(datetime.combine(start, time(), UTC))
            high = format_datetime(datetime.combine(end, time(), UTC))
        else:
            low, high = format_date(start), format_date(end)
        column = field_sql(definition)
        if op in ("=", "!="):
            inside = self.guard(
                definition, f"({column} >= {self.bind(low)} AND {column} < {self.bind(high)})", 0
            )
            return inside if op == "=" else f"(NOT {inside})"
        bound, sql_op = {
            "<": (low, "<"), "<=": (high, "<"), ">": (high, ">="), ">=": (low, ">="),
        }[op]
        return self.guard(definition, f"{column} {sql_op} {self.bind(bound)}", 0)

    def in_list(self, node: InList) -> str:
        definition = self.filterable(node.field)
        values = []
        for literal in node.values:
            if literal.kind == "range":
                raise malformed(self.text, literal.pos,
                                "relative date literals are not allowed in IN lists")
            values.append(self.coerce(definition, literal))
        non_null = [v for v in values if v is not None]
        has_null = len(non_null) != len(values)
        column = self.expr(definition)
        marks = ", ".join(self.bind(v) for v in non_null)
        if node.negate:
            sql = self.guard(definition, f"{column} NOT IN ({marks})", 1) if non_null else "1"
            if has_null:
                sql = f"({sql} AND {field_sql(definition)} IS NOT NULL)"
            return sql
        sql = self.guard(definition, f"{column} IN ({marks})", 0) if non_null else "0"
        if has_null:
            sql = f"({sql} OR {field_sql(definition)} IS NULL)"
        return sql

    def like(self, node: Like) -> str:
        definition = self.filterable(node.field)
        if not definition.is_string:
            raise malformed(self.text, node.field.pos,
                            f"LIKE operator only valid on string fields: {definition.name}",
                            "INVALID_FIELD")
        return self.guard(
            definition, f"{field_sql(definition)} LIKE {self.bind(node.pattern.like)} "
                        "ESCAPE '\\'", 0)

    # -- whole query ---------------------------------------------------------

    def compile(self) -> CompiledQuery:
        selected: list[FieldDef] = []
        seen: set[str] = set()
        for ref in self.query.fields:
            definition = self.resolve(ref)
            if definition.name in seen:
                raise malformed(self.text, ref.pos,
                                f"duplicate field selected: {definition.name}")
            seen.add(definition.name)
            selected.append(definition)
        where = self.condition(self.query.where) if self.query.where is not None else "1"
        order_parts = []
        ordered: set[str] = set()
        for item in self.query.order:
            definition = self.resolve(item.field)
            if not definition.sortable:
                raise malformed(self.text, item.field.pos,
                                f"field '{definition.name}' can not be sorted in a query call",
                                "INVALID_FIELD")
            ordered.add(definition.name)
            order_parts.append(
                f"{self.expr(definition)} {'DESC' if item.descending else 'ASC'} "
                f"NULLS {'LAST' if item.nulls_last else 'FIRST'}"
            )
        if "Id" not in ordered:
            order_parts.append("Id ASC")  # a total order, so pages never overlap
        return CompiledQuery(self.obj, self.query.count_only, selected, where, self.params,
                             ", ".join(order_parts), self.query.limit, self.query.offset)


def compile_query(text: str, objects: Mapping[str, ObjectDef], now: datetime) -> CompiledQuery:
    """Parse and type-check SOQL against the org's schema."""
    query = parse(text)
    obj = next((o for o in objects.values() if o.name.lower() == query.sobject.lower()), None)
    if obj is None or not obj.queryable:
        raise malformed(
            text, query.sobject_pos,
            f"sObject type '{query.sobject}' is not supported. If you are attempting to use a "
            "custom object, be sure to append the '__c' after the entity name. Please reference "
            "your WSDL or the describe call for the appropriate names.", "INVALID_TYPE")
    return _Compiler(text, query, obj, now).compile()
