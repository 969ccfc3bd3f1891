"""A SOQL subset: tokenizer, recursive-descent parser and a compiler to SQLite SQL.

Supported: `SELECT f, … | COUNT() FROM T [WHERE …] [ORDER BY …] [LIMIT n]
[OFFSET n]`, with AND / OR / NOT and parentheses, comparison operators,
`[NOT] IN (…)`, `LIKE`, and string, number, boolean, null, date, datetime and
relative date literals. Values are always bound as parameters; filters, order
and limits run inside SQLite so large tables never reach Python.

Behaviour copied from Salesforce because clients depend on it: field and
object names are case-insensitive, string comparisons are case-insensitive,
`!=` and `NOT IN` also match nulls, AND and OR cannot be mixed without
parentheses, and filter values must have the field's type (a quoted date on a
date field is an error, as in the real API).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from .errors import ApiError
from .ids import normalize_id
from .schema import NUMBER_TYPES, STRING_TYPES, FieldDef, ObjectDef
from .values import format_date, format_datetime, format_datetime_precise, parse_datetime

MAX_OFFSET = 2000

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
   |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2}))
   |(?P<baddatetime>\d{4}-\d{2}-\d{2}T[0-9:.+\-Z]*)
   |(?P<date>\d{4}-\d{2}-\d{2})
   |(?P<number>\d+(?:\.\d+)?|\.\d+)
   |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
   |(?P<quote>')
   |(?P<op><=|>=|!=|<>|=|<|>|\(|\)|,|\.|:|-|\+)
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "'": "'",
            "\\": "\\"}
KEYWORDS = frozenset({
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC",
    "DESC", "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "TRUE", "FALSE", "NULL",
    "GROUP", "HAVING", "INCLUDES", "EXCLUDES", "WITH", "FOR", "USING",
})
_RANGE_KEYWORDS = frozenset({
    "TODAY", "YESTERDAY", "TOMORROW", "LAST_WEEK", "THIS_WEEK", "NEXT_WEEK", "LAST_MONTH",
    "THIS_MONTH", "NEXT_MONTH", "LAST_90_DAYS", "NEXT_90_DAYS", "THIS_YEAR", "LAST_YEAR",
    "NEXT_YEAR",
})
_N_KEYWORDS = frozenset({"LAST_N_DAYS", "NEXT_N_DAYS", "N_DAYS_AGO"})
_COMPARISONS = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})


# ---------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True)
class Token:
    kind: str  # ident | string | number | date | datetime | op | eof
    text: str
    pos: int
    like: str | None = None  # for strings: the SQLite LIKE pattern (escape '\')

    @property
    def upper(self) -> str:
        return self.text.upper()

    def is_keyword(self, *words: str) -> bool:
        return self.kind == "ident" and self.upper in words


def malformed(query: str, pos: int, detail: str, code: str = "MALFORMED_QUERY") -> ApiError:
    """An error in Salesforce's format: the offending line, a caret, row and column."""
    row = query.count("\n", 0, pos) + 1
    line_start = query.rfind("\n", 0, pos) + 1
    line_end = query.find("\n", pos)
    line = query[line_start:] if line_end < 0 else query[line_start:line_end]
    column = pos - line_start
    return ApiError(
        400, code, f"\n{line}\n{' ' * column}^\nERROR at Row:{row}:Column:{column + 1}\n{detail}"
    )


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        if match is None:
            raise malformed(query, pos, f"line 1:{pos} no viable alternative at character "
                                        f"'{query[pos]}'")
        kind = match.lastgroup or ""
        if kind == "quote":
            token, pos = _read_string(query, pos)
            tokens.append(token)
            continue
        if kind == "baddatetime":
            raise malformed(query, pos, f"line 1:{pos} no viable alternative at character "
                                        f"'{match.group()}'")
        if kind != "ws":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("eof", "", len(query)))
    return tokens


def _read_string(query: str, start: int) -> tuple[Token, int]:
    """Read a quoted literal; builds the plain value and the LIKE pattern together."""
    value: list[str] = []
    like: list[str] = []
    pos = start + 1
    while pos < len(query):
        char = query[pos]
        if char == "'":
            return Token("string", "".join(value), start, "".join(like)), pos + 1
        if char == "\\":
            nxt = query[pos + 1] if pos + 1 < len(query) else ""
            if nxt in ("%", "_"):
                value.append(nxt)
                like.append("\\" + nxt)
                pos += 2
                continue
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", query[pos + 2:pos + 6]):
                char = chr(int(query[pos + 2:pos + 6], 16))
                pos += 6
            elif nxt in _ESCAPES:
                char = _ESCAPES[nxt]
                pos += 2
            else:
                raise malformed(query, pos, "Invalid string literal '" + query[start:pos + 2]
                                + "'. Illegal character sequence '\\" + nxt + "' in string "
                                "literal.")
            value.append(char)
            like.append("\\\\" if char == "\\" else char)
            continue
        value.append(char)
        like.append(char)
        pos += 1
    raise malformed(query, start, "line 1:" + str(start) + " mismatched character '<EOF>' "
                                   "expecting '''")


# ---------------------------------------------------------------------------
# Syntax tree


@dataclass(frozen=True)
class FieldRef:
    path: tuple[str, ...]
    pos: int


@dataclass(frozen=True)
class Literal:
    kind: str  # string | number | boolean | null | date | datetime | range
    value: Any
    pos: int
    like: str | None = None


@dataclass(frozen=True)
class Comparison:
    field: FieldRef
    op: str
    value: Literal


@dataclass(frozen=True)
class InList:
    field: FieldRef
    values: tuple[Literal, ...]
    negate: bool


@dataclass(frozen=True)
class Like:
    field: FieldRef
    pattern: Literal


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND | OR
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    item: Any


@dataclass(frozen=True)
class OrderItem:
    field: FieldRef
    descending: bool
    nulls_last: bool


@dataclass
class Query:
    sobject: str
    sobject_pos: int
    fields: list[FieldRef] = field(default_factory=list)
    count_only: bool = False
    where: Any = None
    order: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.index = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "eof":
            self.index += 1
        return token

    def unexpected(self, token: Token | None = None) -> ApiError:
        token = token or self.token
        text = "<EOF>" if token.kind == "eof" else token.text
        return malformed(self.query, token.pos, f"unexpected token: '{text}'")

    def expect_keyword(self, word: str) -> Token:
        if not self.token.is_keyword(word):
            raise self.unexpected()
        return self.advance()

    def expect_op(self, op: str) -> Token:
        if self.token.kind != "op" or self.token.text != op:
            raise self.unexpected()
        return self.advance()

    def at_op(self, op: str) -> bool:
        return self.token.kind == "op" and self.token.text == op

    # -- grammar -------------------------------------------------------------

    def parse(self) -> Query:
        self.expect_keyword("SELECT")
        fields: list[FieldRef] = []
        count_only = False
        nxt = self.tokens[self.index + 1]
        if self.token.is_keyword("COUNT") and nxt.kind == "op" and nxt.text == "(":
            self.advance()
            self.advance()
            if not self.at_op(")"):
                raise malformed(self.query, self.token.pos,
                                "COUNT(field) aggregate queries are not supported by the "
                                "sandbox; use COUNT()")
            self.advance()
            count_only = True
        else:
            fields.append(self.field_ref())
            while self.at_op(","):
                self.advance()
                fields.append(self.field_ref())
        self.expect_keyword("FROM")
        name = self.advance()
        if name.kind != "ident" or name.upper in KEYWORDS:
            raise self.unexpected(name)
        query = Query(name.text, name.pos, fields, count_only)
        if self.token.is_keyword("WHERE"):
            self.advance()
            query.where = self.condition()
        if self.token.is_keyword("ORDER"):
            self.advance()
            self.expect_keyword("BY")
            query.order.append(self.order_item())
            while self.at_op(","):
                self.advance()
                query.order.append(self.order_item())
        if self.token.is_keyword("LIMIT"):
            self.advance()
            query.limit = self.integer()
        if self.token.is_keyword("OFFSET"):
            self.advance()
            query.offset = self.integer()
            if query.offset > MAX_OFFSET:
                raise ApiError(400, "NUMBER_OUTSIDE_VALID_RANGE",
                               f"Maximum SOQL offset allowed is {MAX_OFFSET}")
        if self.token.kind != "eof":
            raise self.unexpected()
        return query

    def integer(self) -> int:
        token = self.advance()
        if token.kind != "number" or not token.text.isdigit():
            raise self.unexpected(token)
        return int(token.text)

    def field_ref(self) -> FieldRef:
        token = self.advance()
        if token.kind == "op" and token.text == "(":
            raise malformed(self.query, token.pos,
                            "Relationship subqueries are not supported by the sandbox")
        if token.kind != "ident" or token.upper in KEYWORDS:
            raise self.unexpected(token)
        path = [token.text]
        while self.at_op("."):
            self.advance()
            part = self.advance()
            if part.kind != "ident":
                raise self.unexpected(part)
            path.append(part.text)
        return FieldRef(tuple(path), token.pos)

    def order_item(self) -> OrderItem:
        ref = self.field_ref()
        descending = False
        if self.token.is_keyword("ASC", "DESC"):
            descending = self.advance().upper == "DESC"
        nulls_last = descending
        if self.token.is_keyword("NULLS"):
            self.advance()
            if not self.token.is_keyword("FIRST", "LAST"):
                raise self.unexpected()
            nulls_last = self.advance().upper == "LAST"
        return OrderItem(ref, descending, nulls_last)

    def condition(self) -> Any:
        items = [self.unary()]
        joiner: str | None = None
        while self.token.is_keyword("AND", "OR"):
            word = self.token.upper
            if joiner is not None and word != joiner:
                raise self.unexpected()
            joiner = word
            self.advance()
            items.append(self.unary())
        return items[0] if joiner is None else BoolOp(joiner, tuple(items))

    def unary(self) -> Any:
        if self.token.is_keyword("NOT"):
            self.advance()
            return Not(self.unary())
        if self.at_op("("):
            self.advance()
            inner = self.condition()
            self.expect_op(")")
            return inner
        return self.predicate()

    def predicate(self) -> Any:
        ref = self.field_ref()
        token = self.token
        if token.kind == "op" and token.text in _COMPARISONS:
            self.advance()
            op = "!=" if token.text == "<>" else token.text
            return Comparison(ref, op, self.value())
        negate = False
        if token.is_keyword("NOT"):
            self.advance()
            negate = True
            if not self.token.is_keyword("IN"):
                raise self.unexpected()
        if self.token.is_keyword("IN"):
            self.advance()
            self.expect_op("(")
            if self.token.is_keyword("SELECT"):
                raise malformed(self.query, self.token.pos,
                                "Semi-join subqueries are not supported by the sandbox")
            values = [self.value()]
            while self.at_op(","):
                self.advance()
                values.append(self.value())
            self.expect_op(")")
            return InList(ref, tuple(values), negate)
        if self.token.is_keyword("LIKE"):
            self.advance()
            pattern = self.advance()
            if pattern.kind != "string":
                raise self.unexpected(pattern)
            return Like(ref, Literal("string", pattern.text, pattern.pos, pattern.like))
        if self.token.is_keyword("INCLUDES", "EXCLUDES"):
            raise malformed(self.query, self.token.pos,
                            "INCLUDES/EXCLUDES apply to multi-select picklists, which the "
                            "sandbox does not have")
        raise self.unexpected()

    def value(self) -> Literal:
        token = self.advance()
        if token.kind == "string":
            return Literal("string", token.text, token.pos, token.like)
        if token.kind == "op" and token.text in ("-", "+"):
            number = self.advance()
            if number.kind != "number":
                raise self.unexpected(number)
            value = _number(number.text)
            return Literal("number", -value if token.text == "-" else value, token.pos)
        if token.kind == "number":
            return Literal("number", _number(token.text), token.pos)
        if token.kind == "date":
            try:
                return Literal("date", date.fromisoformat(token.text), token.pos)
            except ValueError:
                raise malformed(self.query, token.pos,
                                f"invalid date: {token.text}") from None
        if token.kind == "datetime":
            try:
                return Literal("datetime", parse_datetime(token.text), token.pos)
            except ValueError:
                raise malformed(self.query, token.pos,
                                f"invalid datetime: {token.text}") from None
        if token.kind == "ident":
            word = token.upper
            if word in ("TRUE", "FALSE"):
                return Literal("boolean", word == "TRUE", token.pos)
            if word == "NULL":
                return Literal("null", None, token.pos)
            if word in _RANGE_KEYWORDS:
                return Literal("range", (word, 0), token.pos)
            if word in _N_KEYWORDS:
                self.expect_op(":")
                amount = self.advance()
                if amount.kind != "number" or not amount.text.isdigit():
                    raise self.unexpected(amount)
                return Literal("range", (word, int(amount.text)), token.pos)
        raise self.unexpected(token)


def _number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def parse(query: str) -> Query:
    """Parse SOQL text into a `Query`; raises ApiError(MALFORMED_QUERY)."""
    return _Parser(query).parse()


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
