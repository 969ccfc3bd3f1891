"""The replication feeds: `sobjects/{T}/updated` and `sobjects/{T}/deleted`, windows of at
most 30 days, minute-truncated and capped at the org's clock, as Salesforce answers them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .config import ORG_EPOCH
from .errors import ApiError
from .values import format_datetime, parse_datetime, truncate_to_minute

if TYPE_CHECKING:
    from .sandbox import SalesforceSandbox

MAX_REPLICATION_WINDOW = timedelta(days=30)


def _window(sandbox: SalesforceSandbox, start: str, end: str) -> tuple[datetime, datetime]:
    try:
        # An unencoded '+' arrives as a space.
        low = truncate_to_minute(parse_datetime(start.replace(" ", "+")))
        high = truncate_to_minute(parse_datetime(end.replace(" ", "+")))
    except ValueError:
        raise ApiError(400, "INVALID_REPLICATION_DATE",
                       "start and end must be ISO-8601 datetimes with a time zone") from None
    if high <= low:
        raise ApiError(400, "INVALID_REPLICATION_DATE",
                       "The end date must be after the start date")
    if high - low > MAX_REPLICATION_WINDOW:
        raise ApiError(400, "INVALID_REPLICATION_DATE",
                       "The time span between start and end may not exceed 30 days")
    return low, min(high, truncate_to_minute(sandbox.now()))


def _replicated(sandbox: SalesforceSandbox, sobject: str) -> Any:
    obj = sandbox.schema.require(sobject)
    if not obj.replicateable:
        raise ApiError(400, "INVALID_TYPE",
                       f"sObject type '{obj.name}' does not support replication")
    return obj


def updated(sandbox: SalesforceSandbox, sobject: str, start: str, end: str) -> dict[str, Any]:
    """`sobjects/{T}/updated`: live records whose SystemModstamp is in the window."""
    obj = _replicated(sandbox, sobject)
    low, latest = _window(sandbox, start, end)
    with sandbox.store.connection() as conn:
        ids = [r[0] for r in conn.execute(
            f'SELECT Id FROM "{obj.table}" WHERE SystemModstamp >= ? AND SystemModstamp < ? '
            "AND IsDeleted = 0 ORDER BY Id",
            (format_datetime(low), format_datetime(latest)))]
    return {"ids": ids, "latestDateCovered": format_datetime(latest)}


def deleted(sandbox: SalesforceSandbox, sobject: str, start: str, end: str) -> dict[str, Any]:
    """`sobjects/{T}/deleted`: recycle-bin entries deleted in the window."""
    obj = _replicated(sandbox, sobject)
    low, latest = _window(sandbox, start, end)
    with sandbox.store.connection() as conn:
        rows = conn.execute(
            f'SELECT Id, DeletedDate FROM "{obj.table}" WHERE IsDeleted = 1 '
            "AND DeletedDate >= ? AND DeletedDate < ? ORDER BY DeletedDate, Id",
            (format_datetime(low), format_datetime(latest))).fetchall()
        earliest = sandbox.store.meta_get(conn, f"earliest_deleted:{obj.name}") or ORG_EPOCH
    return {
        "deletedRecords": [{"id": r[0], "deletedDate": r[1]} for r in rows],
        "earliestDateAvailable": earliest,
        "latestDateCovered": format_datetime(latest),
    }
