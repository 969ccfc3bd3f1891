"""A SOQL subset: tokenizer and recursive-descent parser (compiled by `soql_compiler.py`).

Supported: `SELECT f, … | COUNT() FROM T [WHERE …] [ORDER BY …] [LIMIT n]
[OFFSET n]`, with AND / OR / NOT and parentheses, comparison operators,
`[NOT] IN (…)`, `LIKE`, and string, number, boolean, null, date, datetime and
relative date literals.

Behaviour copied from Salesforce because clients depend on it: field and
object names are case-insensitive, string comparisons are case-insensitive,
`!=` and `NOT IN` also match nulls, and AND and OR cannot be mixed without
parentheses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .errors import ApiError
from .values import parse_datetime

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
