"""What every part of `Warehouse` shares: the engine, and how many ids one statement takes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy.engine import Engine

from accrue.db import dialect_insert
from accrue.warehouse.bulk_write import BulkWriter

DEFAULT_BATCH_ROWS = 500
# Told after each `apply` committed: (tenant id, object, the page's changes).
CommitObserver = Callable[[str, str, Sequence[Any]], None]
IDS_PER_STATEMENT = 5_000  # ids per IN list or batched UPDATE


def _bind_parameter_limit(dialect_name: str) -> int:
    """Most bound parameters one statement may carry on this backend."""
    if dialect_name == "sqlite":
        # SQLITE_MAX_VARIABLE_NUMBER: 999 before 3.32, 32766 since.
        return 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
    return 65_535  # PostgreSQL wire protocol limit


def batches(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


class WarehouseBase:
    """The engine and the statement helpers the warehouse's parts share."""

    def __init__(self, engine: Engine, *, batch_rows: int = DEFAULT_BATCH_ROWS,
                 on_committed: CommitObserver | None = None):
        """`on_committed` hears of each page once its transaction committed (never of
        one rolled back): e.g. a journal of what is durably stored."""
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        self.engine = engine
        # Kept for callers: the bulk path (bulk_write.py) sends a page's rows in one
        # driver call (executemany, COPY), which no bind-parameter limit bounds.
        self.batch_rows = batch_rows
        self._insert = dialect_insert(engine.dialect)
        self._param_limit = _bind_parameter_limit(engine.dialect.name)
        self._bulk = BulkWriter(engine.dialect)
        self._on_committed = on_committed
        # (tenant, object) -> whether its last page held only new records (write.py).
        self._all_new: dict[tuple[str, str], bool] = {}

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        return f"Warehouse({url})"

    @property
    def _ids_per_statement(self) -> int:
        """Ids one IN list may carry here (under the bind-parameter limit)."""
        return max(1, min(IDS_PER_STATEMENT, self._param_limit - 16))
