"""Value formats: how Salesforce writes dates and datetimes, and how it reads them.

Datetimes are stored exactly as the REST API prints them
(`2024-01-01T00:00:00.000+0000`, always UTC, millisecond precision). That
fixed-width form sorts lexicographically in time order, so SQLite can filter
and order on the stored text without converting anything at query time.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def _ymd_hms(value: datetime) -> str:
    """`YYYY-MM-DDThh:mm:ss` with a four-digit year (glibc's %Y writes year 1 as `1`)."""
    return f"{format_date(value)}T{value:%H:%M:%S}"


def format_datetime(value: datetime) -> str:
    """The REST form of a datetime: UTC, milliseconds, `+0000`."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return f"{_ymd_hms(value)}.{value.microsecond // 1000:03d}+0000"


def format_datetime_precise(value: datetime) -> str:
    """Like `format_datetime` but keeps sub-millisecond digits when there are any.

    Used for filter bounds only: `.000500+0000` sorts between `.000+0000` and
    `.001+0000` because `+` sorts before every digit, so comparisons with the
    stored millisecond strings stay exact.
    """
    value = value.astimezone(UTC) if value.tzinfo is not None else value
    if value.microsecond % 1000 == 0:
        return format_datetime(value)
    return f"{_ymd_hms(value)}.{value.microsecond:06d}+0000"


def format_date(value: date) -> str:
    """The REST form of a date, always with a four-digit year (`0001-01-01`)."""
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


def parse_datetime(text: str) -> datetime:
    """Parse the ISO-8601 forms Salesforce accepts into an aware UTC datetime.

    Accepts `Z`, `+hhmm`, `+hh:mm`, no seconds, 1-9 fraction digits (beyond
    microseconds they are dropped) and no zone at all (read as UTC).
    Raises ValueError for anything else.
    """
    match = _DATETIME.match(text.strip())
    if not match:
        raise ValueError(f"not a datetime: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    parsed = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro
    )
    offset = timedelta(0)
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return (parsed - offset).replace(tzinfo=UTC)


def parse_date(text: str) -> date:
    """Parse `YYYY-MM-DD`; raises ValueError otherwise."""
    match = _DATE.match(text.strip())
    if not match:
        raise ValueError(f"not a date: {text!r}")
    return date(int(match[1]), int(match[2]), int(match[3]))


def truncate_to_minute(value: datetime) -> datetime:
    """Replication windows (`updated`/`deleted`) work in whole minutes."""
    return value.replace(second=0, microsecond=0)


def utc_now() -> datetime:
    """The default clock; the sandbox takes the clock as a parameter."""
    return datetime.now(UTC)
