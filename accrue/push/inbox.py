"""The push inbox: pushed batches, validated and committed before they are acknowledged.

The one module that reads or writes `push_inbox`. `parse_batch` checks a batch as a whole
(a batch with any bad record is refused whole, with every problem named); `store` commits
the raw body, the non-secret headers and the received time in one transaction; a replayed
`webhook-id` hits the unique key (tenant, webhook-id), never a check-then-insert, and gets
the first receipt back. The push feed (accrue.push.feed) reads stored batches back as a
connector, and the sync engine applies them to the crm_* tables like a CRM's records.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue.db import dialect_insert
from accrue.schema import push_inbox, tenant, utcnow
from connectors.common_model import COMMON_OBJECTS, ID_LENGTH

MAX_RECORDS = 1000
ACTIONS: tuple[str, ...] = ("create", "update", "delete")
RECORD_KEYS = frozenset({"object", "id", "action", "data", "occurred_at"})
WEBHOOK_ID_MAX = 255
# The first key of the advisory lock that gives a tenant's inserts their turn (PostgreSQL);
# the second is the tenant id's hash (two tenants sharing a hash only wait for each other).
PUSH_LOCK_CLASS = 0x50555348 & 0x7FFFFFFF  # "PUSH"
# Headers kept with a batch: what helps to trace it, never the signature or a secret.
KEPT_HEADERS: tuple[str, ...] = (
    "webhook-id", "webhook-timestamp", "accrue-client-id", "content-type", "user-agent",
    "content-length",
)


@dataclass
class BatchError(ValueError):
    """A batch refused whole: `message` for the batch, `errors` per bad record."""

    message: str
    errors: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message

    def as_json(self) -> dict[str, Any]:
        return {"error": "invalid_batch", "message": self.message, "errors": self.errors}


@dataclass(frozen=True)
class Receipt:
    id: int
    duplicate: bool  # the webhook-id was stored before: this is the first receipt


@dataclass(frozen=True)
class InboxRow:
    id: int
    received_at: datetime
    body: str

    @functools.cached_property
    def records(self) -> list[Any]:
        """The batch's records, parsed when first asked (a reader may skip a batch unread)."""
        document = json.loads(self.body)
        records = document.get("records") if isinstance(document, dict) else document
        return list(records or [])


def parse_occurred_at(value: object) -> datetime:
    """An `occurred_at`: ISO 8601 with a time zone (else its instant is a guess)."""
    if not isinstance(value, str):
        raise ValueError("occurred_at must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"occurred_at {value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"occurred_at {value!r} has no time zone (add Z or +00:00)")
    return parsed


def record_problems(record: object) -> list[str]:
    """Why a pushed record cannot be accepted (empty: it can)."""
    if not isinstance(record, dict):
        return [f"a record must be a JSON object, got {type(record).__name__}"]
    problems: list[str] = []
    unknown = sorted(set(record) - RECORD_KEYS)
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)}; a record has "
                        f"{', '.join(sorted(RECORD_KEYS))}")
    obj = record.get("object")
    if obj is None:
        problems.append("missing object")
    elif obj not in COMMON_OBJECTS:
        problems.append(f"unknown object {obj!r}; use one of {', '.join(COMMON_OBJECTS)}")
    source_id = record.get("id")
    if source_id is None or source_id == "":
        problems.append("missing id")
    elif isinstance(source_id, bool) or not isinstance(source_id, str | int):
        problems.append("id must be a string or an integer")
    elif len(str(source_id)) > ID_LENGTH:
        problems.append(f"id is {len(str(source_id))} characters long; at most {ID_LENGTH}")
    action = record.get("action")
    if action is None:
        problems.append("missing action")
    elif action not in ACTIONS:
        problems.append(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    data = record.get("data")
    if action in ("create", "update") and data is None:
        problems.append(f"missing data (a {action} carries the record's fields)")
    elif data is not None and not isinstance(data, dict):
        problems.append(f"data must be a JSON object, got {type(data).__name__}")
    if record.get("occurred_at") is not None:
        try:
            parse_occurred_at(record["occurred_at"])
        except ValueError as exc:
            problems.append(str(exc))
    return problems


def parse_batch(body: bytes) -> list[dict[str, Any]]:
    """The records of a pushed body, or BatchError naming every bad record and why.

    The body is a JSON array of records, or an object `{"records": [...]}`.
    """
    try:
        document = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BatchError("the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BatchError(f"the body is not valid JSON: {exc}") from None
    records = document.get("records") if isinstance(document, dict) else document
    if not isinstance(records, list):
        raise BatchError('the body must be a JSON array of records or {"records": [...]}')
    if not records:
        raise BatchError("the batch is empty: send at least one record")
    if len(records) > MAX_RECORDS:
        raise BatchError(f"the batch has {len(records)} records; at most {MAX_RECORDS} per "
                         "request: split it")
    errors = []
    for index, record in enumerate(records):
        problems = record_problems(record)
        if problems:
            entry: dict[str, Any] = {"index": index, "problems": problems}
            if isinstance(record, dict) and isinstance(record.get("id"), str | int):
                entry["id"] = record["id"]
            errors.append(entry)
    if errors:
        raise BatchError(f"{len(errors)} of {len(records)} record(s) are invalid; nothing of "
                         "this batch was stored: fix them and send the batch again", errors)
    return records


def unmapped_fields(records: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Per object, the data fields that are no common-model column: stored in `raw` only."""
    found: dict[str, set[str]] = {}
    for record in records:
        data = record.get("data")
        if isinstance(data, dict):
            columns = {c.name for c in COMMON_OBJECTS[record["object"]]}
            extra = set(data) - columns
            if extra:
                found.setdefault(record["object"], set()).update(extra)
    return {name: sorted(fields) for name, fields in sorted(found.items())}


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    lowered = {k.lower(): v for k, v in headers.items()}
    return {name: lowered[name] for name in KEPT_HEADERS if name in lowered}


def store(
    engine: Engine,
    tenant_id: str,
    webhook_id: str,
    body: bytes,
    headers: Mapping[str, str],
    record_count: int,
) -> Receipt:
    """Commit a batch (one transaction) and return its receipt; a replay gets the first.

    One insert per tenant at a time, so a tenant's inbox ids become visible in order: the
    push feed (accrue.push.feed) may then trust "every id up to the cursor is applied".
    Without it, id 5 could commit after id 6 was read and be skipped. On PostgreSQL the
    turn is a transaction-level advisory lock on the tenant, taken inside the INSERT before
    its id is drawn and held to the commit: no extra round trip, nothing written to the
    tenant row (a row lock is WAL-logged and waits on any update of the tenant). Elsewhere
    the tenant row is locked (SQLite has one writer at a time anyway).
    """
    insert = dialect_insert(engine.dialect)
    values: dict[str, Any] = {
        "tenant_id": tenant_id, "webhook_id": webhook_id, "received_at": utcnow(),
        "headers": kept_headers(headers), "body": body.decode("utf-8"),
        "record_count": record_count,
    }
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            turn = sa.select(sa.func.pg_advisory_xact_lock(
                PUSH_LOCK_CLASS, sa.func.hashtext(tenant_id))).cte("tenant_turn")
            row = sa.select(*(sa.literal(value, push_inbox.c[name].type)
                              for name, value in values.items())).select_from(turn)
            statement = insert(push_inbox).from_select(list(values), row)
        else:
            # FOR NO KEY UPDATE does not block other tables' foreign keys to the tenant row.
            conn.execute(sa.select(tenant.c.id).where(tenant.c.id == tenant_id)
                         .with_for_update(key_share=True))
            statement = insert(push_inbox).values(**values)
        new_id = conn.execute(
            statement.on_conflict_do_nothing(index_elements=["tenant_id", "webhook_id"])
            .returning(push_inbox.c.id)
        ).scalar_one_or_none()
        if new_id is not None:
            return Receipt(int(new_id), duplicate=False)
        first = conn.execute(
            sa.select(push_inbox.c.id).where(push_inbox.c.tenant_id == tenant_id,
                                             push_inbox.c.webhook_id == webhook_id)
        ).scalar_one()
    return Receipt(int(first), duplicate=True)


def last_id(engine: Engine, tenant_id: str) -> int:
    """The tenant's newest inbox id (0: none): a read stops there, later batches wait."""
    with engine.connect() as conn:
        found = conn.execute(sa.select(sa.func.max(push_inbox.c.id))
                             .where(push_inbox.c.tenant_id == tenant_id)).scalar_one()
    return int(found or 0)


def batches_after(engine: Engine, tenant_id: str, after_id: int, up_to: int,
                  limit: int) -> list[InboxRow]:
    """The tenant's batches with `after_id` < id <= `up_to`, in arrival order, at most
    `limit`. Ids of one tenant become visible in order (see `store`), so "every batch up to
    a cursor" is a stable set."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(push_inbox.c.id, push_inbox.c.received_at, push_inbox.c.body)
            .where(push_inbox.c.tenant_id == tenant_id, push_inbox.c.id > after_id,
                   push_inbox.c.id <= up_to)
            .order_by(push_inbox.c.id)
            .limit(limit)
        ).all()
    return [InboxRow(int(row_id), received_at, body) for row_id, received_at, body in rows]


def mark_processed_through(engine: Engine, tenant_id: str, through_id: int) -> int:
    """Mark the tenant's batches up to `through_id` applied (every object's cursor passed
    them); returns how many were newly marked."""
    if through_id < 1:
        return 0
    with engine.begin() as conn:
        return conn.execute(
            sa.update(push_inbox)
            .where(push_inbox.c.tenant_id == tenant_id, push_inbox.c.id <= through_id,
                   push_inbox.c.processed_at.is_(None))
            .values(processed_at=utcnow())
        ).rowcount


def delete_expired(engine: Engine, tenant_id: str, processed_before: datetime) -> int:
    """Retention: delete the tenant's batches applied before `processed_before`.

    Only applied batches go (a batch waiting to be applied is kept however old). Deleting
    a batch also forgets its `webhook-id`, which is safe after the retention: see
    accrue.config.push_inbox_retention_days.
    """
    with engine.begin() as conn:
        return conn.execute(
            sa.delete(push_inbox)
            .where(push_inbox.c.tenant_id == tenant_id,
                   push_inbox.c.processed_at.is_not(None),
                   push_inbox.c.processed_at < processed_before)
        ).rowcount


# What erasure empties here (accrue.erasure).
TENANT_TABLES: tuple[sa.Table, ...] = (push_inbox,)


def delete_tenant(engine: Engine, tenant_id: str) -> dict[str, int]:
    """Erasure: every batch the tenant pushed (raw bodies are its data), applied or not."""
    with engine.begin() as conn:
        deleted = conn.execute(sa.delete(push_inbox).where(push_inbox.c.tenant_id == tenant_id))
    return {push_inbox.name: int(deleted.rowcount or 0)}


def pending_count(engine: Engine, tenant_id: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(
            sa.select(sa.func.count()).select_from(push_inbox)
            .where(push_inbox.c.tenant_id == tenant_id, push_inbox.c.processed_at.is_(None))
        ).scalar_one())


# -- reading, for the admin's pages (onboarding_app) ------------------------------------


@dataclass(frozen=True)
class BatchSummary:
    """One stored batch as the admin sees it: never its body or headers."""

    id: int
    webhook_id: str
    received_at: datetime
    record_count: int
    processed_at: datetime | None


@dataclass(frozen=True)
class InboxTotals:
    batches: int
    records: int
    last_received_at: datetime | None


def recent_batches(engine: Engine, tenant_id: str, limit: int = 20) -> list[BatchSummary]:
    """The tenant's latest batches, newest first (a replay is not stored, so not listed)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(push_inbox.c.id, push_inbox.c.webhook_id, push_inbox.c.received_at,
                      push_inbox.c.record_count, push_inbox.c.processed_at)
            .where(push_inbox.c.tenant_id == tenant_id)
            .order_by(push_inbox.c.id.desc())
            .limit(limit)
        ).all()
    return [BatchSummary(int(r[0]), r[1], r[2], int(r[3]), r[4]) for r in rows]


def totals(engine: Engine, tenant_id: str) -> InboxTotals:
    """How much the tenant has pushed: batches, records, and when the last one arrived."""
    with engine.connect() as conn:
        batches, records, last = conn.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(push_inbox.c.record_count), 0),
                      sa.func.max(push_inbox.c.received_at))
            .where(push_inbox.c.tenant_id == tenant_id)
        ).one()
    return InboxTotals(int(batches), int(records), last)
