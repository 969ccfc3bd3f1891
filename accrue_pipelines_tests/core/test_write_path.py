"""The fast write path (issue 15) against a simple reference, on SQLite and PostgreSQL.

`Warehouse.apply` sorts a page (`_Page`, unchanged) and then writes it its own fast way:
JSON encoded once, the driver's bulk path, each current document stored once (in its
row). The reference writes the same sorted page the plain way: SQLAlchemy statements
row by row with the JSON as documents, every version's document in the log. Random
sequences of upserts, soft deletes, id-only deletes, stale versions and replayed pages
must leave the same rows, history, as_of and changes_since answers either way.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine

from accrue import db
from accrue.schema import crm_change_log, object_table
from accrue.warehouse import UnstorableValue, Warehouse, json_text, to_json
from accrue.warehouse.bulk_write import BulkWriter
from accrue.warehouse.page import _Page
from connectors.base import Delete, Upsert
from connectors.common_model import COMMON_OBJECTS

T0 = datetime(2026, 1, 1, tzinfo=UTC)
IDS = ("001A", "001B", "001C")
OBJECT = "account"
ACCOUNT_COLUMNS = {c.name for c in COMMON_OBJECTS[OBJECT]}

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


# --------------------------------------------------------------------------- the reference


def reference_apply(warehouse: Warehouse, tenant_id: str, changes: list[Any]) -> None:
    """The same sorted page written the plain way (no bulk path, no shared documents)."""
    table = object_table(OBJECT)
    page = _Page(tenant_id, OBJECT, datetime.now(UTC), None)
    for change in changes:
        page.add(change)
    live, soft_deleted, tombstones = page.rows()

    def documents(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: json.loads(v) if k in ("raw", "fields") and isinstance(v, str) else v
                 for k, v in row.items()} for row in rows]

    insert = warehouse._insert
    with warehouse.engine.begin() as conn:
        for rows in (live, soft_deleted):
            for one in documents(rows.dicts()):
                conn.execute(warehouse._upsert_statement(table, insert(table)), [one])
        for one in tombstones.dicts():
            conn.execute(warehouse._delete_statement(table, insert(table)), [one])
        for one in documents(page.log_rows().dicts()):
            conn.execute(warehouse._log_clause(insert(crm_change_log)), [one])


# --------------------------------------------------------------------------- random pages

VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.text(max_size=4),
                   st.floats(allow_nan=False, allow_infinity=False, width=32))
RAW = st.dictionaries(st.sampled_from(["Name", "Note", "X", "Y"]), VALUES, max_size=3)


@st.composite
def changes(draw: st.DrawFn) -> Any:
    source_id = draw(st.sampled_from(IDS))
    stamp = T0 + timedelta(hours=draw(st.integers(0, 3)))
    if draw(st.integers(0, 4)) == 0:
        return Delete(source_id, stamp)
    name = draw(st.sampled_from(["a", "b", "é", "line\nbreak\ttab\\"]))
    employees = draw(st.one_of(st.none(), st.integers(0, 5)))
    deleted = draw(st.integers(0, 5)) == 0
    raw = {"Id": source_id, "Name": name, **draw(RAW)}
    return Upsert(source_id, stamp, {"name": name, "employee_count": employees}, raw, deleted)


PAGES = st.lists(st.lists(changes(), min_size=1, max_size=6), min_size=1, max_size=5)


def _replayed(pages: list[list[Any]], replay: int | None) -> list[list[Any]]:
    """The pages, one of them applied again at the end (a resumed sync's overlap)."""
    return pages + [pages[replay % len(pages)]] if replay is not None else pages


def _rows(engine: Engine, tenant_id: str) -> dict[str, dict[str, Any]]:
    table = object_table(OBJECT)
    with engine.connect() as conn:
        found = conn.execute(sa.select(table).where(table.c.tenant_id == tenant_id)).mappings()
        return {r["source_id"]: {k: v for k, v in r.items() if k not in ("tenant_id", "synced_at")}
                for r in found}


def _stored_text(engine: Engine, tenant_id: str) -> dict[str, tuple[Any, ...]]:
    """Each row's values as the database holds them (text), so the fast path must spell
    instants, flags and numbers as SQLAlchemy does (SQLite compares instants as text)."""
    table = object_table(OBJECT)
    columns = [c for c in table.c if c.name not in ("tenant_id", "synced_at", "raw")]
    with engine.connect() as conn:
        found = conn.execute(sa.select(table.c.source_id, *(sa.cast(c, sa.Text) for c in columns))
                             .where(table.c.tenant_id == tenant_id)).all()
    return {row[0]: tuple(row[1:]) for row in found}


def _answers(warehouse: Warehouse, tenant_id: str) -> dict[str, Any]:
    def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in ("id", "synced_at", "sync_run_id")}
                for r in rows]

    changes = strip(warehouse.changes_since(tenant_id, OBJECT, T0 - timedelta(days=1)))
    return {
        "rows": _rows(warehouse.engine, tenant_id),
        "stored_text": _stored_text(warehouse.engine, tenant_id),
        "history": {sid: strip(warehouse.history(tenant_id, OBJECT, sid)) for sid in IDS},
        "as_of": {
            hours: {sid: strip([v])[0] for sid, v in warehouse.as_of(
                tenant_id, OBJECT, T0 + timedelta(hours=hours, minutes=30)).items()}
            for hours in range(4)
        },
        "changes_since": sorted(changes, key=lambda r: (r["source_id"], r["source_modified_at"],
                                                       r["is_deleted"])),
    }


@SETTINGS
@given(pages=PAGES, replay=st.one_of(st.none(), st.integers(0, 10)))
@example(pages=[[  # one version twice in a page with two documents, a delete between
    Upsert("001A", T0 + timedelta(hours=1), {"name": "a"}, {"Id": "001A", "Name": None}),
    Delete("001A", T0 + timedelta(hours=2)),
    Upsert("001A", T0 + timedelta(hours=1), {"name": "a"}, {"Id": "001A", "Name": "a"}),
]], replay=None)
def test_fast_path_answers_like_the_reference(
    engine: Engine, make_tenant_id: Any, pages: list[list[Any]], replay: int | None
) -> None:
    warehouse = Warehouse(engine)
    fast, reference = make_tenant_id(), make_tenant_id()
    for page in _replayed(pages, replay):
        warehouse.apply(fast, OBJECT, page)
        reference_apply(warehouse, reference, page)
    assert _answers(warehouse, fast) == _answers(warehouse, reference)


def test_instants_stored_as_sqlalchemy_spells_them(warehouse: Warehouse, tenant_id: str) -> None:
    """A stamp without microseconds, written by the bulk path, equals the same instant bound
    by SQLAlchemy: on SQLite both are the same text (a "+00:00" suffix or a missing
    fraction would order equal instants apart in every range read)."""
    table = object_table(OBJECT)
    warehouse.apply(tenant_id, OBJECT, [Upsert("001A", T0, {"name": "a"}, {"Id": "001A"})])
    with warehouse.engine.connect() as conn:
        same = conn.execute(sa.select(sa.func.count()).where(
            table.c.tenant_id == tenant_id, table.c.source_modified_at == T0,
            table.c.source_modified_at >= T0, table.c.source_modified_at <= T0)).scalar_one()
        logged = conn.execute(sa.select(sa.func.count()).where(
            crm_change_log.c.tenant_id == tenant_id,
            crm_change_log.c.source_modified_at == T0)).scalar_one()
    assert (same, logged) == (1, 1)


def test_sqlite_instants_are_spelled_as_sqlalchemy_binds_them() -> None:
    """The bulk path's spelling of an instant, fast (UTC, what connectors send) or not (any
    other offset), is the text SQLAlchemy binds for it; a naive one is refused."""
    dialect = sqlite.dialect()
    spell = BulkWriter(dialect)._spell(crm_change_log, "source_modified_at")
    assert spell is not None
    bound = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
    text = bound(T0.replace(tzinfo=None))
    later = T0 + timedelta(microseconds=7)
    india = later.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert spell([T0, india, None, T0]) == [text, bound(later.replace(tzinfo=None)), None, text]
    with pytest.raises(ValueError, match="naive"):
        spell([datetime(2026, 1, 2)])


def test_a_new_record_another_writer_added_meanwhile_fails_the_page_whole(
    warehouse: Warehouse, tenant_id: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL COPYs records the table does not hold straight into it. Should another
    writer add one between the lookup and the COPY, the page is refused and rolled back
    whole (its rows, log and state); applied again, it takes the usual upsert."""
    if warehouse.engine.dialect.name != "postgresql":
        pytest.skip("SQLite writes new records with the usual upsert")
    table = object_table(OBJECT)
    share_raw = Warehouse._share_raw

    def another_writer_first(self: Warehouse, conn: Any, *args: Any) -> set[str]:
        new: set[str] = share_raw(self, conn, *args)
        with self.engine.begin() as other:
            other.execute(sa.insert(table).values(
                tenant_id=tenant_id, source_id="001B", name="other", is_deleted=False,
                source_modified_at=T0 + timedelta(hours=9), synced_at=T0, raw={"Id": "001B"}))
        return new

    page = [Upsert(sid, T0, {"name": sid}, {"Id": sid}) for sid in ("001A", "001B")]
    monkeypatch.setattr(Warehouse, "_share_raw", another_writer_first)
    with pytest.raises(sa.exc.IntegrityError):
        warehouse.apply(tenant_id, OBJECT, page, {"cursor": "1"})
    monkeypatch.undo()
    assert sorted(_rows(warehouse.engine, tenant_id)) == ["001B"]
    assert warehouse.get_state(tenant_id, OBJECT) is None
    assert warehouse.history(tenant_id, OBJECT, "001A") == []
    warehouse.apply(tenant_id, OBJECT, page, {"cursor": "1"})
    rows = _rows(warehouse.engine, tenant_id)
    assert (rows["001A"]["name"], rows["001B"]["name"]) == ("001A", "other")  # newest wins
    assert warehouse.get_state(tenant_id, OBJECT) == {"cursor": "1"}


def test_after_a_page_of_new_records_a_page_holding_stored_ones_keeps_their_history(
    warehouse: Warehouse, tenant_id: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a page of only new records, PostgreSQL writes the object's next page without
    looking its records up (COPY into the table). A page that holds a stored record after
    all (a newer version, a soft delete) is refused whole and written again the careful
    way: rows, history (the replaced version's document moved to the log), counts and
    state as if it had been looked up. SQLite always looks up."""
    from accrue.warehouse import write

    lookups: list[int] = []
    real_lookup = write.stored_stamps

    def counted(*args: Any, **kwargs: Any) -> dict[str, datetime]:
        lookups.append(len(args[3]))
        return real_lookup(*args, **kwargs)

    monkeypatch.setattr(write, "stored_stamps", counted)
    postgres = warehouse.engine.dialect.name == "postgresql"

    def version(sid: str, hours: int, deleted: bool = False) -> Upsert:
        return Upsert(sid, T0 + timedelta(hours=hours), {"name": f"{sid}@{hours}"},
                      {"Id": sid, "v": hours}, deleted)

    warehouse.apply(tenant_id, OBJECT, [version("001A", 0), version("001B", 0)], {"c": 1})
    assert len(lookups) == 1  # nothing known of the object yet: looked up
    warehouse.apply(tenant_id, OBJECT, [version("001C", 0)], {"c": 2})
    assert len(lookups) == (1 if postgres else 2)  # all new, as the page before
    stats = warehouse.apply(tenant_id, OBJECT, [version("001A", 1), version("001B", 1, True),
                                                version("001D", 0)], {"c": 3})
    assert len(lookups) == (2 if postgres else 3)  # refused, then looked up
    assert (stats.upserted, stats.deleted, stats.skipped_stale) == (2, 1, 0)
    rows = _rows(warehouse.engine, tenant_id)
    assert {sid: (row["name"], bool(row["is_deleted"])) for sid, row in rows.items()} == {
        "001A": ("001A@1", False), "001B": ("001B@1", True), "001C": ("001C@0", False),
        "001D": ("001D@0", False)}
    for sid in ("001A", "001B"):
        assert [v["raw"]["v"] for v in warehouse.history(tenant_id, OBJECT, sid)] == [0, 1]
    assert warehouse.get_state(tenant_id, OBJECT) == {"c": 3}
    # A page of new records again (soft-deleted ones too) goes straight in.
    warehouse.apply(tenant_id, OBJECT, [version("001E", 0, True)], {"c": 4})
    warehouse.apply(tenant_id, OBJECT, [version("001F", 0, True), version("001G", 0)])
    assert len(lookups) == (3 if postgres else 5)  # the first of them looked up
    rows = _rows(warehouse.engine, tenant_id)
    assert [bool(rows[sid]["is_deleted"]) for sid in ("001E", "001F", "001G")] == [
        True, True, False]
    assert warehouse.history(tenant_id, OBJECT, "001F")[0]["raw"] == {"Id": "001F", "v": 0}


def test_a_replaced_document_moves_into_the_log(warehouse: Warehouse, tenant_id: str) -> None:
    """The current version's document is stored once; a newer version moves it to the log."""
    first = Upsert("001A", T0, {"name": "a"}, {"Id": "001A", "v": 1})
    second = Upsert("001A", T0 + timedelta(hours=1), {"name": "b"}, {"Id": "001A", "v": 2})
    warehouse.apply(tenant_id, OBJECT, [first])
    with warehouse.engine.connect() as conn:
        log = crm_change_log
        stored = conn.execute(sa.select(log.c.raw, log.c.raw_in_row).where(
            log.c.tenant_id == tenant_id)).all()
    assert [(raw, bool(in_row)) for raw, in_row in stored] == [(None, True)]
    warehouse.apply(tenant_id, OBJECT, [second])
    stale = Upsert("001A", T0 - timedelta(hours=1), {"name": "z"}, {"Id": "001A", "v": 0})
    warehouse.apply(tenant_id, OBJECT, [stale])
    assert [v["raw"]["v"] for v in warehouse.history(tenant_id, OBJECT, "001A")] == [0, 1, 2]
    with warehouse.engine.connect() as conn:
        stored = conn.execute(sa.select(log.c.raw_in_row).where(
            log.c.tenant_id == tenant_id).order_by(log.c.source_modified_at)).all()
    assert [bool(in_row) for (in_row,) in stored] == [False, False, True]


# --------------------------------------------------------------------------- JSON once

JSON_ANY = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(),
              st.decimals(), st.datetimes(timezones=st.just(UTC)), st.dates(), st.uuids()),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.tuples(children),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers(), st.booleans(),
                                  st.none(), st.floats()), children, max_size=3)),
    max_leaves=10,
)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(value=JSON_ANY)
def test_json_encoded_once_is_the_careful_document(value: Any) -> None:
    """`json_text` stores what `to_json` would, or refuses it (naming the path)."""
    try:
        expected = to_json(value)
        json.dumps(expected, allow_nan=False)
    except (UnstorableValue, ValueError):
        with pytest.raises(UnstorableValue, match=r"^raw"):
            json_text(value)
        return
    assert json.loads(json_text(value)) == expected


class Colour(Enum):
    RED = "red"


@dataclass
class Point:
    x: int
    y: int


class Ratio(float):
    pass


@pytest.mark.parametrize("value", [
    {True: 1}, {None: 1}, {"a": "x\x00"}, {"a": "\ud800"}, {"a": Decimal("1e400")},
    {"a": Decimal("NaN")}, {"k": {1.5: 2}}, {"s": {1}}, {"d": date(2020, 1, 1)},
    {"u": UUID(int=1)}, {"true": 1}, {"x": 'a"true":'}, {"a": "\\u0000"},
    # orjson would write null for these, or spell them its own way: the careful walk decides
    {"a": [{"b": float("nan")}]}, {"a": (1.0, float("inf"))}, {"s": {Decimal("1e400")}},
    {"a": Decimal("-1e400")}, {"e": Colour.RED}, {"t": time(12, 30)}, {"c": Point(1, 2)},
    {"o": OrderedDict(a=1)}, {"f": Ratio(0.5)}, float("-inf"), [2**64], {"k": {2**70: 1}},
    {"d": datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=5, minutes=30)))},
])
def test_json_text_edge_cases(value: Any) -> None:
    try:
        expected = to_json(value)
        json.dumps(expected, allow_nan=False)
    except (UnstorableValue, ValueError):
        with pytest.raises(UnstorableValue):
            json_text(value)
        return
    assert json.loads(json_text(value)) == expected


# --------------------------------------------------------------------------- migration 0019


@pytest.fixture(params=["sqlite", "postgresql"])
def scratch_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of this test alone (it migrates down and up)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    server_url = os.environ.get("ACCRUE_TEST_POSTGRES_URL", "").strip()
    if not server_url:
        pytest.skip("PostgreSQL tests need ACCRUE_TEST_POSTGRES_URL")
    url = db.create_database(server_url, "accrue_test_0019")
    try:
        yield url
    finally:
        db.drop_database(url)


def test_migration_0019_keeps_each_current_document_once(scratch_url: str) -> None:
    """Data logged before 0019 (every document twice) converts, answers unchanged, and back."""
    engine = db.make_engine(scratch_url)
    try:
        db.upgrade(engine, "0018")
        table, log = object_table(OBJECT), crm_change_log
        old_log = sa.table(log.name, *(sa.column(c.name, c.type) for c in log.c
                                       if c.name != "raw_in_row"))
        versions = [(T0, {"Id": "001A", "v": 1}), (T0 + timedelta(hours=1), {"Id": "001A", "v": 2})]
        with engine.begin() as conn:  # what the old apply wrote
            conn.execute(sa.insert(table).values(
                tenant_id="t-old", source_id="001A", name="b", source_modified_at=versions[1][0],
                is_deleted=False, synced_at=T0, raw=versions[1][1]))
            for stamp, raw in versions:
                conn.execute(sa.insert(old_log).values(
                    tenant_id="t-old", object_name=OBJECT, source_id="001A",
                    source_modified_at=stamp, is_deleted=False, fields={}, raw=raw, synced_at=T0))
        db.upgrade(engine)
        with engine.connect() as conn:
            stored = conn.execute(sa.select(log.c.raw, log.c.raw_in_row).order_by(
                log.c.source_modified_at)).all()
        assert [(raw, bool(in_row)) for raw, in_row in stored] == [
            ({"Id": "001A", "v": 1}, False), (None, True)]
        warehouse = Warehouse(engine)
        assert [v["raw"] for v in warehouse.history("t-old", OBJECT, "001A")] == [
            raw for _, raw in versions]
        cfg = db.alembic_config(engine)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0018")
        with engine.connect() as conn:
            assert [r for (r,) in conn.execute(sa.select(old_log.c.raw).order_by(
                old_log.c.source_modified_at))] == [raw for _, raw in versions]
    finally:
        engine.dispose()


def test_migration_0020_respells_the_bulk_paths_instants(tmp_path: Path) -> None:
    """Instants stored with sqlite3's default spelling ("+00:00", no zero fraction) become
    SQLAlchemy's, so the equal instant bound by SQLAlchemy finds them again."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        db.upgrade(engine, "0019")
        with engine.begin() as conn:
            for source_id, stamp in (("001A", "2026-01-01 00:00:00+00:00"),
                                     ("001B", "2026-01-01 00:00:00.250000+00:00"),
                                     ("001C", "2026-01-01 00:00:00.500000")):
                conn.exec_driver_sql(
                    "INSERT INTO crm_account (tenant_id, source_id, source_modified_at, "
                    "is_deleted, synced_at, raw) VALUES ('t-old', ?, ?, 0, ?, '{}')",
                    (source_id, stamp, stamp))
        db.upgrade(engine)
        with engine.connect() as conn:
            stored = conn.exec_driver_sql(
                "SELECT source_modified_at, synced_at FROM crm_account ORDER BY source_id").all()
            table = object_table(OBJECT)
            found = conn.execute(sa.select(table.c.source_id).where(
                table.c.source_modified_at == T0 + timedelta(milliseconds=250))).scalars().all()
        assert [tuple(row) for row in stored] == [
            ("2026-01-01 00:00:00.000000",) * 2, ("2026-01-01 00:00:00.250000",) * 2,
            ("2026-01-01 00:00:00.500000",) * 2]
        assert found == ["001B"]
    finally:
        engine.dispose()
