"""A page of plain upserts sorted a column at a time (issue 15).

Why: sorting a page record by record (`_Page.add`: the id's checks, each value's type
and fit, the walk before orjson, two dicts per version) cost ~17 µs a record, the
largest part of an initial load's engine time; on 2 cores that time is not shared
with the reader, it adds to it. Most pages of a load have one shape: upserts of
distinct records whose values already are their columns' exact types and plainly fit.
Here that is checked a column at a time, in loops that run in C (the set of a column's
types, one join of a text column, one `fsum` of a float column), and the page is
sorted into the very rows, versions and indexes `_Page.add` would make.

The per-record way stays the rule book: a page with a delete, a quarantine, a
`LiveIds`, a record twice, or one value that needs coercing or might not fit (or that
only the careful JSON walk can judge) is handed back whole, and `_Page.add` decides
each record as before. `test_page_columns.py` holds both ways to the same page.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from datetime import date, datetime
from functools import partial
from itertools import chain, repeat
from typing import Any, TypeVar

import orjson

from accrue.warehouse.bulk_write import ORJSON_NUL, ORJSON_OPTIONS, all_utc, dumps
from accrue.warehouse.rows import Rows
from accrue.warehouse.shared_history import fields_json
from accrue.warehouse.values import FLOAT_LIMIT, INT64_MAX, INT64_MIN, _RowBuilder
from connectors.base import Upsert
from connectors.common_model import ID_LENGTH

_NONE = type(None)
# A column kind -> the value types its row takes as they are (an int in a float column
# becomes the same float: within FLOAT_LIMIT, below 2**53, so exactly).
_TAKEN: dict[str, frozenset[type]] = {
    "str": frozenset({str}), "int": frozenset({int}), "float": frozenset({float, int}),
    "bool": frozenset({bool}), "datetime": frozenset({datetime}), "date": frozenset({date}),
}
# What a document may hold for orjson to spell it as the careful walk would.
_PLAIN = frozenset({str, int, bool, _NONE, float, dict, list})
_ENCODE = partial(orjson.dumps, option=ORJSON_OPTIONS)  # no default: what it cannot, refused


def _finite_within(numbers: list[Any], limit: float) -> bool:
    """No NaN, no infinity, none beyond `limit` in magnitude. NaN is looked for first
    (min and max are meaningless with one), then the extremes are compared with a
    finite bound (`fsum`, used before, overflows on large finite values and refused
    them)."""
    if any(map(math.isnan, numbers)):
        return False
    bound = min(limit, sys.float_info.max)
    return bool(-bound <= min(numbers) and max(numbers) <= bound)


def _column(kind: str, limit: int, values: list[Any]) -> list[Any] | None:
    """The column's values as `_RowBuilder.fields` would take each of them as it is, or
    None when one of them would need its coercer (or might not fit)."""
    kinds = set(map(type, values))
    present = [v for v in values if v is not None] if _NONE in kinds else values
    kinds.discard(_NONE)
    if not kinds:
        return values
    if not kinds <= _TAKEN[kind]:
        return None
    if kind == "str":
        joined = "".join(present)
        if not joined.isascii() or "\x00" in joined or max(map(len, present)) > limit:
            return None
    elif kind == "float":
        if not _finite_within(present, FLOAT_LIMIT):
            return None
        if int in kinds:
            return [float(v) if type(v) is int else v for v in values]
    elif kind == "int":
        if min(present) < INT64_MIN or max(present) > INT64_MAX:
            return None
    elif kind == "datetime" and not all_utc(present):
        return None
    return values


def _plain_documents(documents: list[dict[str, Any]]) -> bool:
    """Whether the documents hold only strings, integers, booleans, None, finite floats
    and dicts and lists of them: what orjson spells as `to_json` does (NUL excepted,
    looked for in the text). One level of every document at a time."""
    dicts: list[dict[str, Any]] = documents
    lists: list[list[Any]] = []
    while dicts or lists:
        values = list(chain(chain.from_iterable(map(dict.values, dicts)),
                            chain.from_iterable(lists)))
        kinds = set(map(type, values))
        if not kinds <= _PLAIN:
            return False
        if float in kinds and not _finite_within(
                [v for v in values if type(v) is float], math.inf):
            return False
        dicts = [v for v in values if type(v) is dict] if dict in kinds else []
        lists = [v for v in values if type(v) is list] if list in kinds else []
    return True


def _json_texts(documents: list[dict[str, Any]]) -> list[str] | None:
    """Each document's JSON text (orjson, as `json_text`'s fast way), or None."""
    if not _plain_documents(documents):
        return None
    try:  # keys that are not strings, lone surrogates, integers beyond 64 bits
        texts = list(map(bytes.decode, map(_ENCODE, documents)))
    except TypeError:  # orjson.JSONEncodeError
        return None
    if any(map(str.__contains__, texts, repeat(ORJSON_NUL))):
        return None
    return texts


T = TypeVar("T")


def _ordered(values: list[T], order: list[int]) -> list[T]:
    return list(map(values.__getitem__, order))


class PlainPage:
    """A page of plain upserts of distinct records, held a column at a time in id order
    (the lock order): what `_Page` would hold for it, without a dict per version."""

    bare_deletes = 0
    live_ids = None

    def __init__(self, tenant_id: str, object_name: str, now: datetime, sync_run_id: int | None,
                 ids: list[str], stamps: list[datetime], deleted: list[bool],
                 names: list[str], columns: list[list[Any]], texts: list[str]) -> None:
        self.tenant_id = tenant_id
        self.object_name = object_name
        self.now = now
        self.sync_run_id = sync_run_id
        self.records = len(ids)
        self.quarantine: list[dict[str, Any]] = []
        order = sorted(range(len(ids)), key=ids.__getitem__)
        self.ids = _ordered(ids, order)
        self.stamps = _ordered(stamps, order)
        self.deleted = _ordered(deleted, order)
        self.texts = _ordered(texts, order)
        self.names = names
        self.columns = [_ordered(values, order) for values in columns]
        self.carried = self.ids  # every row takes its one version's document
        self.resolving = dict(zip(self.ids, self.stamps, strict=True))
        self.shared = [False] * len(ids)  # per version: its document is its row's

    def share(self, stored: Mapping[str, datetime]) -> list[str]:
        """As `_Page.share`: each version not older than its stored row shares the row's
        document; returns the records whose stored row it replaces."""
        if not stored:
            self.shared = [True] * len(self.ids)
            return []
        replaced = []
        for index, (source_id, stamp) in enumerate(zip(self.ids, self.stamps, strict=True)):
            old = stored.get(source_id)
            if old is not None and stamp < old:
                continue  # stale: the row keeps its version and document
            if old is not None:
                replaced.append(source_id)
            self.shared[index] = True
        return replaced

    def rows(self) -> tuple[Rows, Rows, Rows]:
        """As `_Page.rows`: (live, soft-deleted, tombstone) rows, in id order."""
        count = len(self.ids)
        names = ("tenant_id", "source_id", *self.names, "source_modified_at", "is_deleted",
                 "deleted_at", "synced_at", "raw")
        deleted_at = [s if d else None for s, d in zip(self.stamps, self.deleted, strict=True)]
        rows = Rows(names, [[self.tenant_id] * count, self.ids, *self.columns, self.stamps,
                            self.deleted, deleted_at, [self.now] * count, self.texts])
        soft_deleted, live = rows.partition(self.deleted)
        return live, soft_deleted, Rows((), [])

    def log_rows(self) -> Rows:
        """As `_Page.log_rows`: one version per record; its document and values only where
        it does not share its row's."""
        count = len(self.ids)
        fields = [None if shared else dumps(fields_json(dict(zip(self.names, values,
                                                                 strict=True))))
                  for shared, values in zip(self.shared, zip(*self.columns, strict=True),
                                            strict=True)]
        raw = [None if shared else text for shared, text in zip(self.shared, self.texts,
                                                               strict=True)]
        return Rows(LOG_NAMES, [
            [self.tenant_id] * count, [self.object_name] * count, self.ids, self.stamps,
            self.deleted, fields, raw, [self.now] * count, [self.sync_run_id] * count,
            list(self.shared)])


LOG_NAMES = ("tenant_id", "object_name", "source_id", "source_modified_at", "is_deleted",
             "fields", "raw", "synced_at", "sync_run_id", "raw_in_row")


def plain_page(tenant_id: str, object_name: str, now: datetime, sync_run_id: int | None,
               changes: list[Any]) -> PlainPage | None:
    """The page a column at a time, or None when its changes are not all plain upserts of
    distinct records (then `_Page.add` decides each one)."""
    count = len(changes)
    if not count or set(map(type, changes)) != {Upsert}:
        return None
    ids = [c.source_id for c in changes]
    if set(map(type, ids)) != {str} or len(set(ids)) != count:
        return None
    joined = "".join(ids)
    if (not joined.isascii() or "\x00" in joined or min(map(len, ids)) < 1
            or max(map(len, ids)) > ID_LENGTH):
        return None
    stamps = [c.modified_at for c in changes]
    deleted = [c.is_deleted for c in changes]
    if set(map(type, stamps)) != {datetime} or not all_utc(stamps) \
            or set(map(type, deleted)) != {bool}:
        return None
    fields = [c.fields for c in changes]
    documents = [c.raw for c in changes]
    if set(map(type, fields)) != {dict} or set(map(type, documents)) != {dict}:
        return None
    names = []
    columns = []
    for name, kind, limit, _coerce in _RowBuilder(object_name).plan:
        column = _column(kind, limit, list(map(dict.get, fields, repeat(name))))
        if column is None:
            return None
        names.append(name)
        columns.append(column)
    texts = _json_texts(documents)
    if texts is None:
        return None
    return PlainPage(tenant_id, object_name, now, sync_run_id, ids, stamps, deleted, names,
                     columns, texts)
