"""The sync engine: one tenant object from a connector into the warehouse.

It owns the commit discipline that makes syncs resumable (F4): records are
buffered until the connector yields a checkpoint, and the buffer and the
checkpoint's state are written in one warehouse transaction. A buffer that
grows past `batch_size` is flushed without moving the state, which is always
safe: upserts are idempotent (F2), so replaying them after a crash is harmless.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from accrue.warehouse import Warehouse
from connectors.base import Checkpoint, Connector, Delete, Upsert

ProgressFn = Callable[[str], None]


@dataclass
class SyncResult:
    tenant_id: str
    object_name: str
    records_read: int = 0
    upserted: int = 0
    deleted: int = 0
    skipped_stale: int = 0
    checkpoints: int = 0
    state: Mapping[str, Any] | None = None
    duration_seconds: float = 0.0
    write_seconds: float = 0.0  # time inside warehouse transactions (the rest is the source)
    sync_run_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, Any]:
        """Figures for logs and materialization metadata (never credentials)."""
        data = asdict(self)
        data.pop("extra")
        data["cursor"] = (self.state or {}).get("cursor")
        data.pop("state")
        return data


def sync_object(
    warehouse: Warehouse,
    connector: Connector,
    tenant_id: str,
    object_name: str,
    *,
    batch_size: int = 2000,
    progress: ProgressFn | None = None,
    progress_every_seconds: float = 10.0,
    run_id: str | None = None,
) -> SyncResult:
    """Read `object_name` incrementally from its saved state and commit it page by page."""
    result = SyncResult(tenant_id, object_name)
    started = time.monotonic()
    last_report = started
    state = warehouse.get_state(tenant_id, object_name)
    result.sync_run_id = warehouse.start_run(tenant_id, object_name, run_id=run_id)
    buffer: list[Upsert | Delete] = []

    def flush(new_state: Mapping[str, Any] | None) -> None:
        began = time.monotonic()
        stats = warehouse.apply(tenant_id, object_name, buffer, new_state)
        result.write_seconds += time.monotonic() - began
        result.upserted += stats.upserted
        result.deleted += stats.deleted
        result.skipped_stale += stats.skipped_stale
        buffer.clear()

    try:
        for change in connector.read(object_name, state):
            if isinstance(change, Checkpoint):
                flush(change.state)
                result.checkpoints += 1
                result.state = change.state
                now = time.monotonic()
                if progress and now - last_report >= progress_every_seconds:
                    last_report = now
                    progress(_progress_line(result, now - started))
                continue
            buffer.append(change)
            result.records_read += 1
            if len(buffer) >= batch_size:
                flush(None)
        if buffer:
            flush(None)
    except BaseException as exc:
        result.duration_seconds = time.monotonic() - started
        warehouse.finish_run(
            result.sync_run_id, "failed", result.as_metadata(), error=_error_text(exc)
        )
        raise
    result.duration_seconds = time.monotonic() - started
    warehouse.finish_run(result.sync_run_id, "succeeded", result.as_metadata())
    if progress:
        progress(_progress_line(result, result.duration_seconds, done=True))
    return result


def _progress_line(result: SyncResult, elapsed: float, *, done: bool = False) -> str:
    rate = result.records_read / elapsed if elapsed > 0 else 0.0
    cursor = (result.state or {}).get("cursor")
    verb = "synced" if done else "syncing"
    return (
        f"{result.tenant_id}/{result.object_name}: {verb} {result.records_read:,} records "
        f"({result.upserted:,} upserted, {result.deleted:,} deleted) in {elapsed:.1f}s "
        f"[{rate:,.0f}/s], cursor {cursor}"
    )


def _error_text(exc: BaseException) -> str:
    """What a person reads about a failed sync: the error kind and message, nothing more."""
    kind = getattr(exc, "kind", None)
    prefix = f"[{kind}] " if kind else ""
    hint = getattr(exc, "hint", None)
    return f"{prefix}{type(exc).__name__}: {exc}" + (f" — {hint}" if hint else "")
