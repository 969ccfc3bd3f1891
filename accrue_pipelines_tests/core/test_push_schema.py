"""The schema of pushed objects and the inbox's retention (issue 13, F8): the first push
fixes an object's fields and maps them; drift is recorded and held back until the admin
accepts it; the admin's mapping is checked; batches applied long ago are deleted, the
waiting ones never. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue import config
from accrue.push import inbox, process, schema
from accrue.push.feed import PushConnector
from accrue.schema import object_table, push_inbox, utcnow
from accrue.warehouse import Warehouse
from accrue_pipelines_tests.concierge.test_push_api import make_push_tenant, record


@pytest.fixture
def pushed(engine: Engine, tenant_id: str) -> str:
    make_push_tenant(engine, tenant_id)
    return tenant_id


def store(engine: Engine, tenant_id: str, *records: dict[str, Any]) -> int:
    body = json.dumps({"records": list(records)}).encode()
    return inbox.store(engine, tenant_id, f"msg_{uuid.uuid4().hex}", body, {},
                       len(records)).id


def deal(engine: Engine, tenant_id: str, source_id: str) -> dict[str, Any]:
    table = object_table("opportunity")
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(table).where(
            table.c.tenant_id == tenant_id, table.c.source_id == source_id)).mappings().one())


def test_suggested_mappings_for_standard_names() -> None:
    assert schema.suggest_mapping("opportunity", ["deal_value", "Stage", "close date",
                                                  "region", "id"]) == {
        "deal_value": "amount", "Stage": "stage", "close date": "close_date",
        "region": None, "id": None}  # the record's id is the envelope's, not a column
    # Each column once: the exact name wins over a synonym.
    assert schema.suggest_mapping("opportunity", ["value", "amount"]) == {
        "value": None, "amount": "amount"}
    assert schema.suggest_mapping("opportunity", ["value"]) == {"value": "amount"}


def test_the_first_push_fixes_the_schema_and_maps_it(engine: Engine, pushed: str) -> None:
    store(engine, pushed,
          record("opportunity", "O1", name="Big", deal_value=1200.5, region=None,
                 tags=["a", "b"], c2crm_stage_code="P3"),
          record("opportunity", "O2", name="Small", deal_value=10, region="EMEA"))
    process.process_inbox(engine, pushed)
    found = schema.load(engine, pushed)["opportunity"]
    assert {name: f.type for name, f in found.fields.items()} == {
        "name": "string", "deal_value": "number", "region": "string", "tags": "array",
        "c2crm_stage_code": "string"}
    assert found.fields["name"].sample == "Big" and found.fields["region"].sample == "EMEA"
    assert found.mapping["deal_value"] == "amount" and found.mapping["region"] is None
    assert found.drift == () and found.accepted_at is None  # suggested, not yet confirmed
    row = deal(engine, pushed, "O1")
    assert row["amount"] == 1200.5 and row["name"] == "Big"
    assert row["raw"]["c2crm_stage_code"] == "P3" and row["raw"]["tags"] == ["a", "b"]


def test_drift_is_recorded_and_held_back_until_accepted(engine: Engine, pushed: str) -> None:
    store(engine, pushed, record("opportunity", "O1", name="Big", deal_value=100))
    process.process_inbox(engine, pushed)
    # Later: a field added (probability), one dropped (name), one retyped (deal_value).
    store(engine, pushed, record("opportunity", "O2", deal_value="1.200,50", probability=0.4))
    process.process_inbox(engine, pushed)
    found = schema.load(engine, pushed)["opportunity"]
    assert {(d.field, d.kind) for d in found.drift} == {
        ("probability", "added"), ("name", "dropped"), ("deal_value", "retyped")}
    retyped = next(d for d in found.drift if d.kind == "retyped")
    assert (retyped.example, retyped.type) == ("1.200,50", "string")
    assert next(d for d in found.drift if d.kind == "dropped").example == "O2"
    # Stored whole, but the drifted fields feed no column before the admin accepts.
    row = deal(engine, pushed, "O2")
    assert row["amount"] is None and row["probability"] is None
    assert row["raw"] == {"deal_value": "1.200,50", "probability": 0.4}
    assert deal(engine, pushed, "O1")["amount"] == 100
    assert Warehouse(engine).quarantine_count(pushed, "opportunity") == 0
    # Seen again: recorded once.
    store(engine, pushed, record("opportunity", "O3", deal_value="7", probability=0.5))
    process.process_inbox(engine, pushed)
    assert len(schema.load(engine, pushed)["opportunity"].drift) == 3

    accepted = schema.accept_drift(engine, pushed, "opportunity")
    assert accepted.drift == () and accepted.accepted_at is not None
    assert "name" not in accepted.fields and accepted.fields["deal_value"].type == "string"
    assert accepted.mapping["probability"] == "probability"
    store(engine, pushed, record("opportunity", "O4", deal_value="12", probability=0.9),
          record("opportunity", "O5", deal_value="a lot", probability=0.1))
    process.process_inbox(engine, pushed)
    # Now mapped: the new field lands, the retyped one feeds its column again (a number
    # written as text is still exactly a number); a value the column refuses is
    # quarantined with the reason, never dropped or converted.
    assert (deal(engine, pushed, "O4")["amount"], deal(engine, pushed, "O4")["probability"]) \
        == (12.0, 0.9)
    [held] = Warehouse(engine).open_quarantine(pushed, "opportunity")
    assert held["source_id"] == "O5" and "opportunity.amount" in held["reason"]


def test_the_admins_mapping_is_checked_and_applied(engine: Engine, pushed: str) -> None:
    store(engine, pushed, record("opportunity", "O1", name="Big", total=5, notes="x"))
    process.process_inbox(engine, pushed)
    with pytest.raises(schema.SchemaError, match="fed by more than one field"):
        schema.save_mapping(engine, pushed, "opportunity", {"total": "name"})
    with pytest.raises(schema.SchemaError, match="has no column 'volume'"):
        schema.save_mapping(engine, pushed, "opportunity", {"total": "volume"})
    with pytest.raises(schema.SchemaError, match="no field"):
        schema.save_mapping(engine, pushed, "opportunity", {"missing": "amount"})
    with pytest.raises(schema.SchemaError, match="no account has been pushed"):
        schema.save_mapping(engine, pushed, "account", {"name": "name"})
    saved = schema.save_mapping(engine, pushed, "opportunity", {"total": "amount"})
    assert saved.mapping == {"name": "name", "total": "amount", "notes": None}
    assert saved.accepted_at is not None
    store(engine, pushed, record("opportunity", "O2", name="Next", total=7, notes="y"))
    process.process_inbox(engine, pushed)
    assert deal(engine, pushed, "O2")["amount"] == 7
    assert deal(engine, pushed, "O1")["amount"] is None  # applied before: raw only


def test_schemas_are_per_tenant(engine: Engine, pushed: str,
                                make_tenant_id: Callable[[], str]) -> None:
    other = make_tenant_id()
    make_push_tenant(engine, other)
    store(engine, pushed, record("opportunity", "O1", name="Mine", deal_value=1))
    store(engine, other, record("opportunity", "O1", name="Theirs", amount="text"))
    process.process_inbox(engine, pushed)
    assert schema.load(engine, other) == {}  # not processed yet, nothing leaks over
    process.process_inbox(engine, other)
    assert schema.load(engine, other)["opportunity"].fields["amount"].type == "string"
    assert schema.load(engine, pushed)["opportunity"].drift == ()
    schema.accept_drift(engine, pushed, "opportunity")
    assert schema.load(engine, other)["opportunity"].accepted_at is None


def test_retention_deletes_only_old_applied_batches(
        engine: Engine, pushed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    old = store(engine, pushed, record("account", "A1", name="Old"))
    recent = store(engine, pushed, record("account", "A2", name="Recent"))
    process.process_inbox(engine, pushed)
    waiting = store(engine, pushed, record("account", "A3", name="Waiting"))
    long_ago = utcnow() - timedelta(days=config.DEFAULT_PUSH_INBOX_RETENTION_DAYS + 1)
    with engine.begin() as conn:  # the first batch was applied (and the last received) long ago
        conn.execute(sa.update(push_inbox).where(push_inbox.c.id == old)
                     .values(processed_at=long_ago, received_at=long_ago))
        conn.execute(sa.update(push_inbox).where(push_inbox.c.id == waiting)
                     .values(received_at=long_ago))
    with PushConnector(engine, pushed) as connector:  # its next read applies the retention
        list(connector.read("user", None))
    with engine.connect() as conn:
        left = set(conn.execute(sa.select(push_inbox.c.id)
                                .where(push_inbox.c.tenant_id == pushed)).scalars())
    assert left == {recent, waiting}
    # The applied data stays; the deleted batch's webhook-id is forgotten (see config).
    assert Warehouse(engine).count(pushed, "account") == 2
    monkeypatch.setenv(config.PUSH_INBOX_RETENTION_ENV, "0")
    with pytest.raises(ValueError, match="at least 1"):
        config.push_inbox_retention_days()


def test_a_quarantined_pushed_record_maps_again(engine: Engine, pushed: str) -> None:
    connector = PushConnector(engine, pushed)
    pushed_record = record("account", "A1", occurred_at="2026-11-30T10:00:00Z", name="N")
    mapped = connector.map_record("account", pushed_record)
    assert mapped.source_id == "A1" and getattr(mapped, "fields", None) == {"name": "N"}
    # Without its id (what the warehouse keeps of a refused record): pushed again instead.
    refused = connector.map_record("account", {"name": "x" * 300})
    assert "push the record again" in getattr(refused, "reason", "")


def test_two_readers_fixing_the_first_schema_at_once(
        engine: Engine, pushed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    first = [(utcnow(), [record("account", "A1", name="Acme")])]
    schema.observe(engine, pushed, "account", first)
    # The other reader's view: it read before the first committed, so it inserts too.
    real_read = schema._read
    calls = {"n": 0}

    def stale_read(*args: Any, **kwargs: Any) -> schema.ObjectSchema | None:
        calls["n"] += 1
        return None if calls["n"] == 1 else real_read(*args, **kwargs)

    monkeypatch.setattr(schema, "_read", stale_read)
    later = [(utcnow(), [record("account", "A2", name="Beta", region="EU")])]
    found = schema.observe(engine, pushed, "account", later)
    assert found is not None and [(d.field, d.kind) for d in found.drift] == [
        ("region", "added")]
    assert list(schema.load(engine, pushed)["account"].fields) == ["name"]
