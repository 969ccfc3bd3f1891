"""Quarantine: what cannot be stored faithfully waits there with the reason (both backends)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from accrue import schema
from accrue.warehouse import Warehouse, WriteStats
from accrue_pipelines_tests.core.test_warehouse_history import (
    T0,
    T1,
    T2,
    current,
    upsert,
)
from connectors.base import LiveIds, Quarantine, Upsert

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
