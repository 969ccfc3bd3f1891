"""Exported text to common-model values: exactly, or a reason why not.

A CRM export writes numbers and dates the way its user's locale does ("USD 1,234.56",
"1.234,56 €", "15.01.2024", "1/15/2024"). Each value either parses to exactly one value of
the column's type under the file's conventions (`ValueFormat`), or a `ValueProblem` says
why; nothing is rounded, guessed or cleaned. "1.234" is 1234 only in a file whose decimal
separator is the comma, 1.234 only where it is the point, and ambiguous (refused) when the
file does not say.

Numbers go to the warehouse as canonical decimal text ("1234.56"): its float rule then
refuses a value with more digits than a float holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.common_model import Column

DecimalMark = Literal[".", ","]
DateOrder = Literal["MDY", "DMY", "YMD"]

_CURRENCY = r"(?:[$€£¥₹]|[A-Z]{3})"
_NUMBER = re.compile(
    rf"^(?P<sign1>[-+])?\s*(?:(?P<cur1>{_CURRENCY})\s*)?(?P<sign2>[-+])?"
    r"(?P<body>\d[\d.,' \u00a0\u202f]*)"
    rf"(?:\s*(?P<cur2>{_CURRENCY}))?(?:\s*%)?$"
)
_GROUPING = {".": (",", " ", "\u00a0", "\u202f", "'"), ",": (".", " ", "\u00a0", "\u202f", "'")}
_ISO_DATE = re.compile(r"^(\d{4})([-/.])(\d{1,2})\2(\d{1,2})$")
_LOCAL_DATE = re.compile(r"^(\d{1,2})([-/.])(\d{1,2})\2(\d{4})$")
_TIME = re.compile(
    r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6}))?)?\s*(?P<ampm>[AaPp][Mm])?"
    r"\s*(?P<tz>Z|UTC|[+-]\d{2}:?\d{2})?$"
)
_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0"})


class ValueProblem(ValueError):
    """Why a text is not exactly one value of its column (the row is quarantined)."""


@dataclass(frozen=True)
class ValueFormat:
    """A file's conventions: None means the file did not say (ambiguous values refused)."""

    decimal: DecimalMark | None = None
    date_order: DateOrder | None = None
    timezone: str = "UTC"  # where a time without an offset was written

    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueProblem(f"unknown time zone {self.timezone!r}") from None


# --------------------------------------------------------------------------- numbers


def _number_under(body: str, mark: str) -> Decimal | None:
    """The number `body` writes when `mark` is the decimal separator, or None."""
    if body.count(mark) > 1:
        return None
    whole, _, fraction = body.partition(mark)
    if mark in body and not fraction.isdigit():
        return None
    groups = [c for c in whole if not c.isdigit()]
    if groups:
        sep = groups[0]
        if sep not in _GROUPING[mark] or any(c != sep for c in groups):
            return None
        parts = whole.split(sep)
        if not (1 <= len(parts[0]) <= 3 and all(len(p) == 3 and p.isdigit() for p in parts[1:])):
            return None
        whole = "".join(parts)
    if not whole.isdigit():
        return None
    return Decimal(f"{whole}.{fraction}" if fraction else whole)


def number_marks(text: str) -> set[str]:
    """Which decimal marks the text parses under (for inferring the file's convention)."""
    match = _NUMBER.match(text.strip())
    if not match:
        return set()
    body = match["body"].rstrip(" \u00a0\u202f")
    return {mark for mark in (".", ",") if _number_under(body, mark) is not None}


def parse_number(text: str, fmt: ValueFormat) -> Decimal:
    match = _NUMBER.match(text.strip())
    if not match or (match["cur1"] and match["cur2"]) or (match["sign1"] and match["sign2"]):
        raise ValueProblem(f"{text!r} is not a number")
    sign = match["sign1"] or match["sign2"] or ""
    body = match["body"].rstrip(" \u00a0\u202f")
    marks = (fmt.decimal,) if fmt.decimal else (".", ",")
    values = {n for n in (_number_under(body, m) for m in marks) if n is not None}
    if not values:
        how = f" with {fmt.decimal!r} as the decimal separator" if fmt.decimal else ""
        raise ValueProblem(f"{text!r} is not a number{how}")
    if len(values) > 1:
        raise ValueProblem(
            f"{text!r} is ambiguous: the file does not say whether the decimal separator is "
            f"'.' or ','; set the mapping's decimal separator")
    number = values.pop()
    return -number if sign == "-" else number


def _canonical(number: Decimal) -> str:
    text = format(number, "f")
    return text


# --------------------------------------------------------------------------- dates


def _date_parts(text: str) -> list[tuple[int, int, int, str | None]]:
    """(year, month, day, order used) readings of a date text; several when ambiguous."""
    text = text.strip()
    iso = _ISO_DATE.match(text)
    if iso:
        return [(int(iso[1]), int(iso[3]), int(iso[4]), "YMD")]
    local = _LOCAL_DATE.match(text)
    if not local:
        return []
    a, b, year = int(local[1]), int(local[3]), int(local[4])
    return [(year, a, b, "MDY"), (year, b, a, "DMY")]


def _valid(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def date_orders(text: str) -> set[str]:
    """The orders under which a date (or the date of a date-time) text is a real date."""
    day_text = _split_time(text)[0]
    return {order for y, m, d, order in _date_parts(day_text)
            if order is not None and _valid(y, m, d)}


def parse_date(text: str, fmt: ValueFormat) -> date:
    readings = _date_parts(text)
    if not readings:
        raise ValueProblem(f"{text!r} is not a date (expected e.g. 2024-01-31, 1/31/2024 "
                           f"or 31.01.2024 with a four-digit year)")
    dates = {
        found for y, m, d, order in readings
        if (order == "YMD" or fmt.date_order in (None, order)) and (found := _valid(y, m, d))
    }
    if not dates:
        how = f" in the file's {fmt.date_order} order" if fmt.date_order else ""
        raise ValueProblem(f"{text!r} is not a real date{how}")
    if len(dates) > 1:
        raise ValueProblem(f"{text!r} is ambiguous: the file does not say whether dates are "
                           f"month/day or day/month; set the mapping's date order")
    return dates.pop()


def _split_time(text: str) -> tuple[str, str]:
    text = text.strip()
    for sep in ("T", " "):
        if sep in text:
            head, _, tail = text.partition(sep)
            return head, tail.strip()
    return text, ""


def parse_datetime(text: str, fmt: ValueFormat) -> datetime:
    day_text, time_text = _split_time(text)
    day = parse_date(day_text, fmt)
    if not time_text:
        return datetime.combine(day, time(), fmt.zone())
    match = _TIME.match(time_text)
    if not match:
        raise ValueProblem(f"{text!r}: {time_text!r} is not a time of day")
    hour, minute = int(match[1]), int(match[2])
    second = int(match[3] or 0)
    micro = int((match[4] or "0").ljust(6, "0"))
    ampm = (match["ampm"] or "").upper()
    if ampm:
        if not 1 <= hour <= 12:
            raise ValueProblem(f"{text!r}: {hour} is not an hour on a 12-hour clock")
        hour = hour % 12 + (12 if ampm == "PM" else 0)
    tz_text = match["tz"]
    try:
        if tz_text in (None, ""):
            zone: Any = fmt.zone()
            return datetime.combine(day, time(hour, minute, second, micro), zone)
        if tz_text in ("Z", "UTC"):
            tz_text = "+00:00"
        offset = tz_text if ":" in tz_text else f"{tz_text[:3]}:{tz_text[3:]}"
        stamp = f"{day.isoformat()}T{hour:02d}:{minute:02d}:{second:02d}.{micro:06d}{offset}"
        return datetime.fromisoformat(stamp)
    except ValueError:
        raise ValueProblem(f"{text!r} is not a real time of day") from None


# --------------------------------------------------------------------------- columns


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueProblem(f"{text!r} is not a yes/no value (true/false, yes/no, 1/0)")


def convert(text: str, column: Column, fmt: ValueFormat) -> Any:
    """The value to store for a non-empty exported text, or ValueProblem.

    Text columns take the text as it is (the warehouse checks its length); floats go as
    canonical decimal text so the warehouse's exactness rule applies.
    """
    match column.type:
        case "str":
            if column.length is not None and len(text) > column.length:
                raise ValueProblem(
                    f"{len(text)} characters, the column holds {column.length}")
            return text
        case "float":
            return _canonical(parse_number(text, fmt))
        case "int":
            number = parse_number(text, fmt)
            if number != number.to_integral_value():
                raise ValueProblem(f"{text!r} is not a whole number")
            return int(number)
        case "bool":
            return parse_bool(text)
        case "date":
            return parse_date(_split_date_only(text), fmt)
        case "datetime":
            return parse_datetime(text, fmt)
    raise ValueProblem(f"unsupported column type {column.type!r}")


def _split_date_only(text: str) -> str:
    """A date column takes the calendar date a date-time text writes (HubSpot exports its
    close dates with a time): the date as written, never shifted to another zone; the
    full text stays in `raw`."""
    day_text, time_text = _split_time(text)
    if time_text and not _TIME.match(time_text):
        raise ValueProblem(f"{text!r}: {time_text!r} is not a time of day")
    return day_text


def comparable(value: Any, column: Column) -> Any:
    """A converted value as the warehouse returns it (to detect unchanged rows)."""
    if value is None:
        return None
    if column.type == "float":
        return float(Decimal(value))
    return value


# --------------------------------------------------------------------------- inference


class FormatVotes:
    """Streaming evidence for a file's conventions: one vote per value that reads one way
    only ("12,5", "1,234.56", "31.01.2024"); memory stays flat however long the file."""

    def __init__(self) -> None:
        self.marks = {".": 0, ",": 0}
        self.orders = {"MDY": 0, "DMY": 0}

    def number(self, text: str) -> None:
        found = number_marks(text)
        if len(found) == 1:
            self.marks[found.pop()] += 1

    def date(self, text: str) -> None:
        found = date_orders(text) - {"YMD"}
        if len(found) == 1:
            self.orders[found.pop()] += 1

    def decide(self, timezone: str = "UTC") -> tuple[ValueFormat, list[str]]:
        """The conventions the votes show; conflicting evidence leaves one undecided."""
        notes: list[str] = []
        decimal = _decide(self.marks, "decimal separator", notes)
        date_order = _decide(self.orders, "date order", notes)
        return ValueFormat(decimal, date_order, timezone), notes


def infer_format(
    numbers: Iterable[str], dates: Iterable[str], *, timezone: str = "UTC"
) -> tuple[ValueFormat, list[str]]:
    """The file's decimal mark and date order from its unambiguous values, with notes."""
    votes = FormatVotes()
    for text in numbers:
        votes.number(text)
    for text in dates:
        votes.date(text)
    return votes.decide(timezone)


def _decide(votes: dict[str, int], what: str, notes: list[str]) -> Any:
    """The convention most values show alone, when the others are a clear minority
    (those few then fail as not real values under it, and are quarantined)."""
    (best, most), (other, rest) = sorted(votes.items(), key=lambda kv: -kv[1])
    if most and most >= 3 * rest:
        if rest:
            notes.append(f"{what}: {most} values read only as {best!r}, {rest} only as "
                         f"{other!r}; {best!r} chosen, those {rest} will be quarantined")
        return best
    if most:
        notes.append(f"{what}: values read both as {best!r} ({most}) and {other!r} ({rest}): "
                     "set it in the mapping")
    return None


def parses(text: str, fmt: ValueFormat, column: Column) -> str | None:
    """None if the text converts, else the reason."""
    try:
        convert(text, column, fmt)
    except ValueProblem as exc:
        return str(exc)
    return None

