"""Pushed batches into the crm_* tables (issue 13, F8): the push feed's connector through
the sync engine (`accrue push process`, the same path as a Dagster run), in order per
record, deletes, quarantine, and a crash at any moment losing nothing and applying nothing
twice. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.engine import Engine

from accrue import erasure
from accrue.push import inbox, process
from accrue.schema import crm_change_log, crm_quarantine, object_table, push_inbox
from accrue.warehouse import Warehouse
from accrue_pipelines_tests.concierge.test_concierge_app import make_app
from accrue_pipelines_tests.concierge.test_push_api import Pusher, make_push_tenant, record


@pytest.fixture
def pusher(database_url: str, engine: Engine, tenant_id: str) -> Pusher:
    app: Flask = make_app(database_url)
    return Pusher(app.test_client(), tenant_id, make_push_tenant(engine, tenant_id))


def push(pusher: Pusher, *records: dict[str, Any]) -> int:
    response = pusher.push(list(records))
    assert response.status_code == 202, response.get_json()
    return int(response.get_json()["receipt_id"])


def row(engine: Engine, tenant_id: str, object_name: str, source_id: str) -> dict[str, Any]:
    table = object_table(object_name)
    with engine.connect() as conn:
        found = conn.execute(sa.select(table).where(table.c.tenant_id == tenant_id,
                                                    table.c.source_id == source_id)).mappings()
        return dict(found.one())


def log_count(engine: Engine, tenant_id: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(crm_change_log)
                                .where(crm_change_log.c.tenant_id == tenant_id)).scalar_one())


def test_a_pushed_opportunity_with_lines_lands_like_a_synced_one(
        pusher: Pusher, engine: Engine, warehouse: Warehouse) -> None:
    t = pusher.tenant_id
    push(pusher,
         record("account", "A1", name="Acme", industry="Retail"),
         record("opportunity", "O1", name="Big deal", account_id="A1", amount=1200.5,
                stage="Closed Won", is_closed=True, is_won=True, close_date="2026-11-02",
                source_created_at="2026-10-01T09:00:00+00:00", c2crm_region="EMEA"),
         record("opportunity_line", "L1", opportunity_id="O1", product_id="P1", quantity=2,
                unit_price=600.25, list_price=700, total_price=1200.5),
         record("opportunity_line", "L2", opportunity_id="O1", product_id="P2", quantity=1,
                unit_price=0, list_price=50, total_price=0))
    result = process.process_inbox(engine, t)
    assert (result.total("records_read"), result.total("upserted")) == (4, 4)
    deal = row(engine, t, "opportunity", "O1")
    assert deal["amount"] == 1200.5 and deal["is_won"] is True and deal["stage"] == "Closed Won"
    assert str(deal["close_date"]) == "2026-11-02" and deal["account_id"] == "A1"
    # A field that is no common-model column is kept whole in raw.
    assert deal["raw"]["c2crm_region"] == "EMEA"
    assert row(engine, t, "opportunity_line", "L1")["list_price"] == 700
    assert warehouse.count(t, "opportunity_line") == 2
    assert warehouse.orphans(t, "opportunity_line")["opportunity_id"] == 0
    state = warehouse.get_state(t, "opportunity")
    assert state is not None and state["cursor"] == result_cursor(engine, t)
    assert state["source"] == "push" and "c2crm_region" in state["fields"]
    assert inbox.pending_count(engine, t) == 0
    again = process.process_inbox(engine, t)  # nothing left: no record is read again
    assert again.total("records_read") == 0 and len(again.results) == len(result.results)


def result_cursor(engine: Engine, tenant_id: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(push_inbox.c.id))
                                .where(push_inbox.c.tenant_id == tenant_id)).scalar_one())


def test_an_older_update_after_a_newer_one_does_not_overwrite(
        pusher: Pusher, engine: Engine, warehouse: Warehouse) -> None:
    t = pusher.tenant_id
    push(pusher, record("account", "A1", occurred_at="2026-11-30T10:00:00Z", name="New"))
    push(pusher, record("account", "A1", action="update", occurred_at="2026-11-30T09:00:00Z",
                        name="Old"))
    process.process_inbox(engine, t, page_batches=1)  # one batch per page: two pages
    assert row(engine, t, "account", "A1")["name"] == "New"
    # Both versions are in the history.
    assert [h["fields"]["name"] for h in warehouse.history(t, "account", "A1")] == ["Old", "New"]
    # The same, inside one batch.
    push(pusher, record("account", "A2", occurred_at="2026-11-30T10:00:00Z", name="New"),
         record("account", "A2", action="update", occurred_at="2026-11-30T09:00:00Z",
                name="Old"))
    process.process_inbox(engine, t)
    assert row(engine, t, "account", "A2")["name"] == "New"


def test_without_occurred_at_arrival_order_decides(pusher: Pusher, engine: Engine) -> None:
    t = pusher.tenant_id
    push(pusher, record("account", "A1", name="First"))
    push(pusher, record("account", "A1", action="update", name="Second"))
    process.process_inbox(engine, t)
    assert row(engine, t, "account", "A1")["name"] == "Second"


def test_deletes(pusher: Pusher, engine: Engine, warehouse: Warehouse) -> None:
    t = pusher.tenant_id
    push(pusher, record("contact", "C1", occurred_at="2026-11-30T10:00:00Z", last_name="Doe"),
         record("contact", "C2", occurred_at="2026-11-30T10:00:00Z", last_name="Roe"))
    push(pusher, {"object": "contact", "id": "C1", "action": "delete",
                  "occurred_at": "2026-11-30T11:00:00Z"},
         # A delete older than the record's version does not hide it.
         {"object": "contact", "id": "C2", "action": "delete",
          "occurred_at": "2026-11-30T09:00:00Z"})
    result = process.process_inbox(engine, t)
    assert result.total("deleted") == 1
    assert row(engine, t, "contact", "C1")["is_deleted"] is True
    assert row(engine, t, "contact", "C2")["is_deleted"] is False
    assert warehouse.count(t, "contact") == 1


def test_wrong_types_are_quarantined_with_the_reason(pusher: Pusher, engine: Engine,
                                                     warehouse: Warehouse) -> None:
    t = pusher.tenant_id
    push(pusher, record("opportunity", "O1", name="Fine", amount=10),
         record("opportunity", "O2", name="Bad", amount="a lot", close_date="soon"))
    result = process.process_inbox(engine, t)
    assert (result.total("upserted"), result.total("quarantined")) == (1, 1)
    [held] = warehouse.open_quarantine(t, "opportunity")
    assert held["source_id"] == "O2"
    assert "opportunity.amount" in held["reason"] and "opportunity.close_date" in held["reason"]
    assert held["raw"]["amount"] == "a lot"
    # Fixed by a later push: the quarantined record is resolved.
    push(pusher, record("opportunity", "O2", action="update", name="Bad", amount=5))
    process.process_inbox(engine, t)
    assert row(engine, t, "opportunity", "O2")["amount"] == 5
    assert warehouse.quarantine_count(t, "opportunity") == 0


class Crash(Exception):
    pass


def _crash_after(monkeypatch: pytest.MonkeyPatch, target: Any, name: str, calls: int) -> None:
    real = getattr(target, name)
    seen = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        seen["n"] += 1
        if seen["n"] > calls:
            raise Crash(f"killed before {name} #{seen['n']}")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)


def _snapshot(engine: Engine, tenant_id: str) -> dict[str, Any]:
    snap: dict[str, Any] = {}
    with engine.connect() as conn:
        for name in ("account", "opportunity", "opportunity_line"):
            table = object_table(name)
            snap[name] = sorted(
                (r.source_id, r.source_modified_at, r.is_deleted, json.dumps(r.raw, sort_keys=True))
                for r in conn.execute(sa.select(table).where(table.c.tenant_id == tenant_id)))
        snap["log"] = log_count(engine, tenant_id)
        snap["quarantine"] = conn.execute(
            sa.select(sa.func.count()).select_from(crm_quarantine)
            .where(crm_quarantine.c.tenant_id == tenant_id)).scalar_one()
    return snap


def _feed(pusher: Pusher) -> None:
    push(pusher, record("account", "A1", name="Acme"),
         record("opportunity", "O1", name="D1", account_id="A1", amount=1),
         record("opportunity_line", "L1", opportunity_id="O1", quantity=1))
    push(pusher, record("opportunity", "O1", action="update", name="D1", amount=2),
         # A text the column refuses (longer than it holds): quarantined, never cut.
         record("opportunity", "O2", name="x" * 300, amount=3),
         record("opportunity_line", "L2", opportunity_id="O1", quantity=3))
    push(pusher, {"object": "opportunity_line", "id": "L1", "action": "delete"},
         record("account", "A2", name="Beta"))


@pytest.mark.parametrize("crash", [
    ("Warehouse.apply", 0), ("Warehouse.apply", 1), ("Warehouse.apply", 2),
    ("Warehouse.apply", 4), ("Warehouse.apply", 9), ("mark_processed_through", 0),
    ("mark_processed_through", 3),
])
def test_a_crash_at_any_moment_loses_nothing_and_applies_nothing_twice(
        database_url: str, engine: Engine, make_tenant_id: Callable[[], str],
        monkeypatch: pytest.MonkeyPatch, crash: tuple[str, int]) -> None:
    app = make_app(database_url)
    # The reference: the same pushes processed without a crash.
    reference = Pusher(app.test_client(), make_tenant_id(), None)  # type: ignore[arg-type]
    reference.issued = make_push_tenant(engine, reference.tenant_id)
    _feed(reference)
    process.process_inbox(engine, reference.tenant_id, page_batches=2)
    expected = _snapshot(engine, reference.tenant_id)

    crashed = Pusher(app.test_client(), make_tenant_id(), None)  # type: ignore[arg-type]
    crashed.issued = make_push_tenant(engine, crashed.tenant_id)
    _feed(crashed)
    name, calls = crash
    with monkeypatch.context() as patch:
        if name == "mark_processed_through":
            _crash_after(patch, inbox, "mark_processed_through", calls)
        else:
            # Each page of each object is one apply (its records and its cursor): killed
            # between pages, after some objects and before others.
            _crash_after(patch, Warehouse, "apply", calls)
        with pytest.raises(Crash):
            process.process_inbox(engine, crashed.tenant_id, page_batches=2)
    process.process_inbox(engine, crashed.tenant_id, page_batches=2)  # the re-run
    got = _snapshot(engine, crashed.tenant_id)
    # Stamps without occurred_at are received times: compare everything else.
    for snap in (expected, got):
        for name in ("account", "opportunity", "opportunity_line"):
            snap[name] = [(sid, deleted, raw) for sid, _, deleted, raw in snap[name]]
    assert got == expected
    assert inbox.pending_count(engine, crashed.tenant_id) == 0
    assert got["log"] == 7  # A1, O1 x2, L1 + its delete, L2, A2: each version once


def test_tenants_are_isolated_in_processing(pusher: Pusher, engine: Engine,
                                            make_tenant_id: Callable[[], str]) -> None:
    other = make_tenant_id()
    make_push_tenant(engine, other)
    push(pusher, record("account", "A1", name="Mine"))
    assert process.process_inbox(engine, other).total("records_read") == 0
    assert inbox.pending_count(engine, pusher.tenant_id) == 1
    process.process_inbox(engine, pusher.tenant_id)
    with engine.connect() as conn:
        table = object_table("account")
        owners = conn.execute(sa.select(table.c.tenant_id).where(
            table.c.tenant_id.in_([other, pusher.tenant_id]))).scalars().all()
    assert owners == [pusher.tenant_id]


def test_integer_ids_are_stored_as_text(pusher: Pusher, engine: Engine) -> None:
    push(pusher, {"object": "account", "id": 42, "action": "create", "data": {"name": "N"}})
    process.process_inbox(engine, pusher.tenant_id)
    assert row(engine, pusher.tenant_id, "account", "42")["name"] == "N"


def test_deleting_the_tenants_data_deletes_its_pushed_batches(
        pusher: Pusher, engine: Engine, warehouse: Warehouse) -> None:
    push(pusher, record("account", "A1", name="Acme"))
    process.process_inbox(engine, pusher.tenant_id)
    push(pusher, record("account", "A2", name="Pending"))
    deleted = erasure.erase_synced_data(engine, pusher.tenant_id)
    assert set(deleted) == erasure.erased_tables()  # each owner deletes what it declares
    assert deleted["push_inbox"] == 2 and deleted["crm_account"] == 1
    assert inbox.pending_count(engine, pusher.tenant_id) == 0
    assert warehouse.get_state(pusher.tenant_id, "account") is None
    push(pusher, record("account", "A3", name="After"))  # pushes go on; cursor starts over
    process.process_inbox(engine, pusher.tenant_id)
    assert warehouse.count(pusher.tenant_id, "account") == 1
