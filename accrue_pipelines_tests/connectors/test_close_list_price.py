"""A Close deal's value at list price: the opportunity custom field "List Price".

Close keeps no line items, so pricing compares `amount` with `list_amount`, which orgs that
track list prices keep in an opportunity custom field. The sandbox declares it at
`/custom_field/opportunity/` and seeds it with the deal model's list total of each deal;
the adapter finds it by name (or by the name the connection's config gives), refuses what
is no number, and the harness's writer writes it through `closeio_api`.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from closeio_api import API, ValidationError
from hypothesis import example, given

from accrue.analytics.store import load_tenant
from accrue.sync import sync_object
from accrue.warehouse import Warehouse
from accrue_pipelines_tests.core.test_value_rules import HYPOTHESIS, JSON_VALUES, _check, _outcome
from accrue_pipelines_tests.fixtures_sandbox import SandboxClock
from connectors.base import Checkpoint, Quarantine, Upsert
from connectors.close.connector import CloseConnector
from connectors.close.mapping import map_record
from connectors.close.sandbox.harness import CloseHarness, RunningCloseSandbox, _number
from connectors.close.sandbox.seed import close_id
from connectors.close.sandbox.store import OPPORTUNITY_CUSTOM_FIELD_KIND, ListQuery
from connectors.sandbox_kit.deal_model import build_world

SEED = 7
N_OPPORTUNITIES = 20


@pytest.fixture
def close_org(tmp_path: Path) -> Iterator[RunningCloseSandbox]:
    clock = SandboxClock()
    running = CloseHarness().start(tmp_path / "close.db", opportunities=N_OPPORTUNITIES,
                                   seed=SEED, page_size=10, clock=clock)
    running.anchor = clock().replace(  # type: ignore[attr-defined]
        hour=0, minute=0, second=0, microsecond=0)
    yield running
    running.stop()


def _api(org: RunningCloseSandbox) -> API:
    return API(org.served.api_url, api_key=org.connection()[0]["api_key"])


def _connector(org: RunningCloseSandbox, **config: object) -> CloseConnector:
    secrets, settings = org.connection()
    return CloseConnector(secrets, {**settings, "max_backoff_seconds": 0.01, **config})


def _read(connector: CloseConnector, state: Any = None) -> list[Any]:
    changes = list(connector.read("opportunity", state))
    assert isinstance(changes[-1], Checkpoint)
    return changes


def _upserts(changes: list[Any]) -> dict[str, Upsert]:
    return {c.source_id: c for c in changes if isinstance(c, Upsert)}


def _rename_field(org: RunningCloseSandbox, name: str) -> str:
    """Rename the org's "List Price" field (as an admin would in Close's settings)."""
    (field,) = org.store.select(ListQuery(OPPORTUNITY_CUSTOM_FIELD_KIND, order=()))[0]
    org.store.load(OPPORTUNITY_CUSTOM_FIELD_KIND, [{**field, "name": name}])
    return str(field["id"])


def test_the_list_price_field_is_declared_and_seeded_with_each_deals_list_total(
        close_org) -> None:
    api = _api(close_org)
    fields = api.get("custom_field/opportunity")
    assert fields["has_more"] is False
    (field,) = fields["data"]
    assert field["name"] == "List Price" and field["type"] == "number"
    assert field["id"].startswith("cf_")
    key = f"custom.{field['id']}"
    # The deal model's list total, computed here on its own: quantity × list price per line.
    world = build_world(N_OPPORTUNITIES, SEED, anchor=close_org.anchor)
    expected: dict[str, Decimal] = defaultdict(Decimal)
    quoted: dict[str, Decimal] = defaultdict(Decimal)
    for line in world.objects["opportunity_line"]:
        deal = close_id("opportunity", str(line.fields["opportunity_id"]), SEED)
        expected[deal] += (Decimal(str(line.fields["quantity"]))
                           * Decimal(str(line.fields["list_price"])))
        quoted[deal] += Decimal(str(line.fields["total_price"]))
    assert len(expected) >= 5
    with _connector(close_org) as connector:
        upserts = _upserts(_read(connector))
    assert set(expected) <= set(upserts)
    for deal, total in expected.items():
        raw = api.get(f"opportunity/{deal}")
        assert Decimal(repr(raw[key])) == total  # as Close returns it: a JSON number
        assert raw["value"] == int(quoted[deal] * 100)  # `value` stays the quote, in cents
        fields_ = upserts[deal].fields
        assert Decimal(repr(fields_["list_amount"])) == total
        assert fields_["amount"] == quoted[deal]
        assert fields_["list_amount"] >= fields_["amount"]  # discounts, never mark-ups
    for deal in set(upserts) - set(expected):  # a deal without lines has no list price
        assert upserts[deal].fields["list_amount"] is None


def test_the_field_is_found_ignoring_case_and_by_the_name_the_config_gives(
        close_org) -> None:
    _rename_field(close_org, "LIST PRICE")
    with _connector(close_org) as connector:
        upserts = _upserts(_read(connector))
    assert sum(u.fields["list_amount"] is not None for u in upserts.values()) >= 5
    field_id = _rename_field(close_org, "Listed Value")
    with _connector(close_org) as connector:  # named otherwise: not guessed
        assert all(u.fields["list_amount"] is None for u in _upserts(_read(connector)).values())
    with _connector(close_org, opportunity_custom_fields={"list_amount": "listed value"}
                    ) as connector:
        renamed = _upserts(_read(connector))
    with_value = [u for u in renamed.values() if f"custom.{field_id}" in u.raw]
    assert len(with_value) >= 5
    for upsert in with_value:
        assert upsert.fields["list_amount"] == upsert.raw[f"custom.{field_id}"]


def test_a_list_price_that_is_no_number_is_quarantined_with_the_reason(close_org) -> None:
    with _connector(close_org) as connector:
        deal = next(iter(_upserts(_read(connector))))
        # Close refuses it through the API...
        with pytest.raises(ValidationError) as refused:
            close_org.writer().update("opportunity", deal, {"list_amount": "12,000"})
        assert "Enter a number." in str(refused.value)
        # ... so it is stored as it is, the way a bad value reaches any org.
        close_org.writer().write_raw("opportunity", deal, {"list_amount": "12,000"})
        changes = _read(connector)
    (held,) = [c for c in changes if isinstance(c, Quarantine) and c.source_id == deal]
    assert held.reason.startswith("opportunity.list_amount: custom.cf_")
    assert "'12,000' is not a number (custom field List Price)" in held.reason
    assert held.raw["value"] is not None  # the whole record is held, nothing coerced


def test_a_list_price_written_through_the_writer_arrives_in_the_next_sync(
        warehouse, tenant_id, close_org) -> None:
    writer = close_org.writer()
    with _connector(close_org) as connector:
        sync_object(warehouse, connector, tenant_id, "opportunity")
        deals = _upserts(_read(connector))
        changed, cleared = sorted(deals)[:2]
        lead = deals[changed].fields["account_id"]
        close_org.store.clock.advance(seconds=1)  # type: ignore[attr-defined]
        writer.update("opportunity", changed, {"list_amount": Decimal("123456.78")})
        writer.update("opportunity", cleared, {"list_amount": None})
        new = writer.create("opportunity", {"name": "Expansion", "account_id": lead,
                                            "amount": 900.0, "list_amount": 1000,
                                            "stage": "Qualification"})
        sync_object(warehouse, connector, tenant_id, "opportunity")
    assert _api(close_org).get(f"opportunity/{new}")["value"] == 90000
    stored = {source_id: _outcome(warehouse, tenant_id, "opportunity", source_id,
                                  "list_amount")[1] for source_id in (changed, cleared, new)}
    assert stored == {changed: 123456.78, cleared: None, new: 1000.0}
    assert warehouse.quarantine_count(tenant_id, "opportunity") == 0


def test_pricing_prices_close_deals_from_their_list_price(warehouse, tenant_id,
                                                         close_org) -> None:
    """End to end: synced Close deals are priced (quote / list) as the deal model drew
    them, not excluded for having no line items."""
    with _connector(close_org) as connector:
        for object_name in ("account", "opportunity"):
            sync_object(warehouse, connector, tenant_id, object_name)
    deals = load_tenant(warehouse.engine, tenant_id).deals.set_index("opportunity_id")
    world = build_world(N_OPPORTUNITIES, SEED, anchor=close_org.anchor)
    quoted: dict[str, float] = defaultdict(float)
    listed: dict[str, float] = defaultdict(float)
    for line in world.objects["opportunity_line"]:
        deal = close_id("opportunity", str(line.fields["opportunity_id"]), SEED)
        quoted[deal] += line.fields["total_price"]
        listed[deal] += line.fields["quantity"] * line.fields["list_price"]
    assert len(quoted) >= 5
    for deal in quoted:
        row = deals.loc[deal]
        assert row["exclusion"] is None or pd.isna(row["exclusion"]), row["exclusion"]
        assert row["ratio"] == pytest.approx(quoted[deal] / listed[deal], rel=1e-9)


def test_the_writer_refuses_a_decimal_no_json_number_says() -> None:
    assert _number(Decimal("1000.00")) == 1000 and _number(Decimal("0.1")) == 0.1
    with pytest.raises(ValueError):
        _number(Decimal("0.12345678901234567890"))


KEY = "custom.cf_listprice0000000000000000000000000000000000"


@HYPOTHESIS
@given(sent=JSON_VALUES)
@example(sent="1200")
@example(sent=True)
@example(sent=2**60)
@example(sent=1234.5)
def test_a_list_price_is_stored_exactly_or_quarantined(
        warehouse: Warehouse, tenant_id: str, sent: Any) -> None:
    source_id = f"oppo_{uuid.uuid4().hex}"
    record = {"id": source_id, "date_updated": datetime.now(UTC).isoformat(),
              "status_type": "active", KEY: sent}
    mapped = map_record("opportunity", record, {"List Price": KEY})
    number = isinstance(sent, int | float) and not isinstance(sent, bool)
    if sent is not None and not number:
        assert isinstance(mapped, Quarantine)
        assert mapped.reason.startswith(f"opportunity.list_amount: {KEY}=")
        return
    assert isinstance(mapped, Upsert)
    warehouse.apply(tenant_id, "opportunity", [mapped], None)
    _check("float", "list_amount", sent, _outcome(warehouse, tenant_id, "opportunity",
                                                   source_id, "list_amount"))
