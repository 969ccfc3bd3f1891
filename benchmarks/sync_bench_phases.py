"""The timed phases of `make bench` (benchmarks/sync_bench.py), each run in a child
process of its own so its peak RSS is the sync's alone: the sync itself (initial load,
incremental), timed down to HTTP, JSON, apply and SQL; and the ratios one round's
phases give against the two ceilings (benchmarks/sync_ceilings.py)."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue.db import make_engine, upgrade
from accrue.sync import sync_object
from accrue.warehouse import Warehouse
from benchmarks.support.measure import cpu_seconds, log, peak_rss_mb, rate, ru_maxrss_mb
from benchmarks.support.processes import BenchError, report_result
from benchmarks.sync_ceilings import TENANT, HttpClock, phase_fetch, phase_raw
from benchmarks.sync_ceilings import connector as make_connector
from connectors.common_model import COMMON_OBJECTS

PHASE_TIMEOUT_SECONDS = 3 * 3600
PHASES = ("initial", "raw", "fetch", "incremental")
PHASE_LABELS = {
    "initial": "initial load",
    "raw": "driver-level write",
    "fetch": "fetch only",
    "incremental": "incremental sync",
}



class SqlClock:
    """Times DB-API execute calls and notes PostgreSQL backend pids (for their CPU time).

    `Warehouse.apply` time minus execute time is the Python side of the write path
    (validation, row building, statement construction and compilation).
    """

    def __init__(self, engine: Engine, *, skip_selects: bool = False) -> None:
        self.skip_selects = skip_selects
        self.execute_seconds = 0.0
        self.statements = 0
        self.backend_pids: set[int] = set()
        self._backend_start: dict[int, float] = {}
        self._started = threading.local()
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)
        if engine.dialect.name == "postgresql":
            sa.event.listen(engine, "connect", self._note_backend)

    def _counted(self, statement: str) -> bool:
        return not (self.skip_selects and statement.lstrip()[:6].upper() == "SELECT")

    def _before(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self._started.value = time.perf_counter()

    def _after(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self._counted(statement):
            self.execute_seconds += time.perf_counter() - self._started.value
            self.statements += 1

    def _note_backend(self, dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT pg_backend_pid()")
            self.backend_pids.add(int(cursor.fetchone()[0]))
        finally:
            cursor.close()

    def backend_cpu(self) -> dict[int, float] | None:
        """CPU used so far by each PostgreSQL backend of this engine (None: not visible)."""
        if not self.backend_pids:
            return None
        import psutil

        used = {}
        for pid in self.backend_pids:
            try:
                times = psutil.Process(pid).cpu_times()
            except (psutil.Error, OSError):
                return None  # another host, or not visible: report nothing rather than a guess
            used[pid] = times.user + times.system
        return used

    def start(self) -> None:
        """Mark the start of the timed region (setup such as migrations is excluded)."""
        self.execute_seconds = 0.0
        self.statements = 0
        self._backend_start = self.backend_cpu() or {}

    def backend_cpu_seconds(self, only: int | None = None) -> float | None:
        """PostgreSQL backend CPU since `start` (backends opened later count from zero).

        `only` restricts it to one backend pid, e.g. the writer's and not the reader's.
        """
        now = self.backend_cpu()
        if now is None:
            return None
        return sum(
            cpu - self._backend_start.get(pid, 0.0)
            for pid, cpu in now.items()
            if only is None or pid == only
        )


def phase_sync(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Sync every common object from the saved state (none: initial load) and time it."""
    label = f"[{spec['backend']} {PHASE_LABELS[spec['phase']]}]"
    engine = make_engine(spec["db_url"])
    try:
        sql = SqlClock(engine)
        upgrade(engine)  # a no-op for the incremental phase; outside the timed region
        http = HttpClock()
        warehouse = Warehouse(engine)
        connector = make_connector(spec, http)
        objects: list[dict[str, Any]] = []
        sql.start()
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        try:
            for name in COMMON_OBJECTS:
                result = sync_object(
                    warehouse,
                    connector,
                    TENANT,
                    name,
                    progress=lambda line: log(f"{label} {line}"),
                )
                if not getattr(result, "complete", True):
                    raise BenchError(
                        f"the {name} sync stopped early ({getattr(result, 'stop_reason', '')}): "
                        "its figures would not be a full load"
                    )
                objects.append(
                    {
                        "object": name,
                        "records": result.records_read,
                        "upserted": result.upserted,
                        "deleted": result.deleted,
                        "skipped_stale": result.skipped_stale,
                        "quarantined": getattr(result, "quarantined", 0),
                        "checkpoints": result.checkpoints,
                        "wall_seconds": result.duration_seconds,
                        "write_seconds": result.write_seconds,
                    }
                )
        finally:
            connector.close()
        wall = time.perf_counter() - started
        cpu = cpu_seconds() - cpu_before
        return {
            "records": sum(o["records"] for o in objects),
            "upserted": sum(o["upserted"] for o in objects),
            "wall_seconds": wall,
            "write_seconds": sum(o["write_seconds"] for o in objects),
            "sql_execute_seconds": sql.execute_seconds,
            "sql_statements": sql.statements,
            "http_seconds": http.request_seconds,
            "json_seconds": http.json_seconds,
            "http_requests": http.requests,
            "response_mb": http.response_bytes / 1e6,
            "client_cpu_seconds": cpu,
            "db_server_cpu_seconds": sql.backend_cpu_seconds(),
            "objects": objects,
        }
    finally:
        engine.dispose()


def child_phase() -> None:
    """Entry of a phase child: spec as JSON on stdin, result as one marked line on stdout."""
    spec = json.loads(sys.stdin.read())
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    run = {"raw": phase_raw, "fetch": phase_fetch}.get(spec["phase"], phase_sync)
    result = run(spec)
    result["peak_rss_mb"] = peak_rss_mb()
    result["ru_maxrss_mb"] = ru_maxrss_mb()
    report_result(result)



def round_ratios(phases: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """The ratios the issue asks for, within one round (so machine noise mostly cancels):
    the load against each ceiling (driver-level write, fetch only) and the lower of them."""
    initial, raw, fetch, incremental = (phases[p] for p in PHASES)
    raw_rate = rate(raw["records"], raw["wall_seconds"])
    fetch_rate = rate(fetch["records"], fetch["wall_seconds"])
    lower = min(raw_rate, fetch_rate)
    write_rate = rate(initial["upserted"], initial["write_seconds"])
    end_to_end = initial["records_per_second"]
    return {
        "raw_rows_per_second": raw_rate,
        "fetch_records_per_second": fetch_rate,
        "load_records_per_second": end_to_end,
        "load_write_rows_per_second": write_rate,
        "load_write_vs_raw": write_rate / raw_rate if raw_rate else 0.0,
        "load_end_to_end_vs_raw": end_to_end / raw_rate if raw_rate else 0.0,
        "load_end_to_end_vs_fetch": end_to_end / fetch_rate if fetch_rate else 0.0,
        "load_end_to_end_vs_lower_ceiling": end_to_end / lower if lower else 0.0,
        "incremental_vs_initial_wall": (
            incremental["wall_seconds"] / initial["wall_seconds"]
            if initial["wall_seconds"]
            else 0.0
        ),
    }
