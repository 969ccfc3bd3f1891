"""The sync engine: one tenant object from a connector into the warehouse.

It owns the commit discipline that makes syncs resumable (F4): records are
buffered until the connector yields a checkpoint, and the buffer and the
checkpoint's state are written in one warehouse transaction. A buffer that
grows past `batch_size` is flushed without moving the state, which is always
safe: upserts are idempotent (F2), so replaying them after a crash is harmless.

A sync that reaches the CRM's API budget stops cleanly: what was read is kept,
the run is recorded as `stopped` (never as complete) and the next sync resumes
from the checkpoint.

Reading and writing overlap (issue 15): the connector is read one page ahead of the
writer, in a thread of its own (`ReadAhead`), so the next page's HTTP and parsing run
while the database writes this one. The engine still sees exactly the connector's
sequence of changes, commits them in that order and raises the connector's errors
where they happened; at most one page waits in memory.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any

from accrue.warehouse import Warehouse
from connectors.base import (
    Change,
    Checkpoint,
    Connector,
    Delete,
    LiveIds,
    Quarantine,
    QuotaExceeded,
    Upsert,
)

log = logging.getLogger(__name__)
ProgressFn = Callable[[str], None]
# Quarantined records re-tried per sync (they are few; each gets its own transaction).
MAX_QUARANTINE_RETRIES = 1000
# A load this large may change the table's statistics: refresh them before anyone queries
# it (Warehouse.refresh_statistics decides). Smaller syncs leave it to autovacuum.
STATISTICS_AFTER_ROWS = 200


@dataclass
class SyncResult:
    tenant_id: str
    object_name: str
    records_read: int = 0
    upserted: int = 0
    deleted: int = 0
    skipped_stale: int = 0
    quarantined: int = 0
    quarantine_resolved: int = 0
    checkpoints: int = 0
    complete: bool = True  # False when stopped early (API quota): resume from the state
    stop_reason: str | None = None
    reconciled: bool = False
    new_fields: list[str] = field(default_factory=list)
    removed_fields: list[str] = field(default_factory=list)
    state: Mapping[str, Any] | None = None
    duration_seconds: float = 0.0
    write_seconds: float = 0.0  # time inside warehouse transactions (the rest is the source)
    sync_run_id: int | None = None

    def as_metadata(self) -> dict[str, Any]:
        """Figures for logs and materialization metadata (never credentials)."""
        data = asdict(self)
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
    reconcile: bool = False,
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
    buffer: list[Upsert | Delete | Quarantine | LiveIds] = []

    def flush(new_state: Mapping[str, Any] | None) -> None:
        began = time.monotonic()
        # The page's writes and the ledger's running count commit together (the status
        # page's progress and ETA read the count).
        stats = warehouse.apply(
            tenant_id, object_name, buffer, new_state, sync_run_id=result.sync_run_id,
            records_read=result.records_read,
        )
        result.upserted += stats.upserted
        result.deleted += stats.deleted
        result.skipped_stale += stats.skipped_stale
        result.quarantined += stats.quarantined
        buffer.clear()
        result.write_seconds += time.monotonic() - began

    # A feed's read looks at what the warehouse committed: it must not run ahead of it.
    ahead = 0 if getattr(connector, "reads_warehouse", False) else batch_size
    try:
        result.quarantine_resolved = _retry_quarantine(warehouse, connector, tenant_id,
                                                       object_name, result.sync_run_id)
        with ReadAhead(connector.read(object_name, state, reconcile=reconcile), ahead) as changes:
            for change in changes:
                if isinstance(change, Checkpoint):
                    flush(change.state)
                    result.checkpoints += 1
                    result.state = change.state
                    now = time.monotonic()
                    if progress and now - last_report >= progress_every_seconds:
                        last_report = now
                        progress(_progress_line(result, now - started))
                    continue
                if isinstance(change, LiveIds):
                    flush(None)  # reconcile against everything read so far
                    result.reconciled = True
                else:
                    result.records_read += 1
                buffer.append(change)
                if len(buffer) >= batch_size:
                    flush(None)
        if buffer:
            flush(None)
    except QuotaExceeded as exc:
        if buffer:
            flush(None)
        result.complete = False
        result.stop_reason = f"{exc}" + (f" — {exc.hint}" if exc.hint else "")
        log.warning("%s/%s stopped early: %s", tenant_id, object_name, result.stop_reason)
    except BaseException as exc:
        result.duration_seconds = time.monotonic() - started
        warehouse.finish_run(
            result.sync_run_id, "failed", result.as_metadata(),
            error=_error_text(exc), error_kind=getattr(exc, "kind", "error"),
        )
        raise
    if result.upserted >= STATISTICS_AFTER_ROWS:
        # The checks and the analytics query the table next.
        warehouse.refresh_statistics(object_name, result.upserted)
    result.duration_seconds = time.monotonic() - started
    _report_drift(result, state)
    warehouse.finish_run(
        result.sync_run_id,
        "succeeded" if result.complete else "stopped",
        result.as_metadata(),
        error=result.stop_reason,
        error_kind=None if result.complete else "quota",
    )
    if progress:
        progress(_progress_line(result, result.duration_seconds, done=True))
    return result


class ReadAhead:
    """A connector's changes, read one page ahead of the writer in a thread of its own.

    A page here ends at a checkpoint or after `page_size` changes. The thread reads page
    N+1 while page N is consumed, then waits until N+1 is taken before reading on: memory
    holds at most one page ahead. The consumer gets exactly the sequence the connector
    yields, and an error the connector raised after the changes before it (the same
    exception object, so its type, `kind` and `hint` are unchanged). `page_size` 0 reads
    in the caller's thread, as plain iteration. Leaving the `with` stops the reader (the
    connector's generator is closed in the thread that ran it) and waits for it.
    """

    def __init__(self, changes: Iterable[Change], page_size: int) -> None:
        self._changes = changes
        self._page_size = page_size
        self._pages: queue.SimpleQueue[tuple[list[Change], BaseException | None, bool]] = (
            queue.SimpleQueue())
        self._turn = threading.Semaphore(1)  # one page may be read before it is taken
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Iterator[Change]:
        if self._page_size <= 0:
            return iter(self._changes)
        self._thread = threading.Thread(target=self._read, name="accrue-read-ahead", daemon=True)
        self._thread.start()
        return self._consume()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._thread is not None:
            self._stop.set()
            self._turn.release()  # wake a reader waiting for its turn, so it sees the stop
            self._thread.join()

    def _read(self) -> None:
        changes = iter(self._changes)
        page: list[Change] = []
        try:
            while self._turn.acquire() and not self._stop.is_set():
                page = []
                for change in changes:
                    page.append(change)
                    if (isinstance(change, Checkpoint) or len(page) >= self._page_size
                            or self._stop.is_set()):
                        break
                else:
                    self._pages.put((page, None, True))
                    return
                self._pages.put((page, None, False))
        except BaseException as exc:  # raised to the consumer after the page read before it
            self._pages.put((page, exc, True))
        finally:
            close = getattr(changes, "close", None)
            if close is not None:
                close()

    def _consume(self) -> Iterator[Change]:
        while True:
            page, error, last = self._pages.get()
            self._turn.release()  # the next page is read while this one is written
            yield from page
            if error is not None:
                raise error
            if last:
                return


def record_failed_attempt(
    warehouse: Warehouse, tenant_id: str, object_names: Iterable[str], exc: BaseException,
    *, run_id: str | None = None,
) -> None:
    """A failed sync_run row per object for a sync that failed before it could read them
    (a refused login, an outage at describe): every attempt is on record with its error,
    as `sync_object` records its own failures."""
    for object_name in object_names:
        sync_run_id = warehouse.start_run(tenant_id, object_name, run_id=run_id)
        warehouse.finish_run(sync_run_id, "failed", {}, error=_error_text(exc),
                             error_kind=getattr(exc, "kind", "error"))


def _retry_quarantine(
    warehouse: Warehouse, connector: Connector, tenant_id: str, object_name: str,
    sync_run_id: int | None,
) -> int:
    """Map quarantined records again (the mapping may have been fixed); resolve what now fits.
    What lands is counted in the sync's ledger row, like the pages it reads."""
    resolved = 0
    for row in warehouse.open_quarantine(tenant_id, object_name)[:MAX_QUARANTINE_RETRIES]:
        mapped = connector.map_record(object_name, row["raw"])
        if isinstance(mapped, Quarantine):
            warehouse.record_quarantine_attempt(tenant_id, [row["id"]])
            continue
        stats = warehouse.apply(tenant_id, object_name, [mapped], None, sync_run_id=sync_run_id)
        if stats.quarantined == 0:
            # Landed, or superseded by a newer version already stored: either way resolved.
            resolved += warehouse.resolve_quarantine(tenant_id, [row["id"]])
    return resolved


def _report_drift(result: SyncResult, old_state: Mapping[str, Any] | None) -> None:
    before = set((old_state or {}).get("fields") or [])
    after = set((result.state or {}).get("fields") or [])
    if before and after:
        result.new_fields = sorted(after - before)
        result.removed_fields = sorted(before - after)


def _progress_line(result: SyncResult, elapsed: float, *, done: bool = False) -> str:
    rate = result.records_read / elapsed if elapsed > 0 else 0.0
    cursor = (result.state or {}).get("cursor")
    verb = "synced" if done else "syncing"
    if done and not result.complete:
        verb = "stopped early after"
    return (
        f"{result.tenant_id}/{result.object_name}: {verb} {result.records_read:,} records "
        f"({result.upserted:,} upserted, {result.deleted:,} deleted, "
        f"{result.quarantined:,} quarantined) in {elapsed:.1f}s [{rate:,.0f}/s], cursor {cursor}"
    )


def _error_text(exc: BaseException) -> str:
    """What a person reads about a failed sync: the error kind and message, nothing more."""
    kind = getattr(exc, "kind", None)
    prefix = f"[{kind}] " if kind else ""
    hint = getattr(exc, "hint", None)
    return f"{prefix}{type(exc).__name__}: {exc}" + (f" — {hint}" if hint else "")
