"""Rows of one table a column at a time: what a sorted page hands the bulk path.

Why columns: the driver takes each column's values spelled in one pass (`BulkWriter`),
and a page sorted a column at a time (`page_columns`) then never builds a dict per row
only for the writer to take it apart again (issue 15).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import compress
from operator import itemgetter, not_
from typing import Any


class Rows:
    """Rows of one table: `names` and, in the same order, each column's values."""

    __slots__ = ("names", "columns")

    def __init__(self, names: Sequence[str], columns: Sequence[list[Any]]) -> None:
        if len(names) != len(columns) or len({len(c) for c in columns}) > 1:
            raise ValueError("Rows: one column per name, all of one length")
        self.names = tuple(names)
        self.columns = list(columns)

    @classmethod
    def of(cls, rows: Sequence[Mapping[str, Any]]) -> Rows:
        """Dict rows with the first one's keys (the rule-book page's rows share theirs)."""
        if not rows:
            return cls((), [])
        names = tuple(rows[0])
        return cls(names, [list(map(itemgetter(name), rows)) for name in names])

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def __getitem__(self, name: str) -> list[Any]:
        return self.columns[self.names.index(name)]

    def partition(self, mask: Sequence[bool]) -> tuple[Rows, Rows]:
        """(the rows where `mask` is true, the others), each in its given order."""
        empty = Rows(self.names, [[] for _ in self.names])
        if all(mask):
            return self, empty
        if not any(mask):
            return empty, self
        others = list(map(not_, mask))
        return (Rows(self.names, [list(compress(c, mask)) for c in self.columns]),
                Rows(self.names, [list(compress(c, others)) for c in self.columns]))

    def dicts(self) -> list[dict[str, Any]]:
        """One dict per row (for readers and tests, not for the hot path)."""
        return [dict(zip(self.names, row, strict=True)) for row in zip(*self.columns, strict=True)]
