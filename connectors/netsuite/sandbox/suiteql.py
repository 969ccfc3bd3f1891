"""A SuiteQL subset, translated to SQLite after checking every name against the schema.

Enough for what integrations send: SELECT (columns, `*`, aliases, COUNT/MIN/MAX,
TO_CHAR, TO_TIMESTAMP, TO_DATE, NVL, SYSDATE), FROM with [LEFT|INNER] JOINs, WHERE with
comparisons, AND/OR/NOT, BETWEEN, IN (lists and subqueries), IS [NOT] NULL, LIKE, and
ORDER BY. Anything else is refused with NetSuite's "Invalid search query" error, so a
connector cannot depend on SQL that NetSuite would reject.

Date-times are stored as UTC epoch seconds; TO_TIMESTAMP reads its literal in the
account's time zone and TO_CHAR writes in it, as NetSuite does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .schema import TABLES

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)
  | (?P<op><>|!=|<=|>=|\|\||[=<>(),*+\-/])
""", re.VERBOSE)

KEYWORDS = {"select", "distinct", "from", "where", "and", "or", "not", "between", "in", "is",
            "null", "like", "as", "order", "by", "asc", "desc", "join", "left", "inner",
            "outer", "on", "case", "when", "then", "else", "end", "group", "nulls", "first",
            "last"}
FUNCTIONS = {"count": "count", "min": "min", "max": "max", "sum": "sum", "upper": "upper",
             "lower": "lower", "nvl": "ifnull", "to_char": "ns_to_char",
             "to_timestamp": "ns_to_timestamp", "to_date": "ns_to_timestamp"}


class QueryError(ValueError):
    """A query NetSuite would refuse: the message is its "Search error occurred" part."""


@dataclass(frozen=True)
class Token:
    kind: str
    text: str

    @property
    def word(self) -> str:
        return self.text.lower() if self.kind == "name" else self.text


@dataclass
class Translation:
    sql: str
    columns: list[str]  # output names, lower-cased as NetSuite returns them
    kinds: list[str]  # schema kind of each output ("datetime" renders as a date)


@dataclass
class _Scope:
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> table

    def resolve(self, name: str) -> tuple[str, str]:
        """(table, column) of a column reference, or QueryError as NetSuite words it."""
        if "." in name:
            alias, column = name.split(".", 1)
            table = self.aliases.get(alias)
            if table is None:
                raise QueryError(f"Invalid or unsupported search: unknown table alias '{alias}'")
            if column not in TABLES[table].columns:
                raise QueryError(f"Field '{column}' for record '{table}' was not found.")
            return table, column
        owners = [t for t in dict.fromkeys(self.aliases.values()) if name in TABLES[t].columns]
        if not owners:
            tables = ", ".join(dict.fromkeys(self.aliases.values()))
            raise QueryError(f"Field '{name}' for record '{tables}' was not found.")
        if len(owners) > 1:
            raise QueryError(f"column ambiguously defined: '{name}'")
        return owners[0], name


def tokenize(query: str) -> list[Token]:
    tokens, position = [], 0
    while position < len(query):
        match = _TOKEN.match(query, position)
        if not match:
            raise QueryError(f"Syntax error near '{query[position:position + 20]}'")
        position = match.end()
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group()))
    return tokens


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens, self.i = tokens, 0

    def peek(self, offset: int = 0) -> str:
        index = self.i + offset
        return self.tokens[index].word if index < len(self.tokens) else ""

    def take(self, *expected: str) -> Token:
        if self.i >= len(self.tokens):
            raise QueryError("Unexpected end of query")
        token = self.tokens[self.i]
        if expected and token.word not in expected:
            raise QueryError(f"Syntax error: expected {' or '.join(expected)} near '{token.text}'")
        self.i += 1
        return token

    # -- statements ----------------------------------------------------------

    def select(self) -> Translation:
        self.take("select")
        distinct = self.peek() == "distinct"
        if distinct:
            self.take()
        items_start = self.i
        self._skip_to_depth0("from")
        items_end = self.i
        self.take("from")
        scope = _Scope()
        sql_from = self._from_clause(scope)
        end = self.i
        self.i = items_start
        items = self._select_items(scope, items_end)
        self.i = end
        sql = (f"SELECT {'DISTINCT ' if distinct else ''}"
               + ", ".join(f'{expr} AS "{name}"' for expr, name, _ in items) + f" FROM {sql_from}")
        if self.peek() == "where":
            self.take()
            sql += " WHERE " + self._expression(scope, ("order", "group", ")"))
        if self.peek() == "group":
            self.take()
            self.take("by")
            sql += " GROUP BY " + self._expression(scope, ("order", ")"))
        if self.peek() == "order":
            self.take()
            self.take("by")
            sql += " ORDER BY " + self._expression(scope, (")",))
        return Translation(sql, [n for _, n, _ in items], [k for _, _, k in items])

    def _skip_to_depth0(self, word: str) -> None:
        depth = 0
        while self.i < len(self.tokens):
            token = self.peek()
            if token == "(":
                depth += 1
            elif token == ")":
                depth -= 1
            elif depth == 0 and token == word:
                return
            self.i += 1
        raise QueryError(f"Syntax error: missing {word.upper()}")

    def _table_ref(self, scope: _Scope) -> str:
        name = self.take().word
        if name not in TABLES:
            raise QueryError(f"Record '{name}' was not found.")
        alias = name
        if self.peek() == "as":
            self.take()
        if self.peek() and self.tokens[self.i].kind == "name" and self.peek() not in KEYWORDS:
            alias = self.take().word
        scope.aliases[alias] = name
        return f'"{name}" AS "{alias}"'

    def _from_clause(self, scope: _Scope) -> str:
        sql = self._table_ref(scope)
        while self.peek() in ("join", "left", "inner"):
            kind = "LEFT JOIN" if self.peek() == "left" else "JOIN"
            while self.peek() in ("left", "inner", "outer"):
                self.take()
            self.take("join")
            sql += f" {kind} " + self._table_ref(scope)
            self.take("on")
            sql += " ON " + self._expression(scope, ("join", "left", "inner", "where", "order",
                                                     "group", ")"))
        return sql

    def _select_items(self, scope: _Scope, end: int) -> list[tuple[str, str, str]]:
        items: list[tuple[str, str, str]] = []
        while self.i < end:
            if self.peek() == "*":
                self.take()
                tables = list(dict.fromkeys(scope.aliases.items()))
                for alias, table in tables:
                    for column, column_kind in TABLES[table].columns.items():
                        items.append((f'"{alias}"."{column}"', column, column_kind))
            else:
                start = self.i
                expr = self._expression(scope, (",", "as", "from"), stop_at=end)
                name, kind = self._default_name(scope, start, len(items) + 1)
                if self.peek() == "as":
                    self.take()
                    name = self.take().word
                items.append((expr, name, kind))
            if self.i < end:
                self.take(",")
        return items

    def _default_name(self, scope: _Scope, start: int, position: int) -> tuple[str, str]:
        if self.i - start == 1 and self.tokens[start].kind == "name":
            table, column = scope.resolve(self.tokens[start].word)
            return column, TABLES[table].columns[column]
        return f"expr{position}", "text"

    # -- expressions ---------------------------------------------------------

    def _expression(self, scope: _Scope, stops: tuple[str, ...], stop_at: int | None = None
                    ) -> str:
        """Translate tokens up to a stop word at depth 0, checking every name."""
        parts: list[str] = []
        depth = 0
        limit = len(self.tokens) if stop_at is None else stop_at
        while self.i < limit:
            word = self.peek()
            token = self.tokens[self.i]
            if depth == 0 and word in stops:
                break
            if word == "(":
                if self.peek(1) == "select":
                    self.take()
                    sub = _Parser(self.tokens)
                    sub.i = self.i
                    translated = sub.select()
                    self.i = sub.i
                    self.take(")")
                    parts.append(f"({translated.sql})")
                    continue
                depth += 1
            elif word == ")":
                depth -= 1
                if depth < 0:
                    break
            self.take()
            if token.kind == "name":
                parts.append(self._name(scope, word))
            elif token.kind == "op" and word == "!=":
                parts.append("<>")
            else:
                parts.append(token.text)
        if not parts:
            raise QueryError("Syntax error: empty expression")
        return " ".join(parts)

    def _name(self, scope: _Scope, word: str) -> str:
        if word in KEYWORDS:
            return word.upper()
        if word == "sysdate":
            return "ns_sysdate()"
        if self.peek() == "(":
            if word not in FUNCTIONS:
                raise QueryError(f"Unknown function {word.upper()}")
            return FUNCTIONS[word]
        table, column = scope.resolve(word)
        if "." in word:
            alias = word.split(".", 1)[0]
            return f'"{alias}"."{column}"'
        return f'"{column}"'


def translate(query: str) -> Translation:
    """SQLite for one SuiteQL SELECT, or QueryError."""
    tokens = tokenize(query.strip().rstrip(";"))
    if not tokens or tokens[0].word != "select":
        raise QueryError("Only SELECT statements are supported")
    parser = _Parser(tokens)
    translation = parser.select()
    if parser.i != len(tokens):
        raise QueryError(f"Syntax error near '{tokens[parser.i].text}'")
    return translation
