"""The two ceilings `make bench` compares the initial load with (benchmarks/sync_bench.py).

An end-to-end load can go no faster than its slower half, so each half is measured alone
on the same rows, in the same run:

* **write ceiling** (`phase_raw`): the rows the initial load wrote, inserted again by the
  database driver's own bulk path into empty scratch tables shaped like the `crm_*`
  tables (same columns, key and indexes), in one transaction, commit included — sqlite3
  `executemany` of plain tuples on SQLite, `COPY … FROM STDIN` (psycopg2's
  `copy_expert`, text format built from the same tuples) on PostgreSQL. No SQLAlchemy on
  the timed path: its per-row bind processing made the old baseline 8-15x slower than the
  driver, which flattered "write ÷ raw". Reading the rows back is not timed.
* **fetch ceiling** (`phase_fetch`): every object read with the connector's own read path
  (`SalesforceConnector.read`: Bulk API 2.0 where its threshold says so, REST elsewhere,
  records mapped), writing nothing. Read twice, large Bulk pages parsed in-process and in
  the helper process (`bulk_parse.py`); the faster read is the ceiling (with nothing to
  write, the helper's hand-over costs more than it frees on a small machine).
"""

from __future__ import annotations

import contextlib
import io
import sqlite3
import time
import weakref
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from accrue.db import make_engine
from accrue.schema import OBJECT_TABLES
from benchmarks.support.measure import cpu_seconds, log
from connectors.base import Checkpoint, LiveIds
from connectors.common_model import COMMON_OBJECTS

SCRATCH_PREFIX = "bench_raw_"
TENANT = "bench"
READ_CHUNK_ROWS = 5_000  # rows read back, and written, per driver call


class HttpClock:
    """Times the connector's HTTP round trips and JSON decoding, to split the source time.

    Wraps one `requests.Session`: `request` covers the sandbox's work plus transfer
    (requests reads the whole body before returning), `json` the client's parsing.
    """

    def __init__(self) -> None:
        self.request_seconds = 0.0
        self.json_seconds = 0.0
        self.requests = 0
        self.response_bytes = 0

    def wrap(self, session: Any) -> Any:
        send = session.request

        def request(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                response = send(*args, **kwargs)
            finally:
                self.request_seconds += time.perf_counter() - began
            self.requests += 1
            self.response_bytes += len(response.content or b"")
            # Neither the response's own bound method nor the response itself in the
            # closure: either would be a reference cycle through the response's __dict__,
            # keeping every page's body alive until a full garbage collection (it grew the
            # fetch-only phase's peak RSS from 208 to 441 MB at 1,000,000 opportunities).
            parse = type(response).json
            weak = weakref.ref(response)

            def timed_json(**options: Any) -> Any:
                began = time.perf_counter()
                try:
                    return parse(weak(), **options)
                finally:
                    self.json_seconds += time.perf_counter() - began

            response.json = timed_json
            return response

        session.request = request
        return session


def connector(spec: Mapping[str, Any], clock: HttpClock,
              config: Mapping[str, Any] | None = None) -> Any:
    """The Salesforce adapter `create_connector("salesforce", ...)` builds, on a timed session
    (its default configuration: Bulk API 2.0 from 10,000 rows in a gap)."""
    from connectors.salesforce.connector import SalesforceConnector
    from connectors.salesforce.transport import sandbox_session

    secrets = {
        "username": spec["username"],
        "password": spec["password"],
        "security_token": spec["security_token"],
    }
    session = clock.wrap(sandbox_session(spec["sandbox_url"]))
    return SalesforceConnector(secrets, {"sandbox_url": spec["sandbox_url"], **(config or {})},
                               session=session)


FETCH_WAYS = {"in-process parsing": {"bulk_parse_min_records": None},
              "helper-process parsing": {}}  # the connector's default


def phase_fetch(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Every object read each way (`FETCH_WAYS`); the faster read, with both times."""
    reads = {way: _fetch(spec, config) for way, config in FETCH_WAYS.items()}
    best = min(reads, key=lambda way: reads[way]["wall_seconds"])
    log(f"[fetch only] ceiling: {best} " + ", ".join(
        f"{way} {read['wall_seconds']:.1f}s" for way, read in reads.items()))
    return {**reads[best], "way": best,
            "ways": {way: read["wall_seconds"] for way, read in reads.items()}}


def _fetch(spec: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """Read every object from the beginning through the connector and keep nothing."""
    http = HttpClock()
    source = connector(spec, http, config)
    objects: list[dict[str, Any]] = []
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    try:
        for name in COMMON_OBJECTS:
            began = time.perf_counter()
            records = 0
            for change in source.read(name, None):
                if not isinstance(change, Checkpoint | LiveIds):
                    records += 1
            seconds = time.perf_counter() - began
            objects.append({"object": name, "records": records, "wall_seconds": seconds})
            log(f"[fetch only] {name}: {records:,} records in {seconds:.1f}s")
    finally:
        source.close()
    return {
        "records": sum(o["records"] for o in objects),
        "wall_seconds": time.perf_counter() - started,
        "http_seconds": http.request_seconds,
        "json_seconds": http.json_seconds,
        "http_requests": http.requests,
        "response_mb": http.response_bytes / 1e6,
        "client_cpu_seconds": cpu_seconds() - cpu_before,
        "objects": objects,
    }


def _scratch_table(metadata: sa.MetaData, table: sa.Table) -> sa.Table:
    """An empty table shaped like `table` (columns, primary key, secondary indexes)."""
    name = SCRATCH_PREFIX + table.name.removeprefix("crm_")
    columns = [
        sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
        for c in table.columns
    ]
    scratch = sa.Table(name, metadata, *columns)
    for index in table.indexes:
        sa.Index(
            f"ix_{name}_" + "_".join(c.name for c in index.columns),
            *(scratch.c[c.name] for c in index.columns),
        )
    return scratch


def _copy_text(value: Any) -> str:
    r"""One value in COPY's text format (\N is NULL; backslash, tab and line breaks escaped)."""
    if value is None:
        return "\\N"
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = (text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                .replace("\r", "\\r"))
    return text


def _select_sql(table: sa.Table, postgres: bool) -> str:
    """The read-back query; JSON columns come back as their text on PostgreSQL."""
    def column(c: sa.Column[Any]) -> str:
        is_json = isinstance(c.type, sa.JSON) or "JSON" in type(c.type).__name__.upper()
        return f'"{c.name}"::text' if postgres and is_json else f'"{c.name}"'

    cols = ", ".join(column(c) for c in table.columns)
    mark = "%s" if postgres else "?"
    return f'SELECT {cols} FROM "{table.name}" WHERE tenant_id = {mark}'


class _Writer:
    """Driver-level bulk writes of tuples into one scratch table."""

    def __init__(self, raw: Any, table: sa.Table, postgres: bool) -> None:
        self.raw = raw
        self.postgres = postgres
        names = [c.name for c in table.columns]
        quoted = ", ".join(f'"{n}"' for n in names)
        if postgres:
            self.sql = f'COPY "{table.name}" ({quoted}) FROM STDIN'
        else:
            marks = ", ".join("?" for _ in names)
            self.sql = f'INSERT INTO "{table.name}" ({quoted}) VALUES ({marks})'

    def write(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
        if not self.postgres:
            cursor.executemany(self.sql, rows)
            return
        text = "".join("\t".join(map(_copy_text, row)) + "\n" for row in rows)
        cursor.copy_expert(self.sql, io.StringIO(text))


def phase_raw(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Write the initial load's rows again through the driver's bulk path (the write ceiling).

    Rows are read back in chunks on a second connection (not timed) as the driver returns
    them, and written by the driver into empty scratch tables in one transaction (timed,
    commit included). The scratch tables are dropped afterwards.
    """
    label = f"[{spec['backend']} driver-level write]"
    engine = make_engine(spec["db_url"])
    postgres = engine.dialect.name == "postgresql"
    metadata = sa.MetaData()
    scratch = {name: _scratch_table(metadata, table) for name, table in OBJECT_TABLES.items()}
    source = engine.raw_connection()
    target = engine.raw_connection()
    try:
        metadata.drop_all(engine)  # leftovers of an interrupted run
        metadata.create_all(engine)
        if isinstance(target.driver_connection, sqlite3.Connection):
            target.driver_connection.isolation_level = None  # we say BEGIN and COMMIT
        write_cursor = target.cursor()
        if not postgres:
            write_cursor.execute("BEGIN")
        objects: list[dict[str, Any]] = []
        cpu = 0.0
        for name, table in OBJECT_TABLES.items():
            writer = _Writer(target, scratch[name], postgres)
            # PostgreSQL: a server-side (named) cursor, so the read-back streams in chunks
            # instead of holding the whole table in this process.
            read_cursor = source.cursor(name=f"read_back_{name}") if postgres else source.cursor()
            read_cursor.execute(_select_sql(table, postgres), (TENANT,))
            rows_written, seconds = 0, 0.0
            while rows := [tuple(r) for r in read_cursor.fetchmany(READ_CHUNK_ROWS)]:
                cpu_began, began = cpu_seconds(), time.perf_counter()
                writer.write(write_cursor, rows)
                seconds += time.perf_counter() - began
                cpu += cpu_seconds() - cpu_began
                rows_written += len(rows)
            read_cursor.close()
            objects.append({"object": name, "records": rows_written, "wall_seconds": seconds})
            log(f"{label} {name}: {rows_written:,} rows in {seconds:.2f}s")
        cpu_began, began = cpu_seconds(), time.perf_counter()
        if postgres:
            target.commit()
        else:
            write_cursor.execute("COMMIT")
        commit_seconds = time.perf_counter() - began
        cpu += cpu_seconds() - cpu_began
        write_cursor.close()
        source.rollback()
        with engine.connect() as conn:
            for entry in objects:
                stored = conn.execute(
                    sa.select(sa.func.count()).select_from(scratch[entry["object"]])
                ).scalar_one()
                if stored != entry["records"]:
                    raise RuntimeError(f"driver-level write of {entry['object']}: {stored} rows "
                                       f"stored, {entry['records']} written")
        return {
            "records": sum(o["records"] for o in objects),
            "wall_seconds": sum(o["wall_seconds"] for o in objects) + commit_seconds,
            "commit_seconds": commit_seconds,
            "client_cpu_seconds": cpu,
            "objects": objects,
        }
    finally:
        source.close()
        target.close()
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            metadata.drop_all(engine)
        engine.dispose()
