"""The warehouse write path, on SQLite and PostgreSQL (each test runs on both)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue import schema
from accrue.warehouse import Warehouse, WriteStats
from accrue.warehouse.bulk_write import BulkWriter
from connectors.base import Checkpoint, Delete, Upsert

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def upsert(source_id: str, at: datetime, **fields: Any) -> Upsert:
    return Upsert(source_id, at, fields, {"Id": source_id, "SystemModstamp": at, **fields})


def account_page(at: datetime, n: int = 5, *, prefix: str = "001", **fields: Any) -> list[Upsert]:
    return [
        upsert(f"{prefix}{i:015d}", at, name=f"Account {i}", employee_count=i, **fields)
        for i in range(n)
    ]


def row(engine: Engine, tenant_id: str, object_name: str, source_id: str) -> dict[str, Any]:
    table = schema.object_table(object_name)
    with engine.connect() as conn:
        found = (
            conn.execute(
                sa.select(table).where(
                    table.c.tenant_id == tenant_id, table.c.source_id == source_id
                )
            )
            .mappings()
            .one()
        )
    return dict(found)


def all_rows(engine: Engine, tenant_id: str, object_name: str) -> list[dict[str, Any]]:
    table = schema.object_table(object_name)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(table).where(table.c.tenant_id == tenant_id).order_by(table.c.source_id)
        ).mappings()
        return [dict(r) for r in rows]


# --------------------------------------------------------------------------- idempotence (F2)


def test_replaying_a_page_leaves_one_row_per_id(warehouse: Warehouse, tenant_id: str) -> None:
    """F2: a page delivered twice (retry, overlapping cursor) never duplicates a record."""
    page = account_page(T0)
    first = warehouse.apply(tenant_id, "account", page, {"cursor": "a"})
    before = all_rows(warehouse.engine, tenant_id, "account")
    second = warehouse.apply(tenant_id, "account", page, {"cursor": "a"})
    after = all_rows(warehouse.engine, tenant_id, "account")

    assert first == WriteStats(upserted=5)
    assert second == WriteStats(upserted=5)  # same version again: re-applied, not a new row
    assert warehouse.count(tenant_id, "account") == 5
    assert warehouse.duplicate_keys(tenant_id, "account") == 0
    strip = [{k: v for k, v in r.items() if k != "synced_at"} for r in after]
    assert strip == [{k: v for k, v in r.items() if k != "synced_at"} for r in before]


def test_replay_after_update_keeps_newest_values(warehouse: Warehouse, tenant_id: str) -> None:
    """F2/F3: replaying an old page after an update neither duplicates nor reverts the update."""
    old, new = account_page(T0), account_page(T0 + timedelta(hours=1), industry="Energy")
    warehouse.apply(tenant_id, "account", old, None)
    assert warehouse.apply(tenant_id, "account", new, None).upserted == 5
    replay = warehouse.apply(tenant_id, "account", old, None)

    assert replay == WriteStats(skipped_stale=5)
    assert warehouse.count(tenant_id, "account") == 5
    assert warehouse.duplicate_keys(tenant_id, "account") == 0
    for r in all_rows(warehouse.engine, tenant_id, "account"):
        assert r["industry"] == "Energy"
        assert r["source_modified_at"] == T0 + timedelta(hours=1)


def test_older_version_is_skipped_as_stale(warehouse: Warehouse, tenant_id: str) -> None:
    """F3: a change to a historical record applies; an older version arriving later does not."""
    warehouse.apply(tenant_id, "account", [upsert("A", T0, name="v1")], None)
    newer = warehouse.apply(
        tenant_id, "account", [upsert("A", T0 + timedelta(minutes=5), name="v2")]
    )
    older = warehouse.apply(tenant_id, "account", [upsert("A", T0 - timedelta(days=1), name="v0")])

    assert newer == WriteStats(upserted=1)
    assert older == WriteStats(skipped_stale=1)
    stored = row(warehouse.engine, tenant_id, "account", "A")
    assert stored["name"] == "v2"
    assert stored["source_modified_at"] == T0 + timedelta(minutes=5)


def test_within_a_page_the_newest_version_wins(warehouse: Warehouse, tenant_id: str) -> None:
    """F2: one page holding several versions of a record writes one row, the newest."""
    page = [
        upsert("A", T0 + timedelta(minutes=2), name="newest"),
        upsert("A", T0, name="oldest"),
        upsert("B", T0, name="b"),
        upsert("A", T0 + timedelta(minutes=1), name="middle"),
    ]
    stats = warehouse.apply(tenant_id, "account", page, None)

    assert stats == WriteStats(upserted=2, skipped_stale=2)
    assert row(warehouse.engine, tenant_id, "account", "A")["name"] == "newest"
    assert warehouse.count(tenant_id, "account") == 2


def test_large_page_is_split_under_the_parameter_limit(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """F2: a page bigger than one statement can carry is written whole, once."""
    page = account_page(T0, 2_500)
    assert warehouse.apply(tenant_id, "account", page, None).upserted == 2_500
    assert warehouse.apply(tenant_id, "account", page, None).upserted == 2_500
    assert warehouse.count(tenant_id, "account") == 2_500
    assert warehouse.duplicate_keys(tenant_id, "account") == 0


def test_concurrent_writers_never_duplicate(engine: Engine, tenant_id: str) -> None:
    """F2: two overlapping syncs writing at once (e.g. a manual run during a scheduled one)
    still leave one row per record: the unique key, not a read-then-write check, decides."""
    pages = [account_page(T0 + timedelta(minutes=m), 60) for m in range(4)]

    def sync(order: list[int]) -> None:
        worker = Warehouse(engine, batch_rows=25)
        for number in order:
            worker.apply(tenant_id, "account", pages[number], None)

    threads = [
        threading.Thread(target=sync, args=([0, 1, 2, 3],)),
        threading.Thread(target=sync, args=([3, 2, 1, 0],)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert Warehouse(engine).count(tenant_id, "account") == 60
    assert Warehouse(engine).duplicate_keys(tenant_id, "account") == 0
    newest = T0 + timedelta(minutes=3)
    assert {r["source_modified_at"] for r in all_rows(engine, tenant_id, "account")} == {newest}


# --------------------------------------------------------------------------- atomic state (F4)


def test_state_is_committed_with_the_page(warehouse: Warehouse, tenant_id: str) -> None:
    """F4: the checkpoint is stored with its records, datetimes as ISO strings."""
    assert warehouse.get_state(tenant_id, "account") is None
    warehouse.apply(tenant_id, "account", account_page(T0), {"cursor": T0, "page": 1})
    assert warehouse.get_state(tenant_id, "account") == {"cursor": T0.isoformat(), "page": 1}

    warehouse.apply(tenant_id, "account", [], {"cursor": "done"})  # a checkpoint with no records
    assert warehouse.get_state(tenant_id, "account") == {"cursor": "done"}
    warehouse.apply(tenant_id, "account", account_page(T0), None)  # None leaves state alone
    assert warehouse.get_state(tenant_id, "account") == {"cursor": "done"}


@pytest.fixture
def fail_on_crm_insert(engine: Engine, monkeypatch: pytest.MonkeyPatch
                       ) -> Iterator[Callable[[str, int], None]]:
    """Make the n-th INSERT into a table raise, as a crash or lost connection would.

    At the cursor (an engine event), so it fires whichever way the statement is sent:
    SQLAlchemy's executemany, the driver's, or INSERT ... SELECT from a staging table;
    and at the COPY that takes new records straight into the table on PostgreSQL.
    """
    armed: list[Callable[..., None]] = []
    copies: list[Callable[[str], None]] = []
    copy = BulkWriter._copy

    def counted_copy(self: BulkWriter, conn: Any, target: str, *args: Any) -> None:
        for seen in copies:
            seen(target.strip('"').upper())
        copy(self, conn, target, *args)

    monkeypatch.setattr(BulkWriter, "_copy", counted_copy)

    def arm(table_name: str, nth: int) -> None:
        seen = {"count": 0}

        def count(target: str) -> None:
            if target == table_name.upper():
                seen["count"] += 1
                if seen["count"] == nth:
                    raise sa.exc.OperationalError("INSERT", {}, Exception("connection lost"))

        def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if statement.lstrip().upper().startswith(f"INSERT INTO {table_name.upper()} "):
                count(table_name.upper())

        sa.event.listen(engine, "before_cursor_execute", before)
        armed.append(before)
        copies.append(count)

    yield arm
    for before in armed:
        sa.event.remove(engine, "before_cursor_execute", before)


def test_failure_mid_page_commits_neither_rows_nor_state(
    engine: Engine, tenant_id: str, fail_on_crm_insert: Callable[[str, int], None]
) -> None:
    """F4: a page failing after some rows were written leaves rows and cursor as they were."""
    warehouse = Warehouse(engine, batch_rows=2)
    warehouse.apply(tenant_id, "account", account_page(T0, 3), {"cursor": "page-1"})
    before = all_rows(engine, tenant_id, "account")

    fail_on_crm_insert("crm_change_log", 1)  # the page's rows are written, its history fails
    page2 = account_page(T0 + timedelta(hours=1), 6, industry="Retail")
    with pytest.raises(sa.exc.OperationalError):
        warehouse.apply(tenant_id, "account", page2, {"cursor": "page-2"})

    assert all_rows(engine, tenant_id, "account") == before
    assert warehouse.get_state(tenant_id, "account") == {"cursor": "page-1"}


def test_the_commit_observer_hears_of_committed_pages_only(
    engine: Engine, tenant_id: str, fail_on_crm_insert: Callable[[str, int], None]
) -> None:
    """`on_committed` (the chaos journal's hook) is told of a page after its commit, never
    of one rolled back, with the page's changes as they were handed to `apply`."""
    heard: list[tuple[str, str, list[str]]] = []
    warehouse = Warehouse(engine, on_committed=lambda tenant, name, changes: heard.append(
        (tenant, name, [change.source_id for change in changes])))
    page1 = account_page(T0, 3)
    warehouse.apply(tenant_id, "account", iter(page1), {"cursor": "page-1"})
    fail_on_crm_insert("crm_change_log", 1)
    with pytest.raises(sa.exc.OperationalError):
        warehouse.apply(tenant_id, "account", account_page(T0 + timedelta(hours=1), 2),
                        {"cursor": "page-2"})
    assert heard == [(tenant_id, "account", [change.source_id for change in page1])]


def test_failure_writing_state_rolls_back_the_rows(
    engine: Engine, tenant_id: str, fail_on_crm_insert: Callable[[str, int], None]
) -> None:
    """F4: if the checkpoint cannot be saved, the records it covers are not saved either."""
    warehouse = Warehouse(engine)
    fail_on_crm_insert("sync_state", 1)
    page = account_page(T0) + [upsert("BAD", T0, name="x" * 256)]
    with pytest.raises(sa.exc.OperationalError):
        warehouse.apply(tenant_id, "account", page, {"cursor": "x"})
    assert warehouse.count(tenant_id, "account", include_deleted=True) == 0
    assert warehouse.change_count(tenant_id, "account") == 0  # history rolls back too
    assert warehouse.quarantine_count(tenant_id) == 0  # and so does quarantine
    assert warehouse.get_state(tenant_id, "account") is None


def test_resuming_after_a_failure_completes_without_loss_or_duplicates(
    engine: Engine, tenant_id: str, fail_on_crm_insert: Callable[[str, int], None]
) -> None:
    """F4: the sync restarted from the last committed state ends with every record exactly once."""
    pages = [account_page(T0, 4, prefix=f"00{p}") for p in range(3)]
    warehouse = Warehouse(engine, batch_rows=3)
    warehouse.apply(tenant_id, "account", pages[0], {"page": 0})
    fail_on_crm_insert("crm_change_log", 1)  # page 1's rows written, then a failure
    with pytest.raises(sa.exc.OperationalError):
        warehouse.apply(tenant_id, "account", pages[1], {"page": 1})

    resume_from = warehouse.get_state(tenant_id, "account")
    assert resume_from == {"page": 0}
    # A connector resuming from {"page": 0} re-reads page 1 (and, overlapping, page 0 again).
    healthy = Warehouse(engine)
    for number in range(resume_from["page"], 3):
        # The failure injection fires once; later inserts go through.
        healthy.apply(tenant_id, "account", pages[number], {"page": number})
    assert warehouse.count(tenant_id, "account") == 12
    assert warehouse.duplicate_keys(tenant_id, "account") == 0
    assert warehouse.get_state(tenant_id, "account") == {"page": 2}


def test_invalid_record_is_quarantined_and_the_page_lands(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """F4: one record the warehouse cannot store must not block the page (or the tenant's
    sync forever): it waits in quarantine while the rest and the checkpoint are committed."""
    page = account_page(T0, 3) + [upsert("BAD", T0, employee_count="many")]
    stats = warehouse.apply(tenant_id, "account", page, {"cursor": "x"})

    assert stats == WriteStats(upserted=3, quarantined=1)
    assert warehouse.count(tenant_id, "account", include_deleted=True) == 3
    assert "BAD" not in warehouse.live_ids(tenant_id, "account")
    assert warehouse.get_state(tenant_id, "account") == {"cursor": "x"}
    [held] = warehouse.open_quarantine(tenant_id, "account")
    assert held["source_id"] == "BAD"
    assert held["reason"] == "account.employee_count: expected an integer, got str"


def test_naive_timestamps_and_checkpoints_are_refused(warehouse: Warehouse, tenant_id: str) -> None:
    """F3: newest-wins needs comparable stamps, so a zone-less stamp is a connector bug."""
    with pytest.raises(ValueError, match="naive"):
        warehouse.apply(tenant_id, "account", [upsert("A", datetime(2024, 1, 1))], None)
    with pytest.raises(TypeError, match="Checkpoint"):
        warehouse.apply(tenant_id, "account", [Checkpoint({"c": 1})], None)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="source_id"):
        warehouse.apply(tenant_id, "account", [upsert("", T0)], None)
    assert warehouse.count(tenant_id, "account", include_deleted=True) == 0


def test_over_long_source_id_is_quarantined(warehouse: Warehouse, tenant_id: str) -> None:
    """F4: an id the key cannot hold is kept in quarantine (without a key), not truncated."""
    long_id = "x" * 65
    stats = warehouse.apply(tenant_id, "account", [upsert(long_id, T0), upsert("A", T0)])
    assert stats == WriteStats(upserted=1, quarantined=1)
    [held] = warehouse.open_quarantine(tenant_id, "account")
    assert held["source_id"] is None
    assert held["reason"] == "account.source_id: 65 characters, the column holds 64"
    assert held["raw"]["Id"] == long_id
    # The same document seen again is the same open row, with one more attempt.
    warehouse.apply(tenant_id, "account", [upsert(long_id, T0)])
    [again] = warehouse.open_quarantine(tenant_id, "account")
    assert (again["id"], again["attempts"]) == (held["id"], 2)


# --------------------------------------------------------------------------- deletes (F3)


def test_delete_keeps_the_row_and_a_newer_version_undeletes(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """F3: a delete is soft (history kept); a later restore in the CRM revives the row."""
    warehouse.apply(tenant_id, "account", [upsert("A", T0, name="Acme")], None)
    deleted_at = T0 + timedelta(hours=1)
    assert warehouse.apply(tenant_id, "account", [Delete("A", deleted_at)]) == WriteStats(deleted=1)

    gone = row(warehouse.engine, tenant_id, "account", "A")
    assert (gone["is_deleted"], gone["deleted_at"], gone["name"]) == (True, deleted_at, "Acme")
    assert warehouse.count(tenant_id, "account") == 0
    assert warehouse.count(tenant_id, "account", include_deleted=True) == 1
    assert warehouse.live_ids(tenant_id, "account") == set()

    # Replaying the pre-delete version must not resurrect the record.
    assert warehouse.apply(tenant_id, "account", [upsert("A", T0, name="Acme")]).skipped_stale == 1
    assert row(warehouse.engine, tenant_id, "account", "A")["is_deleted"] is True

    restored = upsert("A", T0 + timedelta(hours=2), name="Acme Restored")
    assert warehouse.apply(tenant_id, "account", [restored]) == WriteStats(upserted=1)
    back = row(warehouse.engine, tenant_id, "account", "A")
    assert (back["is_deleted"], back["deleted_at"], back["name"]) == (False, None, "Acme Restored")
    assert warehouse.live_ids(tenant_id, "account") == {"A"}


def test_delete_of_unknown_id_leaves_a_tombstone(warehouse: Warehouse, tenant_id: str) -> None:
    """F4: a delete seen before (or without) the record is kept, so it cannot be lost."""
    assert warehouse.apply(tenant_id, "contact", [Delete("C1", T0)]) == WriteStats(deleted=1)
    tomb = row(warehouse.engine, tenant_id, "contact", "C1")
    assert tomb["is_deleted"] is True and tomb["deleted_at"] == T0
    assert tomb["raw"] is None and tomb["email"] is None

    # The record's older version arriving late stays deleted; a newer one revives it.
    late = upsert("C1", T0 - timedelta(minutes=1), email="old@example.com")
    assert warehouse.apply(tenant_id, "contact", [late]).skipped_stale == 1
    assert warehouse.count(tenant_id, "contact") == 0
    warehouse.apply(tenant_id, "contact", [upsert("C1", T0 + timedelta(minutes=1), email="a@b.c")])
    assert warehouse.live_ids(tenant_id, "contact") == {"C1"}
    assert warehouse.duplicate_keys(tenant_id, "contact") == 0


def test_soft_deleted_upsert_marks_the_row_and_keeps_first_deletion_time(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """F3: a record the CRM reports with IsDeleted keeps its values and its deletion time."""
    warehouse.apply(tenant_id, "lead", [upsert("L", T0, last_name="Doe")])
    first = Upsert("L", T0 + timedelta(hours=1), {"last_name": "Doe"}, {}, is_deleted=True)
    again = Upsert("L", T0 + timedelta(hours=2), {"last_name": "Doe"}, {}, is_deleted=True)
    assert warehouse.apply(tenant_id, "lead", [first]) == WriteStats(deleted=1)
    assert warehouse.apply(tenant_id, "lead", [again]) == WriteStats(deleted=1)

    stored = row(warehouse.engine, tenant_id, "lead", "L")
    assert stored["is_deleted"] is True
    assert stored["deleted_at"] == T0 + timedelta(hours=1)
    assert stored["last_name"] == "Doe"


def test_mixed_page_of_upserts_and_deletes(warehouse: Warehouse, tenant_id: str) -> None:
    """F2/F3: per record, the newest of its upserts and deletes in a page is what lands."""
    page: list[Upsert | Delete] = [
        upsert("A", T0, name="a"),
        Delete("A", T0 + timedelta(seconds=1)),
        Delete("B", T0),
        upsert("B", T0 + timedelta(seconds=1), name="b"),
        upsert("C", T0, name="c"),
    ]
    assert warehouse.apply(tenant_id, "account", page) == WriteStats(2, 1, 2)
    assert warehouse.live_ids(tenant_id, "account") == {"B", "C"}


# --------------------------------------------------------------------------- isolation


def test_two_tenants_with_the_same_ids_are_independent(
    warehouse: Warehouse, make_tenant_id: Callable[[], str]
) -> None:
    """F2: the key is (tenant, source id): same CRM ids in two tenants never collide."""
    a, b = make_tenant_id(), make_tenant_id()
    warehouse.apply(a, "account", account_page(T0, 3, industry="A"), {"cursor": "a"})
    warehouse.apply(b, "account", account_page(T0, 5, industry="B"), {"cursor": "b"})
    warehouse.apply(b, "account", [Delete("001000000000000000", T0 + timedelta(hours=1))])

    assert (warehouse.count(a, "account"), warehouse.count(b, "account")) == (3, 4)
    assert {r["industry"] for r in all_rows(warehouse.engine, a, "account")} == {"A"}
    assert len(warehouse.live_ids(a, "account")) == 3
    assert warehouse.get_state(a, "account") == {"cursor": "a"}
    assert warehouse.summary(a)[0]["deleted_rows"] == 0

    # A newer version written for b leaves a's copy untouched.
    warehouse.apply(b, "account", account_page(T0 + timedelta(days=1), 3, industry="B2"))
    assert {r["industry"] for r in all_rows(warehouse.engine, a, "account")} == {"A"}

    warehouse.reset_state(b)
    assert warehouse.get_state(b, "account") is None
    assert warehouse.get_state(a, "account") == {"cursor": "a"}
    assert warehouse.duplicate_keys(a, "account") == warehouse.duplicate_keys(b, "account") == 0


def test_unknown_object_names_the_valid_ones(warehouse: Warehouse, tenant_id: str) -> None:
    with pytest.raises(KeyError, match="valid objects: account, contact"):
        warehouse.apply(tenant_id, "acount", [], None)
    with pytest.raises(KeyError, match="opportunity_line"):
        warehouse.count(tenant_id, "nope")


def test_invalid_tenant_id_is_refused(warehouse: Warehouse) -> None:
    with pytest.raises(ValueError, match="invalid tenant id"):
        warehouse.count("Bad|Tenant", "account")
