"""Values as the warehouse stores them: faithful on SQLite and PostgreSQL, or refused.

JSON documents (`to_json`, `json_text`, encoded once), quarantine text, and the column
rules every connector's values meet (`_RowBuilder`): a value that does not fit is
reported, never truncated or cleaned, so its record can be quarantined whole.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from accrue.warehouse.bulk_write import NotFastJson, dumps, fast_json_text
from connectors.common_model import COMMON_OBJECTS, Column

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT_LIMIT = 1e15  # beyond this a CRM amount or ratio is a data error, not a value
_JSON_INT_LIMIT = 10**4000  # Python will not even print longer integers (int_max_str_digits)
REASON_MAX_CHARS = 2_000


class UnstorableValue(ValueError):
    """A value that cannot be stored faithfully, the same way, on SQLite and PostgreSQL."""


def _utc(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{what}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what}: naive datetime; connectors must emit timezone-aware UTC")
    return value.astimezone(UTC)


def _text_problem(text: str) -> str | None:
    """Why PostgreSQL text (UTF-8, no NUL) could not hold `text` as it is, or None."""
    if "\x00" in text:
        return "contains a NUL character, which PostgreSQL text cannot hold"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"not valid unicode (lone surrogate {text[exc.start]!r} at index {exc.start})"
    return None


def _is_finite(value: float | Decimal) -> bool:
    return value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)


class _JsonProblem(Exception):
    """Raised deep in a document; each level adds its key so the path is built only on error."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem
        self.where: list[str] = []


def _json(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if -_JSON_INT_LIMIT < value < _JSON_INT_LIMIT:
            return value
        raise _JsonProblem("integer too long for JSON")
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem:
            raise _JsonProblem(problem)
        return value
    if isinstance(value, float | Decimal):
        if not _is_finite(value):
            raise _JsonProblem(f"not a finite number ({value})")
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = key if isinstance(key, str) else str(key)
            problem = _text_problem(name)
            if problem:
                raise _JsonProblem(f"key {name!r}: {problem}")
            try:
                out[name] = _json(item)
            except _JsonProblem as exc:
                exc.where.append(f".{name}")
                raise
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = []
        for index, item in enumerate(value):
            try:
                items.append(_json(item))
            except _JsonProblem as exc:
                exc.where.append(f"[{index}]")
                raise
        return items
    raise _JsonProblem(f"{type(value).__name__} is not JSON-serializable")


def to_json(value: Any, path: str = "raw") -> Any:
    """A JSON document both backends store exactly, or UnstorableValue naming the path.

    Datetimes and dates become ISO 8601 strings, decimals and UUIDs numbers and
    strings. What has no faithful JSON form on PostgreSQL's JSONB (NaN and
    infinities, NUL characters, lone surrogates, unknown types) is refused
    rather than altered, so the caller can quarantine the record.
    """
    try:
        return _json(value)
    except _JsonProblem as exc:
        raise UnstorableValue(f"{path}{''.join(reversed(exc.where))}: {exc.problem}") from None


def json_text(value: Any, path: str = "raw") -> str:
    """`to_json`'s document as compact JSON text, encoded once (the row and the log share it).

    The C encoder does the work; whatever it might spell otherwise than `to_json`
    (non-string keys, NUL, lone surrogates, odd numbers) goes the careful way, which
    stores the same or names the path of what cannot be stored.
    """
    try:
        return fast_json_text(value)
    except NotFastJson:
        pass
    document = to_json(value, path)
    try:
        return dumps(document)
    except ValueError:  # a finite decimal beyond a float's range
        raise UnstorableValue(f"{path}: a number beyond a float's range") from None


def _raw_text(raw: Any) -> str:
    """Quarantined documents as ASCII JSON text: lone surrogates and NUL survive as escapes."""
    if isinstance(raw, Mapping) and not isinstance(raw, dict):
        raw = dict(raw)
    try:
        return json.dumps(raw, ensure_ascii=True, default=str)
    except (TypeError, ValueError, RecursionError):
        pass
    try:
        return json.dumps({"unserializable": repr(raw)}, ensure_ascii=True)
    except (ValueError, RecursionError):
        return json.dumps({"unserializable": type(raw).__name__})


def _clean_reason(reason: object) -> str:
    """A reason PostgreSQL text can hold (it may quote a bad key), at a bounded length."""
    text = str(reason).replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode()
    return text if len(text) <= REASON_MAX_CHARS else text[: REASON_MAX_CHARS - 1] + "…"


# --------------------------------------------------------------------------- row building

Coerce = Callable[[Any], Any]


def _wrong_type(expected: str, value: Any) -> UnstorableValue:
    return UnstorableValue(f"expected {expected}, got {type(value).__name__}")


def _text_coercer(length: int | None) -> Coerce:
    def coerce(value: Any) -> str:
        if isinstance(value, str):
            text = value
        elif isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise _wrong_type("text", value)
        elif not isinstance(value, int) and not _is_finite(value):
            raise UnstorableValue(f"not a finite number ({value})")
        else:
            try:
                text = str(value)
            except ValueError:  # an integer longer than Python will print
                raise UnstorableValue("number too long for text") from None
        problem = _text_problem(text)
        if problem:
            raise UnstorableValue(problem)
        if length is not None and len(text) > length:
            raise UnstorableValue(f"{len(text)} characters, the column holds {length}")
        return text

    return coerce


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise _wrong_type("an integer", value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, float | Decimal):
        if not _is_finite(value):
            raise UnstorableValue(f"not a finite number ({value})")
        if value != int(value):
            raise UnstorableValue(f"expected an integer, got {value}")
        number = int(value)
    elif isinstance(value, str):
        digits = value.strip()
        if not digits.lstrip("+-").isdigit():
            raise _wrong_type("an integer", value)
        try:
            number = int(digits)
        except ValueError:
            raise _wrong_type("an integer", value) from None
    else:
        raise _wrong_type("an integer", value)
    if not INT64_MIN <= number <= INT64_MAX:
        raise UnstorableValue("outside the 64-bit integer range")
    return number


def _float(value: Any) -> float:
    """A float column's value, only if the float says the same number (shortest form).

    An integer beyond 2**53 or a decimal with more digits than a float holds would be
    rounded on the way in: refused instead, so the record is quarantined, not changed.
    """
    if isinstance(value, bool):
        raise _wrong_type("a number", value)
    if isinstance(value, str):
        try:
            exact = Decimal(value.strip())
        except ArithmeticError:
            raise _wrong_type("a number", value) from None
    elif isinstance(value, int | float | Decimal):
        try:
            exact = Decimal(value)
        except (ArithmeticError, ValueError):  # an integer longer than Python converts
            raise UnstorableValue("number too long for a float") from None
    else:
        raise _wrong_type("a number", value)
    if not exact.is_finite():
        raise UnstorableValue(f"not a finite number ({value})")
    if abs(exact) > FLOAT_LIMIT:
        raise UnstorableValue(f"{float(exact):g} is beyond {FLOAT_LIMIT:g} in magnitude")
    number = float(exact)
    if isinstance(value, float):
        return number
    if Decimal(repr(number)) != exact:
        raise UnstorableValue(f"{value} has more digits than a float holds ({number!r})")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _wrong_type("a boolean", value)


def _datetime(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise UnstorableValue("not an ISO 8601 date-time") from None
    if not isinstance(value, datetime):
        raise _wrong_type("a date-time", value)
    if value.tzinfo is None or value.utcoffset() is None:
        raise UnstorableValue("naive date-time (no time zone), so its instant is unknown")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise UnstorableValue("date-time out of range") from None


def _date(value: Any) -> date:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise UnstorableValue("not an ISO 8601 date") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    raise _wrong_type("a date", value)


def _coercer(column: Column) -> Coerce:
    match column.type:
        case "str":
            return _text_coercer(column.length)
        case "int":
            return _int
        case "float":
            return _float
        case "bool":
            return _bool
        case "datetime":
            return _datetime
        case "date":
            return _date
    raise TypeError(f"{column.name}: unsupported column type {column.type!r}")


class _RowBuilder:
    """Turns `Upsert.fields` into a row of one crm_* table, with the same rules on both backends.

    The database is not left to coerce: SQLite would store anything and
    PostgreSQL would reject the whole page, so the same record would behave
    differently per backend. A value that does not fit is reported, never
    truncated or cleaned, so the record can be quarantined whole.

    The plan (column, kind, limit, coercer) is built once per object. A value that
    already is the column's exact type and plainly fits (ASCII text without NUL
    within the length, a float or an integer within range, a UTC datetime...) is
    taken as it is: the coercer would return it unchanged, and calling it for
    every value was most of the cost of building a row (issue 15).
    """

    def __init__(self, object_name: str):
        self.object_name = object_name
        self.plan: tuple[tuple[str, str, int, Coerce], ...] = tuple(
            (c.name, c.type, c.length if c.length is not None else sys.maxsize, _coercer(c))
            for c in COMMON_OBJECTS[object_name]
        )

    def fields(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The row's model columns, and the problems ("object.column: why") that block it."""
        if not isinstance(values, Mapping):
            raise TypeError(f"Upsert.fields must be a mapping, got {type(values).__name__}")
        row: dict[str, Any] = {}
        problems: list[str] = []
        get = values.get
        for name, kind, limit, coerce in self.plan:
            value = get(name)
            if value is None:
                row[name] = None
                continue
            exact = type(value)
            if exact is str:
                if kind == "str" and len(value) <= limit and value.isascii() \
                        and "\x00" not in value:
                    row[name] = value
                    continue
            elif exact is float:
                if kind == "float" and -FLOAT_LIMIT <= value <= FLOAT_LIMIT:  # NaN fails too
                    row[name] = value
                    continue
            elif exact is datetime:
                if kind == "datetime" and value.tzinfo is UTC:
                    row[name] = value
                    continue
            elif exact is bool:
                if kind == "bool":
                    row[name] = value
                    continue
            elif exact is int:
                if kind == "int" and INT64_MIN <= value <= INT64_MAX:
                    row[name] = value
                    continue
                if kind == "float" and -FLOAT_LIMIT <= value <= FLOAT_LIMIT:  # below 2**53
                    row[name] = float(value)
                    continue
            elif exact is date and kind == "date":
                row[name] = value
                continue
            try:
                row[name] = coerce(value)
            except UnstorableValue as exc:
                problems.append(f"{self.object_name}.{name}: {exc}")
        return row, problems
