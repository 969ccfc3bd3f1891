"""Record history, quarantine, reconciliation, orphans and sync health (both backends)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue import schema
from accrue.warehouse import ABANDONED_ERROR, Warehouse, WriteStats
from connectors.base import Delete, LiveIds, Quarantine, Upsert

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


# --------------------------------------------------------------------------- quarantine

GOOD = {"name": "Deal", "amount": 100.0, "close_date": "2024-06-30"}

QUARANTINE_CASES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    (
        "over-length",
        {"name": "n" * 300},
        {},
        "opportunity.name: 300 characters, the column holds 255",
    ),
    ("NaN", {"amount": float("nan")}, {}, "opportunity.amount: not a finite number (nan)"),
    ("inf", {"probability": "inf"}, {}, "opportunity.probability: not a finite number (inf)"),
    ("absurd", {"amount": 1e16}, {}, "opportunity.amount: 1e+16 is beyond 1e+15 in magnitude"),
    (
        "surrogate in a column",
        {"name": "ab\ud800"},
        {},
        "opportunity.name: not valid unicode (lone surrogate '\\ud800' at index 2)",
    ),
    (
        "surrogate in raw",
        {},
        {"Description": "x\udfff"},
        "opportunity.raw.Description: not valid unicode (lone surrogate '\\udfff' at index 1)",
    ),
    (
        "NUL in a column",
        {"stage": "Won\x00"},
        {},
        "opportunity.stage: contains a NUL character, which PostgreSQL text cannot hold",
    ),
    (
        "NUL in raw",
        {},
        {"Nested__c": {"a": ["ok", "b\x00"]}},
        "opportunity.raw.Nested__c.a[1]: contains a NUL character",
    ),
    ("NaN in raw", {}, {"Score__c": float("nan")}, "opportunity.raw.Score__c: not a finite"),
    ("bad date", {"close_date": "2024-13-01"}, {}, "opportunity.close_date: not an ISO 8601 date"),
    (
        "naive datetime",
        {"source_created_at": datetime(2024, 1, 1)},
        {},
        "opportunity.source_created_at: naive date-time",
    ),
    ("wrong type", {"is_won": "yes"}, {}, "opportunity.is_won: expected a boolean, got str"),
    ("wrong type list", {"amount": [1]}, {}, "opportunity.amount: expected a number, got list"),
]


@pytest.mark.parametrize(
    ("fields", "raw", "reason"),
    [case[1:] for case in QUARANTINE_CASES],
    ids=[case[0] for case in QUARANTINE_CASES],
)
def test_a_record_that_cannot_be_stored_faithfully_is_quarantined(
    warehouse: Warehouse,
    tenant_id: str,
    fields: dict[str, Any],
    raw: dict[str, Any],
    reason: str,
) -> None:
    """F4: the bad record waits in quarantine with the column and the problem named, while
    the rest of the page and its checkpoint are committed; nothing is altered to fit."""
    bad = upsert("BAD", T0, raw, **{**GOOD, **fields})
    page = [upsert("OK1", T0, **GOOD), bad, upsert("OK2", T0, **GOOD)]
    stats = warehouse.apply(tenant_id, "opportunity", page, {"cursor": "c1"})

    assert stats == WriteStats(upserted=2, quarantined=1)
    assert warehouse.live_ids(tenant_id, "opportunity") == {"OK1", "OK2"}
    assert warehouse.count(tenant_id, "opportunity", include_deleted=True) == 2
    assert warehouse.get_state(tenant_id, "opportunity") == {"cursor": "c1"}
    assert warehouse.change_count(tenant_id, "opportunity") == 2  # not a version we kept
    [held] = warehouse.open_quarantine(tenant_id, "opportunity")
    assert (held["source_id"], held["source_modified_at"], held["attempts"]) == ("BAD", T0, 1)
    assert held["reason"].startswith(reason)
    assert held["resolved_at"] is None and held["object_name"] == "opportunity"
    assert warehouse.quarantine_count(tenant_id, "opportunity") == 1


def test_out_of_range_integer_is_quarantined(warehouse: Warehouse, tenant_id: str) -> None:
    """F4: an integer BIGINT cannot hold is refused, not wrapped or rounded."""
    stats = warehouse.apply(tenant_id, "account", [upsert("A", T0, employee_count=2**63)])
    assert stats == WriteStats(quarantined=1)
    [held] = warehouse.open_quarantine(tenant_id)
    assert held["reason"] == "account.employee_count: outside the 64-bit integer range"
    assert held["raw"]["employee_count"] == 2**63


def test_quarantined_raw_with_invalid_unicode_round_trips(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """F4: the quarantine keeps the record exactly, even what JSONB rejects (lone surrogates,
    NUL): stored as ASCII JSON text, decoded back to the same dict."""
    raw = {"Id": "Q", "Name": "a\ud800b", "Note": "x\x00y", "Deep": {"k\udc00": [1.5, None]}}
    warehouse.apply(tenant_id, "contact", [Upsert("Q", T0, {"last_name": "a\ud800b"}, raw)])
    [held] = warehouse.open_quarantine(tenant_id, "contact")
    assert held["raw"] == raw


def test_a_later_valid_version_resolves_the_quarantine_row(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """F3/F4: a quarantined record is resolved by a valid version not older than it, in the
    same transaction; an older valid version lands but does not resolve it."""
    warehouse.apply(tenant_id, "product", [upsert("P", T1, name="p" * 300)])
    warehouse.apply(tenant_id, "product", [upsert("P", T0, name="older but fine")])
    assert warehouse.quarantine_count(tenant_id, "product") == 1
    assert current(warehouse.engine, tenant_id, "product", "P")["name"] == "older but fine"

    stats = warehouse.apply(tenant_id, "product", [upsert("P", T1, name="fixed")])
    assert stats == WriteStats(upserted=1)
    assert warehouse.quarantine_count(tenant_id, "product") == 0
    assert warehouse.open_quarantine(tenant_id) == []
    with warehouse.engine.connect() as conn:
        q = schema.crm_quarantine
        resolved_at = conn.execute(
            sa.select(q.c.resolved_at).where(q.c.tenant_id == tenant_id)
        ).scalar_one()
    assert resolved_at is not None


def test_a_late_bad_version_of_a_newer_record_waits_for_nothing(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """F3/F4: a bad version older than the stored row (a lookback replay) is recorded in
    quarantine but resolved at once: the warehouse already holds a newer faithful version."""
    warehouse.apply(tenant_id, "product", [upsert("P", T2, name="current")])
    stats = warehouse.apply(tenant_id, "product", [upsert("P", T1, name="\x00")])
    assert stats == WriteStats(quarantined=1)
    assert warehouse.quarantine_count(tenant_id, "product") == 0
    assert current(warehouse.engine, tenant_id, "product", "P")["name"] == "current"
    with warehouse.engine.connect() as conn:
        q = schema.crm_quarantine
        kept = conn.execute(sa.select(q.c.reason).where(q.c.tenant_id == tenant_id)).scalar_one()
    assert kept.startswith("product.name: contains a NUL character")


def test_a_newer_bad_version_replaces_the_open_row(warehouse: Warehouse, tenant_id: str) -> None:
    """F2: one open row per record; a newer bad version replaces reason and raw, a replayed
    older one only counts as another attempt."""
    warehouse.apply(tenant_id, "opportunity", [upsert("O", T1, name="n" * 256)])
    warehouse.apply(tenant_id, "opportunity", [upsert("O", T2, amount=float("inf"))])
    warehouse.apply(tenant_id, "opportunity", [upsert("O", T1, name="n" * 256)])  # replay

    [held] = warehouse.open_quarantine(tenant_id, "opportunity")
    assert held["attempts"] == 3
    assert held["source_modified_at"] == T2
    assert held["reason"].startswith("opportunity.amount: not a finite number (inf)")
    assert held["last_seen_at"] >= held["first_seen_at"]


def test_quarantine_changes_from_connectors(warehouse: Warehouse, tenant_id: str) -> None:
    """F4: records a connector cannot map are kept with its reason, id or not, and can be
    retried (attempts) and resolved by id, only within the tenant."""
    stats = warehouse.apply(
        tenant_id,
        "lead",
        [
            Quarantine("L1", T0, {"Id": "L1", "Status": "???"}, "unknown lead status '???'"),
            Quarantine(None, None, {"garbage": True}, "record without an Id"),
            Quarantine("x" * 70, datetime(2024, 1, 1), {"Id": "long"}, "odd record"),
            upsert("L2", T0),
        ],
        {"cursor": "q"},
    )
    assert stats == WriteStats(upserted=1, quarantined=3)
    held = {row["reason"]: row for row in warehouse.open_quarantine(tenant_id, "lead")}
    assert held["unknown lead status '???'"]["source_id"] == "L1"
    assert held["record without an Id"]["source_id"] is None
    odd = next(row for reason, row in held.items() if reason.startswith("odd record"))
    assert odd["source_id"] is None and odd["source_modified_at"] is None
    assert "source_id not storable: 70 characters" in odd["reason"]
    assert "naive" in odd["reason"]

    ids = [row["id"] for row in held.values()]
    assert warehouse.record_quarantine_attempt(tenant_id, ids[:1]) == 1
    assert warehouse.open_quarantine(tenant_id, "lead")[0]["attempts"] == 2
    assert warehouse.resolve_quarantine(tenant_id, ids[:2]) == 2
    assert warehouse.resolve_quarantine(tenant_id, ids[:2]) == 2  # idempotent
    assert warehouse.quarantine_count(tenant_id) == 1


def test_an_undated_quarantined_record_waits_for_a_valid_version(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """F4: a connector's undated quarantine stays open through its own page and unrelated
    ones, and is resolved by the record's next valid version (a retry that landed)."""
    bad = Quarantine("P", None, {"Id": "P"}, "product.unit_cost: a mapping bug")
    warehouse.apply(tenant_id, "product", [bad, upsert("OTHER", T0)])
    warehouse.apply(tenant_id, "product", [bad])
    [held] = warehouse.open_quarantine(tenant_id, "product")
    assert held["attempts"] == 2

    warehouse.apply(tenant_id, "product", [upsert("P", T0, name="mapped now")])
    assert warehouse.quarantine_count(tenant_id, "product") == 0
    # A caller resolving its successful retry still counts it.
    assert warehouse.resolve_quarantine(tenant_id, [held["id"]]) == 1


def test_a_deleted_record_with_unstorable_values_is_still_deleted(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """Deletes are flagged: a record the CRM deleted must not stay live because its last
    values cannot be stored; the deletion lands, the values wait in quarantine."""
    warehouse.apply(tenant_id, "account", [upsert("A", T0, name="Acme")])
    bad_delete = Upsert("A", T1, {"name": "x" * 300}, {"Id": "A"}, is_deleted=True)
    warehouse.apply(tenant_id, "account", [bad_delete])

    assert warehouse.live_ids(tenant_id, "account") == set()
    row = current(warehouse.engine, tenant_id, "account", "A")
    assert (row["is_deleted"], row["deleted_at"], row["name"]) == (True, T1, "Acme")
    assert warehouse.quarantine_count(tenant_id, "account") == 1  # not resolved by itself
    assert warehouse.history(tenant_id, "account", "A")[-1]["is_deleted"] is True


def test_invalid_pages_are_still_refused_whole(warehouse: Warehouse, tenant_id: str) -> None:
    """F4: connector bugs (not data problems) fail the page before anything is written."""
    live = LiveIds(frozenset({"A"}), T1)
    with pytest.raises(ValueError, match="at most one LiveIds"):
        warehouse.apply(tenant_id, "account", [upsert("A", T0), live, live])
    with pytest.raises(ValueError, match="naive"):
        warehouse.apply(tenant_id, "account", [LiveIds(frozenset(), datetime(2024, 1, 1))])
    assert warehouse.count(tenant_id, "account", include_deleted=True) == 0
    assert warehouse.change_count(tenant_id, "account") == 0


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


# --------------------------------------------------------------------------- sync runs


def run_status(engine: Engine, run_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        found = conn.execute(sa.select(schema.sync_run).where(schema.sync_run.c.id == run_id))
        return dict(found.mappings().one())


def test_start_run_abandons_a_run_left_running(
    warehouse: Warehouse, make_tenant_id: Callable[[], str]
) -> None:
    """F4: a SIGKILLed sync leaves a `running` row; the next start of that object closes it."""
    tenant, other = make_tenant_id(), make_tenant_id()
    killed = warehouse.start_run(tenant, "account")
    busy_elsewhere = warehouse.start_run(tenant, "contact")
    other_tenant = warehouse.start_run(other, "account")

    fresh = warehouse.start_run(tenant, "account")
    dead = run_status(warehouse.engine, killed)
    assert (dead["status"], dead["error"], dead["error_kind"]) == (
        "failed",
        ABANDONED_ERROR,
        "error",
    )
    assert run_status(warehouse.engine, fresh)["status"] == "running"
    assert run_status(warehouse.engine, busy_elsewhere)["status"] == "running"
    assert run_status(warehouse.engine, other_tenant)["status"] == "running"


def test_sync_health_counts_failures_since_the_last_success(
    warehouse: Warehouse, make_tenant_id: Callable[[], str]
) -> None:
    """Health: a streak of failures since the last success, the last outcome and its kind."""
    tenant, other = make_tenant_id(), make_tenant_id()

    def run(object_name: str, status: str, **kw: Any) -> int:
        run_id = warehouse.start_run(tenant, object_name)
        warehouse.finish_run(run_id, status, **kw)
        return run_id

    run("account", "failed", error="boom", error_kind="error")
    ok = run("account", "succeeded", stats=WriteStats(1, 0, 0, 2))
    run("account", "failed", error="password=hunter2 rejected", error_kind="credentials")
    run("account", "stopped", error="API quota reached", error_kind="quota")
    run("account", "failed", error="503", error_kind="outage")
    run("contact", "failed", error="x", error_kind="error")
    run("contact", "failed", error="y", error_kind="error")
    warehouse.start_run(tenant, "lead")

    health = warehouse.sync_health(tenant)
    assert set(health) == {"account", "contact", "lead"}
    account = health["account"]
    assert account["consecutive_failures"] == 2  # `stopped` neither counts nor resets
    assert (account["last_status"], account["error_kind"], account["last_error"]) == (
        "failed",
        "outage",
        "503",
    )
    assert account["last_success_at"] == run_status(warehouse.engine, ok)["finished_at"]
    assert run_status(warehouse.engine, ok)["records_quarantined"] == 2
    assert health["contact"]["consecutive_failures"] == 2
    assert health["contact"]["last_success_at"] is None
    assert health["lead"]["last_status"] == "running"
    assert warehouse.sync_health(other) == {}
    stored_errors = [r["error"] or "" for r in warehouse.recent_runs(tenant, 10)]
    assert not any("hunter2" in e for e in stored_errors)


def test_finish_run_records_stopped_runs_and_error_kinds(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """F4: a clean stop at the quota is recorded as `stopped` (partial, not complete) with
    who has to act; an unknown kind never hides the failure being recorded."""
    odd = warehouse.start_run(tenant_id, "contact")
    warehouse.finish_run(odd, "failed", error="boom", error_kind="cosmic-rays")
    assert run_status(warehouse.engine, odd)["error_kind"] == "error"
    run_id = warehouse.start_run(tenant_id, "account")
    with pytest.raises(ValueError, match="final status"):
        warehouse.finish_run(run_id, "paused")
    metadata = {"records_read": 5, "upserted": 3, "quarantined": 2, "cursor": "c"}
    warehouse.finish_run(run_id, "stopped", metadata, error="quota", error_kind="quota")
    stored = run_status(warehouse.engine, run_id)
    assert (stored["status"], stored["error_kind"], stored["records_quarantined"]) == (
        "stopped",
        "quota",
        2,
    )


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
