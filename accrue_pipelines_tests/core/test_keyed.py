"""Rows found by their ids (`accrue/warehouse/keyed.py`), on SQLite and PostgreSQL.

The lookup must find exactly the rows asked for, whatever the ids spell and however
many there are, in one statement text; on PostgreSQL it must probe the key's index for
each id rather than read the tenant's rows (the plan an initial load was paying for
with time growing as the square of its size), and lock what it finds when asked.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue.schema import object_table
from accrue.warehouse import Warehouse, keyed
from connectors.base import Upsert

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OBJECT = "account"
ODD = "0'\"é,]{}\\"


def _store(warehouse: Warehouse, tenant_id: str, ids: list[str]) -> None:
    warehouse.apply(tenant_id, OBJECT, [
        Upsert(sid, T0 + timedelta(seconds=n), {"name": sid}, {"Id": sid})
        for n, sid in enumerate(ids)])


def test_finds_exactly_the_tenants_rows_asked_for(
    warehouse: Warehouse, make_tenant_id: Callable[[], str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Odd ids included, absent ids and another tenant's rows left out, across batches."""
    mine, other = make_tenant_id(), make_tenant_id()
    stored = ["001A", "001B", ODD, *(f"X{i:03}" for i in range(30))]
    _store(warehouse, mine, stored)
    _store(warehouse, other, ["001C", "X005"])
    monkeypatch.setattr(keyed, "IDS_PER_STATEMENT", 7)  # several batches
    asked = ["001A", ODD, "001C", "nope", *(f"X{i:03}" for i in range(0, 40, 3))]
    with warehouse.engine.connect() as conn:
        found = keyed.stored_stamps(conn, object_table(OBJECT), mine, asked)
    expected = {sid: T0 + timedelta(seconds=stored.index(sid)) for sid in asked if sid in stored}
    assert found == expected
    assert "001C" not in found  # the other tenant's


def test_one_statement_text_whatever_the_number_of_ids(engine: Engine) -> None:
    table = object_table(OBJECT)
    texts = {str(keyed._lookup(engine.dialect.name, table, "t", ids, ("source_id",), lock)
                 .compile(dialect=engine.dialect))
             for ids in (["a"], [f"X{i}" for i in range(3000)]) for lock in (True,)}
    assert len(texts) == 1


def test_postgresql_probes_the_key_for_each_id_on_a_large_tenant(
    warehouse: Warehouse, tenant_id: str,
) -> None:
    """With the table full of the tenant's rows and fresh statistics, the plan is one
    index probe per id, never a scan of the tenant's rows (PostgreSQL 15 chose a
    sequential or bitmap scan for `source_id = ANY(:ids)`)."""
    if warehouse.engine.dialect.name != "postgresql":
        pytest.skip("the planner in question is PostgreSQL's")
    table = object_table(OBJECT)
    with warehouse.engine.begin() as conn:
        conn.execute(sa.insert(table).from_select(
            ["tenant_id", "source_id", "source_modified_at", "synced_at", "raw"],
            sa.select(sa.literal(tenant_id), sa.literal("R") + sa.cast(
                sa.column("n"), sa.String), sa.literal(T0, type_=table.c.synced_at.type),
                sa.literal(T0, type_=table.c.synced_at.type), sa.null())
            .select_from(sa.func.generate_series(1, 50_000).alias("n"))))
        conn.exec_driver_sql(f'ANALYZE "{table.name}"')
    ids = [f"R{n}" for n in range(1, 4001)]
    query = keyed._lookup("postgresql", table, tenant_id, ids,
                          ("source_id", "source_modified_at"), True)
    with warehouse.engine.connect() as conn:
        compiled = query.compile(dialect=conn.dialect)
        plan = "\n".join(conn.exec_driver_sql(
            f"EXPLAIN {compiled}", compiled.params).scalars())
        assert "Index Scan using pk_" in plan, plan
        assert "Seq Scan on" not in plan and "Bitmap Heap Scan" not in plan, plan
        assert len(keyed.stored_stamps(conn, table, tenant_id, ids)) == 4000


def test_postgresql_locks_what_it_finds(warehouse: Warehouse, tenant_id: str) -> None:
    """`lock=True` holds the rows found until the transaction ends: another session
    cannot lock them meanwhile, and can lock the rows not asked for."""
    if warehouse.engine.dialect.name != "postgresql":
        pytest.skip("SQLite locks the whole database for a write transaction")
    table = object_table(OBJECT)
    _store(warehouse, tenant_id, ["001A", "001B"])
    probe = (sa.select(table.c.source_id).where(
        table.c.tenant_id == tenant_id, table.c.source_id == sa.bindparam("sid"))
        .with_for_update(nowait=True))
    with warehouse.engine.connect() as holder, warehouse.engine.connect() as other:
        with holder.begin():
            assert set(keyed.stored_stamps(holder, table, tenant_id, ["001A"], lock=True)) == {
                "001A"}
            with other.begin():
                assert other.execute(probe, {"sid": "001B"}).scalar() == "001B"
            with pytest.raises(sa.exc.OperationalError, match="could not obtain lock"), \
                    other.begin():
                other.execute(probe, {"sid": "001A"})
        with other.begin():
            assert other.execute(probe, {"sid": "001A"}).scalar() == "001A"
