"""How the write path builds rows: model columns, the raw document, values coerced alike
(both backends)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from accrue import schema
from accrue.warehouse import Warehouse, WriteStats
from accrue_pipelines_tests.core.test_warehouse import T0, row, upsert
from connectors.base import Upsert
from connectors.common_model import COMMON_OBJECTS

# --------------------------------------------------------------------------- row building


def test_rows_use_model_columns_and_raw_keeps_the_source(
    warehouse: Warehouse, tenant_id: str
) -> None:
    """F3: unknown keys are ignored, missing ones are NULL, and raw holds the full record."""
    paris = timezone(timedelta(hours=2))
    change = Upsert(
        "O1",
        datetime(2024, 3, 1, 14, 0, tzinfo=paris),
        {
            "name": "Deal",
            "amount": 1234.5,
            "is_won": True,
            "close_date": date(2024, 6, 30),
            "source_created_at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=paris),
            "not_a_column": "ignored",
            "tenant_id": "someone-else",
        },
        {
            "Id": "O1",
            "Custom__c": {"nested": [datetime(2024, 1, 1, tzinfo=UTC)]},
            "Empty": None,
        },
    )
    warehouse.apply(tenant_id, "opportunity", [change])
    stored = row(warehouse.engine, tenant_id, "opportunity", "O1")

    assert stored["tenant_id"] == tenant_id
    assert stored["name"] == "Deal" and stored["amount"] == 1234.5 and stored["is_won"] is True
    assert stored["close_date"] == date(2024, 6, 30)
    assert stored["stage"] is None and stored["probability"] is None
    assert "not_a_column" not in stored
    # Stored and returned as aware UTC on both backends.
    assert stored["source_modified_at"] == T0 and stored["source_modified_at"].tzinfo is not None
    assert stored["source_created_at"] == datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert stored["raw"] == {
        "Id": "O1",
        "Custom__c": {"nested": ["2024-01-01T00:00:00+00:00"]},
        "Empty": None,
    }
    assert set(stored) == set(schema.SYSTEM_COLUMNS) | {
        c.name for c in COMMON_OBJECTS["opportunity"]
    }


def test_over_long_text_is_quarantined_not_truncated(
    warehouse: Warehouse, tenant_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    """F4: one over-long value must not block a tenant's sync forever, nor be cut silently:
    the record waits in quarantine, whole, and the log says so without the value."""
    long_name = "x" * 300
    with caplog.at_level(logging.WARNING, logger="accrue.warehouse"):
        stats = warehouse.apply(
            tenant_id, "account", [upsert("A", T0, name=long_name, industry="i" * 81)]
        )
    assert stats == WriteStats(quarantined=1)
    assert warehouse.count(tenant_id, "account", include_deleted=True) == 0
    [held] = warehouse.open_quarantine(tenant_id, "account")
    assert held["reason"] == (
        "account.name: 300 characters, the column holds 255; "
        "account.industry: 81 characters, the column holds 80"
    )
    assert held["raw"]["name"] == long_name
    assert "quarantined" in caplog.text and long_name not in caplog.text


def test_values_are_coerced_the_same_on_both_backends(warehouse: Warehouse, tenant_id: str) -> None:
    """Salesforce returns numbers and booleans as text in places; both backends store the same."""
    warehouse.apply(
        tenant_id,
        "product",
        [upsert("P", T0, name=42, is_active="true", unit_cost="9.5", family="F\u00e9x")],
    )
    stored = row(warehouse.engine, tenant_id, "product", "P")
    assert (stored["name"], stored["is_active"], stored["unit_cost"], stored["family"]) == (
        "42",
        True,
        9.5,
        "F\u00e9x",
    )
