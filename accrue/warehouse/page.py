"""One `apply` call sorted into what to write, before any transaction opens.

Per record the newest version wins the row; every version is logged once; what cannot
be stored faithfully is set aside for quarantine with its reason.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from accrue.warehouse.bulk_write import dumps
from accrue.warehouse.page_columns import PlainPage, plain_page
from accrue.warehouse.rows import Rows
from accrue.warehouse.shared_history import fields_json
from accrue.warehouse.values import (
    UnstorableValue,
    _clean_reason,
    _raw_text,
    _RowBuilder,
    _text_problem,
    _utc,
    json_text,
)
from connectors.base import Delete, LiveIds, Quarantine, Upsert
from connectors.common_model import ID_LENGTH

PageChange = Upsert | Delete | Quarantine | LiveIds  # what `apply` takes


def sort_page(tenant_id: str, object_name: str, now: datetime, sync_run_id: int | None,
              changes: Iterable[PageChange]) -> _Page | PlainPage:
    """The page a column at a time when its changes are all plain upserts of distinct
    records (`page_columns`, most pages of a load), else one change at a time (`_Page`,
    the rule book)."""
    changes = changes if isinstance(changes, list) else list(changes)
    plain = plain_page(tenant_id, object_name, now, sync_run_id, changes)
    if plain is not None:
        return plain
    page = _Page(tenant_id, object_name, now, sync_run_id)
    for change in changes:
        page.add(change)
    return page


def _stamp(change: Upsert | Delete) -> datetime:
    upsert = isinstance(change, Upsert)
    value = change.modified_at if upsert else change.deleted_at  # type: ignore[union-attr]
    if type(value) is datetime and value.tzinfo is UTC:  # what connectors send: as it is
        return value
    what = "modified_at" if upsert else "deleted_at"
    return _utc(value, f"{what} of record {change.source_id!r}")


def _source_id_problem(source_id: object) -> str | None:
    """None for an id the key can hold; raises for what no CRM sends (a connector bug)."""
    if not isinstance(source_id, str) or not source_id:
        raise ValueError(f"invalid source_id {source_id!r}: expected a non-empty string")
    problem = _text_problem(source_id)
    if problem:
        return problem
    if len(source_id) > ID_LENGTH:
        return f"{len(source_id)} characters, the column holds {ID_LENGTH}"
    return None


class _Page:
    """One `apply` call sorted into what to write, before any transaction opens."""

    def __init__(
        self, tenant_id: str, object_name: str, now: datetime, sync_run_id: int | None
    ) -> None:
        self.tenant_id = tenant_id
        self.object_name = object_name
        self.now = now
        self.sync_run_id = sync_run_id
        self.builder = _RowBuilder(object_name)
        self.records = 0
        self.bare_deletes = 0  # deletions kept from soft-deleted records that were quarantined
        # The newest change per record (on a tie the later one: a re-read of the same
        # version is at least as fresh). One INSERT ... ON CONFLICT may not touch a row twice.
        self.winners: dict[str, tuple[datetime, dict[str, Any]]] = {}
        self.log: dict[tuple[str, datetime, bool], dict[str, Any]] = {}
        self.quarantine: list[dict[str, Any]] = []
        # Per record, the newest valid version seen: it resolves older quarantine rows.
        self.resolving: dict[str, datetime] = {}
        # Per record, the logged version whose document the winning row carries.
        self.carried: dict[str, tuple[str, datetime, bool]] = {}
        self.live_ids: LiveIds | None = None

    def add(self, change: PageChange) -> None:
        if isinstance(change, LiveIds):
            if self.live_ids is not None:
                raise ValueError("apply() takes at most one LiveIds per call")
            _utc(change.as_of, "LiveIds.as_of")
            if isinstance(change.source_ids, str) or not isinstance(change.source_ids, Collection):
                raise TypeError("LiveIds.source_ids must be a collection of ids")
            self.live_ids = change
        elif isinstance(change, Quarantine):
            self.records += 1
            self._add_quarantined(change)
        elif isinstance(change, Upsert | Delete):
            self.records += 1
            stamp = _stamp(change)
            if isinstance(change, Upsert):
                self._add_upsert(change, stamp)
            else:
                self._add_delete(change, stamp)
        else:
            raise TypeError(
                f"apply() takes Upsert, Delete, Quarantine and LiveIds, got "
                f"{type(change).__name__} (checkpoints are passed as `state`)"
            )

    def _add_upsert(self, change: Upsert, stamp: datetime) -> None:
        source_id = change.source_id
        id_problem = _source_id_problem(source_id)
        if id_problem:
            self._quarantine(None, stamp, f"{self.object_name}.source_id: {id_problem}", change.raw)
            return
        values, problems = self.builder.fields(change.fields)
        try:
            raw = json_text(change.raw)
        except UnstorableValue as exc:
            problems.append(f"{self.object_name}.{exc}")
        deleted = change.is_deleted
        if not isinstance(deleted, bool):  # truthiness would delete on "false": a connector bug
            raise TypeError(f"Upsert.is_deleted of {source_id!r} must be a bool, got "
                            f"{type(deleted).__name__}; map the CRM's flag strictly")
        if problems:
            self._quarantine(source_id, stamp, "; ".join(problems), change.raw)
            if deleted:
                # The deletion itself is a fact to keep: a record must never stay live
                # because its last values could not be stored.
                self.bare_deletes += 1
                self._add_version(source_id, stamp, None, None, True, resolves=False)
            return
        self._add_version(source_id, stamp, values, raw, deleted)

    def _add_delete(self, change: Delete, stamp: datetime) -> None:
        id_problem = _source_id_problem(change.source_id)
        if id_problem:
            raw = {"source_id": change.source_id, "deleted_at": stamp.isoformat()}
            self._quarantine(None, stamp, f"{self.object_name}.source_id: {id_problem}", raw)
            return
        self._add_version(change.source_id, stamp, None, None, True)

    def _add_version(
        self,
        source_id: str,
        stamp: datetime,
        values: dict[str, Any] | None,
        raw: str | None,
        deleted: bool,
        *,
        resolves: bool = True,
    ) -> None:
        """A storable version: `values` None means an id-only delete (a tombstone).

        `resolves`: whether this version supersedes quarantined older ones (not so
        for the bare deletion kept from a soft-deleted record that was quarantined).
        """
        row: dict[str, Any] = {"tenant_id": self.tenant_id, "source_id": source_id}
        if values is not None:
            row.update(values)
            row.update(
                source_modified_at=stamp,
                is_deleted=deleted,
                deleted_at=stamp if deleted else None,
                synced_at=self.now,
                raw=raw,
            )
        else:
            row.update(source_modified_at=stamp, is_deleted=True, deleted_at=stamp)
            row.update(synced_at=self.now)
        key = (source_id, stamp, deleted if values is not None else True)
        previous = self.winners.get(source_id)
        if previous is None or (values is not None and stamp >= previous[0]):
            self.winners[source_id] = (stamp, row)
            self._carry(source_id, key if values is not None else None)
        elif values is None and "raw" in previous[1]:
            # An id-only delete (the CRM's delete log) never replaces a version that
            # carries values: at a tie that version already says it is deleted; a later
            # delete marks it deleted and keeps its values (and carries that document).
            if stamp > previous[0]:
                kept = dict(previous[1])
                kept.update(is_deleted=True, deleted_at=stamp, source_modified_at=stamp)
                self.winners[source_id] = (stamp, kept)
        elif stamp >= previous[0]:
            self.winners[source_id] = (stamp, row)
            self._carry(source_id, None)
        if resolves:
            known = self.resolving.get(source_id)
            if known is None or stamp > known:
                self.resolving[source_id] = stamp
        if values is None and key in self.log:
            return  # an id-only delete adds nothing to a soft-deleted version's values
        self.log[key] = {
            "tenant_id": self.tenant_id,
            "object_name": self.object_name,
            "source_id": source_id,
            "source_modified_at": stamp,
            "is_deleted": key[2],
            # The values' JSON text is spelled in `log_rows`, only for the versions that
            # keep their own copy (most share their row's: `Warehouse._share_raw`).
            "fields": values if values is not None else "{}",
            "raw": raw if values is not None else None,
            "synced_at": self.now,
            "sync_run_id": self.sync_run_id,
            "raw_in_row": False,  # until `Warehouse._share_raw` knows the row takes it
        }

    def _carry(self, source_id: str, key: tuple[str, datetime, bool] | None) -> None:
        if key is None:
            self.carried.pop(source_id, None)
        else:
            self.carried[source_id] = key

    def _add_quarantined(self, change: Quarantine) -> None:
        """A connector's own quarantine: what cannot be keyed or dated is noted, not refused."""
        notes = []
        source_id = change.source_id
        if source_id is not None:
            if not isinstance(source_id, str) or not source_id:
                problem: str | None = f"not a non-empty string ({type(source_id).__name__})"
            else:
                problem = _text_problem(source_id)
                if problem is None and len(source_id) > ID_LENGTH:
                    problem = f"{len(source_id)} characters, the column holds {ID_LENGTH}"
            if problem:
                notes.append(f"source_id not storable: {problem}")
                source_id = None
        stamp = change.modified_at
        if stamp is not None:
            try:
                stamp = _utc(stamp, "modified_at")
            except (TypeError, ValueError) as exc:
                notes.append(str(exc))
                stamp = None
        reason = str(change.reason) + "".join(f" ({note})" for note in notes)
        self._quarantine(source_id, stamp, reason, change.raw)

    def _quarantine(
        self, source_id: str | None, stamp: datetime | None, reason: str, raw: Any
    ) -> None:
        self.quarantine.append(
            {
                "tenant_id": self.tenant_id,
                "object_name": self.object_name,
                "source_id": source_id,
                "source_modified_at": stamp,
                "reason": _clean_reason(reason),
                "raw_text": _raw_text(raw),
                "first_seen_at": self.now,
                "last_seen_at": self.now,
                "attempts": 1,
            }
        )

    def share(self, stored: Mapping[str, datetime]) -> list[str]:
        """Mark the versions whose document their row takes (not older than the stored
        row: the upsert's own rule); returns the records whose stored row they replace.
        `stored`: each carried record's stored stamp, when the table holds it."""
        replaced = []
        for source_id, key in self.carried.items():
            old = stored.get(source_id)
            stamp, row = self.winners[source_id]
            if old is not None and stamp < old:
                continue  # stale: the row keeps its version and document
            if old is not None:
                replaced.append(source_id)
            # The same version logged again in the page with another document: the log
            # keeps that one (the row the first), so this version keeps its own copy.
            if self.log[key]["raw"] is row["raw"]:
                self.log[key].update(raw=None, fields=None, raw_in_row=True)
        return replaced

    def rows(self) -> tuple[Rows, Rows, Rows]:
        """The winners as (live, soft-deleted, tombstone) rows, in a stable (lock) order."""
        live: list[dict[str, Any]] = []
        soft_deleted: list[dict[str, Any]] = []
        tombstones: list[dict[str, Any]] = []
        for source_id in sorted(self.winners):
            row = self.winners[source_id][1]
            if "raw" not in row:
                tombstones.append(row)
            elif row["is_deleted"]:
                soft_deleted.append(row)
            else:
                live.append(row)
        return Rows.of(live), Rows.of(soft_deleted), Rows.of(tombstones)

    def log_rows(self) -> Rows:
        """The change-log rows, `fields` as JSON text (or NULL when the row holds them)."""
        rows = []
        for key in sorted(self.log):
            row = self.log[key]
            if isinstance(row["fields"], dict):
                row["fields"] = dumps(fields_json(row["fields"]))
            rows.append(row)
        return Rows.of(rows)


SortedPage = _Page | PlainPage  # what `apply` writes


def _not_older(new: datetime | None, old: datetime | None) -> bool:
    """Newest wins; an unknown stamp counts as new (it is what the connector sent last)."""
    return new is None or old is None or new >= old
