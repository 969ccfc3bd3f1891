"""Record history, reconciliation against live ids, orphans and tenant-scoped reads
(both backends)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue import schema
from accrue.warehouse import Warehouse, WriteStats
from connectors.base import Delete, LiveIds, Upsert

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)
T3 = T0 + timedelta(hours=3)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def upsert(
    source_id: str, at: datetime, raw: dict[str, Any] | None = None, **fields: Any
) -> Upsert:
    document = {"Id": source_id, "SystemModstamp": at.isoformat(), **fields}
    return Upsert(source_id, at, fields, document if raw is None else {**document, **raw})


def current(engine: Engine, tenant_id: str, object_name: str, source_id: str) -> dict[str, Any]:
    table = schema.object_table(object_name)
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(table).where(table.c.tenant_id == tenant_id, table.c.source_id == source_id)
        )
        return dict(found.mappings().one())


# --------------------------------------------------------------------------- history (F2, F3)


def test_replaying_pages_logs_each_version_once(warehouse: Warehouse, tenant_id: str) -> None:
    """F2/F3: a replayed page and an overlapping lookback never log a version twice."""
    page = [upsert(f"A{i}", T0, name=f"a{i}") for i in range(5)]
    warehouse.apply(tenant_id, "account", page, {"cursor": 1})
    warehouse.apply(tenant_id, "account", page, {"cursor": 1})
    assert warehouse.change_count(tenant_id, "account") == 5

    # The next page overlaps the last one (lookback) and brings two new versions.
    overlap = page[3:] + [upsert("A3", T1, name="a3 bis"), upsert("A4", T1, name="a4 bis")]
    warehouse.apply(tenant_id, "account", overlap, {"cursor": 2})
    warehouse.apply(tenant_id, "account", overlap, {"cursor": 2})
    assert warehouse.change_count(tenant_id, "account") == 7
    assert [v["fields"]["name"] for v in warehouse.history(tenant_id, "account", "A3")] == [
        "a3",
        "a3 bis",
    ]


def test_an_update_gives_two_versions_and_as_of_picks_the_right_one(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """F3: an update keeps the earlier value as history, each version with its validity."""
    warehouse.apply(tenant_id, "opportunity", [upsert("O", T0, name="v1", amount=10)])
    warehouse.apply(tenant_id, "opportunity", [upsert("O", T2, name="v2", amount=20)])

    first, second = warehouse.history(tenant_id, "opportunity", "O")
    assert (first["version"], first["valid_from"], first["valid_to"]) == (1, T0, T2)
    assert (second["version"], second["valid_from"], second["valid_to"]) == (2, T2, None)
    assert first["fields"]["name"] == "v1" and first["fields"]["amount"] == 10.0
    assert second["raw"]["name"] == "v2" and second["is_deleted"] is False
    assert first["fields"]["close_date"] is None  # every model column, JSON-safe

    assert warehouse.as_of(tenant_id, "opportunity", T0 - timedelta(seconds=1)) == {}
    assert warehouse.as_of(tenant_id, "opportunity", T0)["O"]["fields"]["name"] == "v1"
    assert warehouse.as_of(tenant_id, "opportunity", T1)["O"]["fields"]["name"] == "v1"
    assert warehouse.as_of(tenant_id, "opportunity", T2)["O"]["fields"]["name"] == "v2"
    assert warehouse.as_of(tenant_id, "opportunity", T3)["O"]["valid_to"] is None
    with pytest.raises(ValueError, match="naive"):
        warehouse.as_of(tenant_id, "opportunity", datetime(2024, 1, 1))


def test_a_deleted_record_leaves_as_of_but_stays_in_history(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """F3 and deletes: after its delete a record is not live as of any later instant,
    while every earlier version (and the delete itself) stays in history."""
    warehouse.apply(tenant_id, "account", [upsert("A", T0, name="Acme"), upsert("B", T0)])
    warehouse.apply(tenant_id, "account", [Delete("A", T1)])
    soft = Upsert("B", T2, {"name": "gone"}, {"Id": "B", "IsDeleted": True}, is_deleted=True)
    warehouse.apply(tenant_id, "account", [soft])

    assert set(warehouse.as_of(tenant_id, "account", T0)) == {"A", "B"}
    assert set(warehouse.as_of(tenant_id, "account", T1)) == {"B"}
    assert warehouse.as_of(tenant_id, "account", T3) == {}
    alive, tombstone = warehouse.history(tenant_id, "account", "A")
    assert (alive["fields"]["name"], alive["valid_to"]) == ("Acme", T1)
    assert (tombstone["is_deleted"], tombstone["raw"], tombstone["fields"]) == (True, None, {})
    assert warehouse.history(tenant_id, "account", "B")[-1]["raw"]["IsDeleted"] is True


def test_a_delete_at_the_same_instant_as_an_update_is_the_later_version(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """F3: versions are ordered by (source_modified_at, is_deleted), so a tie ends deleted."""
    warehouse.apply(tenant_id, "account", [upsert("A", T1, name="last"), Delete("A", T1)])
    versions = warehouse.history(tenant_id, "account", "A")
    assert [(v["is_deleted"], v["valid_to"]) for v in versions] == [(False, T1), (True, None)]
    assert warehouse.as_of(tenant_id, "account", T2) == {}


def test_a_stale_version_is_history_but_not_the_current_row(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """F3: an older version arriving late (or superseded in its page) was never seen before:
    it lands in the change log, in its place in time, and leaves the current row alone."""
    warehouse.apply(tenant_id, "account", [upsert("A", T2, name="new")])
    stats = warehouse.apply(
        tenant_id, "account", [upsert("A", T0, name="old"), upsert("A", T1, name="mid")]
    )
    assert stats == WriteStats(skipped_stale=2)
    assert current(warehouse.engine, tenant_id, "account", "A")["name"] == "new"
    versions = warehouse.history(tenant_id, "account", "A")
    assert [(v["fields"]["name"], v["valid_to"]) for v in versions] == [
        ("old", T1),
        ("mid", T2),
        ("new", None),
    ]
    assert warehouse.as_of(tenant_id, "account", T1)["A"]["fields"]["name"] == "mid"


def test_versions_carry_the_sync_run_and_changes_since_reads_by_sync_time(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """F4: the change log says which run wrote a version, and feeds incremental consumers."""
    run = warehouse.start_run(tenant_id, "lead")
    before = datetime.now(UTC) - timedelta(seconds=1)
    warehouse.apply(tenant_id, "lead", [upsert("L1", T0), upsert("L2", T0)], sync_run_id=run)
    warehouse.apply(tenant_id, "lead", [Delete("L1", T1)])

    changes = warehouse.changes_since(tenant_id, "lead", before)
    assert [(c["source_id"], c["is_deleted"], c["sync_run_id"]) for c in changes] == [
        ("L1", False, run),
        ("L2", False, run),
        ("L1", True, None),
    ]
    assert warehouse.changes_since(tenant_id, "lead", before, limit=1)[0]["source_id"] == "L1"
    later = changes[-1]["synced_at"] + timedelta(microseconds=1)
    assert warehouse.changes_since(tenant_id, "lead", later) == []


def test_record_history_view_is_migrated_and_not_compared_as_a_table(engine: Engine) -> None:
    """The view comes from migration 0002 (both backends); autogenerate must ignore it."""
    inspector = sa.inspect(engine)
    assert schema.RECORD_HISTORY_VIEW in inspector.get_view_names()
    assert schema.RECORD_HISTORY_VIEW not in inspector.get_table_names()
    assert schema.RECORD_HISTORY_VIEW not in schema.metadata.tables
    assert not schema.is_accrue_table(schema.RECORD_HISTORY_VIEW)
    with engine.connect() as conn:
        columns = conn.execute(sa.select(schema.record_history).limit(0)).keys()
    assert {"version", "valid_from", "valid_to", "fields", "raw"} <= set(columns)


# --------------------------------------------------------------------------- reconciliation


def test_live_ids_marks_exactly_the_missing_older_rows_deleted(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """Deletes are flagged, never physical: rows the CRM no longer lists are marked deleted
    as of the listing, with a delete version stamped just after the stored one (so any real
    later CRM version still wins); rows newer than the listing are left alone."""
    warehouse.apply(tenant_id, "contact", [upsert(i, T0) for i in ("A", "B", "C")])
    warehouse.apply(tenant_id, "contact", [Delete("D", T0), upsert("N", T2)])

    stats = warehouse.apply(tenant_id, "contact", [LiveIds(frozenset({"A"}), T1)], {"c": 1})
    assert stats == WriteStats(deleted=2)
    assert warehouse.live_ids(tenant_id, "contact") == {"A", "N"}
    assert warehouse.count(tenant_id, "contact", include_deleted=True) == 5  # nothing removed
    just_after = T0 + timedelta(microseconds=1)
    for source_id in ("B", "C"):
        row = current(warehouse.engine, tenant_id, "contact", source_id)
        assert (row["is_deleted"], row["deleted_at"], row["source_modified_at"]) == (
            True, T1, just_after
        )
        gone = warehouse.history(tenant_id, "contact", source_id)[-1]
        assert (gone["is_deleted"], gone["valid_from"], gone["raw"]) == (True, just_after, None)
    assert current(warehouse.engine, tenant_id, "contact", "D")["deleted_at"] == T0
    assert warehouse.get_state(tenant_id, "contact") == {"c": 1}

    logged = warehouse.change_count(tenant_id, "contact")
    again = warehouse.apply(tenant_id, "contact", [LiveIds(frozenset({"A"}), T1)])
    assert again == WriteStats()
    assert warehouse.change_count(tenant_id, "contact") == logged
    # A replay of the stored version does not revive the record...
    assert warehouse.apply(tenant_id, "contact", [upsert("B", T0)]).skipped_stale == 1
    assert "B" not in warehouse.live_ids(tenant_id, "contact")
    # ...but the CRM's own later version does, even one older than our listing's clock
    # (an undelete committed late, or a CRM clock behind ours).
    late = T0 + timedelta(seconds=1)
    assert late < T1
    assert warehouse.apply(tenant_id, "contact", [upsert("C", late)]).upserted == 1
    assert "C" in warehouse.live_ids(tenant_id, "contact")


def test_live_ids_apply_after_the_rest_of_the_page(warehouse: Warehouse, tenant_id: str) -> None:
    """The listing covers the page's own records: one it does not list ends deleted."""
    page = [upsert("E", T0), upsert("K", T0), LiveIds(frozenset({"K"}), T1)]
    stats = warehouse.apply(tenant_id, "lead", page)
    assert stats == WriteStats(upserted=2, deleted=1)
    assert warehouse.live_ids(tenant_id, "lead") == {"K"}


def test_live_ids_handles_tens_of_thousands_of_ids(
    warehouse: Warehouse, tenant_id: str, make_tenant_id: Callable[[], str]
) -> None:
    """Reconciliation against 20k listed ids, 6.5k rows to mark (more than one UPDATE batch),
    stays under every bind limit and touches one tenant only."""
    other = make_tenant_id()
    ids = [f"003{i:015d}" for i in range(8_000)]
    page = [Upsert(i, T0, {}, {}) for i in ids]
    warehouse.apply(tenant_id, "contact", page)
    warehouse.apply(other, "contact", page[:10])
    listed = frozenset(ids[6_500:]) | frozenset(f"new{i:05d}" for i in range(18_500))
    assert len(listed) == 20_000

    stats = warehouse.apply(tenant_id, "contact", [LiveIds(listed, T1)])
    assert stats.deleted == 6_500
    assert warehouse.live_ids(tenant_id, "contact") == set(ids[6_500:])
    assert warehouse.count(tenant_id, "contact", include_deleted=True) == 8_000
    assert warehouse.change_count(tenant_id, "contact") == 8_000 + 6_500
    assert warehouse.count(other, "contact") == 10


# --------------------------------------------------------------------------- orphans


def test_orphans_count_live_rows_pointing_at_nothing_live(
    warehouse: Warehouse, make_tenant_id: Callable[[], str]
) -> None:
    """Referential checks: NULL, unknown, deleted and other-tenant parents all count."""
    tenant, other = make_tenant_id(), make_tenant_id()
    warehouse.apply(tenant, "account", [upsert("ACC", T0), upsert("OLD", T0)])
    warehouse.apply(tenant, "account", [Delete("OLD", T1)])
    warehouse.apply(other, "account", [upsert("THEIRS", T0)])
    contacts = [
        upsert("C1", T0, account_id="ACC"),
        upsert("C2", T0, account_id="OLD"),
        upsert("C3", T0),
        upsert("C4", T0, account_id="NOPE"),
        upsert("C5", T0, account_id="THEIRS"),
        upsert("C6", T0, account_id="NOPE"),
    ]
    warehouse.apply(tenant, "contact", contacts)
    warehouse.apply(tenant, "contact", [Delete("C6", T1)])  # deleted rows are not checked

    assert warehouse.orphans(tenant, "contact") == {"account_id": 4}
    assert warehouse.orphans(other, "contact") == {"account_id": 0}
    assert warehouse.orphans(tenant, "account") == {}

    warehouse.apply(tenant, "opportunity", [upsert("OPP", T0, account_id="ACC")])
    warehouse.apply(tenant, "product", [upsert("PRD", T0)])
    lines = [
        upsert("L1", T0, opportunity_id="OPP", product_id="PRD"),
        upsert("L2", T0, opportunity_id="OPP", product_id="GONE"),
        upsert("L3", T0, product_id="PRD"),
    ]
    warehouse.apply(tenant, "opportunity_line", lines)
    assert warehouse.orphans(tenant, "opportunity_line") == {
        "opportunity_id": 1,
        "product_id": 1,
    }


# --------------------------------------------------------------------------- isolation


def test_every_new_read_is_scoped_to_its_tenant(
    warehouse: Warehouse, make_tenant_id: Callable[[], str]
) -> None:
    """Tenant isolation: the same CRM ids in two tenants never show in each other's history,
    snapshots, change feeds, quarantine, orphans or health."""
    a, b = make_tenant_id(), make_tenant_id()
    warehouse.apply(a, "contact", [upsert("C", T0, last_name="a", account_id="X")])
    warehouse.apply(b, "contact", [upsert("C", T1, last_name="b"), upsert("C", T2)])
    warehouse.apply(b, "contact", [upsert("BAD", T0, last_name="\x00")])
    warehouse.apply(b, "account", [upsert("X", T0)])
    warehouse.finish_run(warehouse.start_run(b, "contact"), "failed", error_kind="error")

    assert [v["fields"]["last_name"] for v in warehouse.history(a, "contact", "C")] == ["a"]
    assert warehouse.as_of(a, "contact", T3)["C"]["fields"]["last_name"] == "a"
    assert [c["source_id"] for c in warehouse.changes_since(a, "contact", EPOCH)] == ["C"]
    assert (warehouse.change_count(a, "contact"), warehouse.change_count(b, "contact")) == (1, 2)
    assert warehouse.open_quarantine(a) == [] and warehouse.quarantine_count(a) == 0
    assert warehouse.quarantine_count(b) == 1
    assert warehouse.orphans(a, "contact") == {"account_id": 1}  # X exists only in b
    assert warehouse.sync_health(a) == {}

    [held] = warehouse.open_quarantine(b)
    assert warehouse.resolve_quarantine(a, [held["id"]]) == 0
    assert warehouse.record_quarantine_attempt(a, [held["id"]]) == 0
    assert warehouse.open_quarantine(b)[0]["attempts"] == 1


def test_delete_log_entry_never_replaces_the_deleted_version_it_duplicates(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """Found by `make chaos`: queryAll's deleted row and the delete log's entry for the same
    delete arrive in one page with the same stamp; the row must keep the record's last
    values, not fall back to older ones or to an empty tombstone."""
    warehouse.apply(tenant_id, "lead", [upsert("L", T0, last_name="Old")])
    soft = Upsert("L", T1, {"last_name": "New"}, {"Id": "L", "LastName": "New", "IsDeleted": True},
                  is_deleted=True)
    warehouse.apply(tenant_id, "lead", [soft, Delete("L", T1)])
    row = current(warehouse.engine, tenant_id, "lead", "L")
    assert (row["is_deleted"], row["last_name"], row["raw"]["LastName"]) == (True, "New", "New")

    # A record created and deleted between two syncs: never a NULL-raw tombstone.
    fresh = Upsert("F", T1, {"last_name": "Brief"}, {"Id": "F", "IsDeleted": True},
                   is_deleted=True)
    warehouse.apply(tenant_id, "lead", [fresh, Delete("F", T1)])
    assert current(warehouse.engine, tenant_id, "lead", "F")["raw"] == {"Id": "F",
                                                                       "IsDeleted": True}

    # A later delete of a version read in the same page keeps that version's values.
    warehouse.apply(tenant_id, "lead", [upsert("G", T0, last_name="Kept"), Delete("G", T1)])
    row = current(warehouse.engine, tenant_id, "lead", "G")
    assert (row["is_deleted"], row["last_name"], row["source_modified_at"]) == (True, "Kept", T1)
