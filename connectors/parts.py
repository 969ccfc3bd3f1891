"""An object read from several parts of the source, with one state and one checkpoint
stream: Salesforce's activities (Task and Event), Close's (calls, e-mails, meetings and
tasks), NetSuite's. CRM-neutral: each adapter passes a reader for one part."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any

from connectors.base import Change, Checkpoint, LiveIds

PartReader = Callable[[str, Mapping[str, Any] | None],
                      Generator[Change, None, tuple[bool, dict[str, Any]]]]


def combined_state(parts: Mapping[str, Mapping[str, Any]], parts_order: Sequence[str],
                   reconcile_pending: bool) -> dict[str, Any]:
    """One state for the object: each part's own, plus what the sync engine reads.

    `cursor` is the earliest part's (None until every part has one), `fields` every
    part's fields as `<part>.<field>`, so a new field in any part is reported as drift.
    `reconcile_pending` survives a crash between a part that found its delete log
    incomplete and the id reconciliation that the whole object then owes.
    """
    cursors = [parts.get(s, {}).get("cursor") for s in parts_order]
    state: dict[str, Any] = {
        "parts": {name: dict(part) for name, part in parts.items()},
        "cursor": min(c for c in cursors if c) if all(cursors) else None,
        "fields": sorted(f"{name}.{f}" for name, part in parts.items()
                         for f in part.get("fields", [])),
    }
    if reconcile_pending:
        state["reconcile_pending"] = True
    return state


def read_parts(read_part: PartReader, live_ids: Callable[[], LiveIds], parts_order: Sequence[str],
               state: Mapping[str, Any] | None, *, reconcile: bool = False) -> Iterator[Change]:
    """Read each part in turn, every checkpoint covering the parts read so far.

    One `LiveIds` for the whole object, if any part needs it, just before the last
    checkpoint: a part's ids alone would flag the other part's rows as deleted.
    """
    parts = {name: dict(part) for name, part in ((state or {}).get("parts") or {}).items()}
    pending = reconcile or bool((state or {}).get("reconcile_pending"))
    for index, part in enumerate(parts_order):
        inner = read_part(part, parts.get(part))
        while True:
            try:
                change = next(inner)
            except StopIteration as done:
                covered, final = done.value
                break
            if isinstance(change, Checkpoint):
                change = Checkpoint(combined_state({**parts, part: change.state}, parts_order,
                                                   pending))
            yield change
        parts[part] = final
        pending = pending or not covered
        if index < len(parts_order) - 1:
            yield Checkpoint(combined_state(parts, parts_order, pending))
    if pending:
        yield live_ids()
    yield Checkpoint(combined_state(parts, parts_order, False))
