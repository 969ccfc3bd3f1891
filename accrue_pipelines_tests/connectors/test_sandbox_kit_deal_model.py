"""The kit's deal model: what every CRM sandbox renders, so its guarantees are tested once."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime

import pytest

from connectors.sandbox_kit.deal_model import OBJECTS, World, build_world, columns

ANCHOR = datetime(2025, 3, 1, tzinfo=UTC)
# Which object each reference names (fields and extra alike).
TARGETS = {
    "account_id": "account", "owner_id": "user", "manager_id": "user", "parent_id": "account",
    "opportunity_id": "opportunity", "product_id": "product", "price_book_id": "price_book",
    "price_book_entry_id": "price_book_entry", "contact_id": "contact", "lead_id": "lead",
    "converted_opportunity_id": "opportunity", "converted_account_id": "account",
    "converted_contact_id": "contact", "created_by_id": "user", "modified_by_id": "user",
}


def assert_price_signal(deals: list[tuple[float, bool]]) -> None:
    """Closed deals as (paid / list, won): about the target win rate, and the cheapest
    quarter wins clearly more often than the dearest (what every CRM's analytics find)."""
    ratios = sorted(deals)
    quarter = len(ratios) // 4
    cheapest = sum(won for _, won in ratios[:quarter]) / quarter
    dearest = sum(won for _, won in ratios[-quarter:]) / quarter
    overall = sum(won for _, won in ratios) / len(ratios)
    assert 0.25 <= overall <= 0.5
    assert cheapest > dearest + 0.12


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(400, 5, anchor=ANCHOR)


def test_same_seed_and_anchor_give_the_same_world() -> None:
    first = build_world(150, 11, anchor=ANCHOR)
    assert first == build_world(150, 11, anchor=ANCHOR)
    assert first.objects["opportunity"] != build_world(150, 12, anchor=ANCHOR).objects[
        "opportunity"]


def test_every_reference_names_a_record_of_the_right_object(world: World) -> None:
    known = {name: {r.id for r in world.objects[name]} for name in OBJECTS}
    for name in OBJECTS:
        assert len(known[name]) == len(world.objects[name])  # ids unique
        for record in world.objects[name]:
            assert record.id.startswith(f"{name}-")
            for key, value in (*record.fields.items(), *record.extra.items()):
                if key in TARGETS and value is not None:
                    assert value in known[TARGETS[key]], (name, record.id, key, value)
    for line in world.objects["opportunity_line"]:
        assert line.fields["opportunity_id"] is not None


def test_records_hold_the_common_columns_and_sane_times(world: World) -> None:
    for name in OBJECTS:
        for record in world.objects[name]:
            assert tuple(record.fields) == columns(name)
            assert record.created_at.tzinfo is not None
            assert record.created_at <= record.modified_at <= ANCHOR
            for value in (*record.fields.values(), *record.extra.values()):
                if isinstance(value, datetime):
                    assert value.tzinfo is not None
    deals = world.objects["opportunity"]
    assert all(isinstance(d.fields["close_date"], date) for d in deals)
    assert [r.created_at for r in deals] == sorted(r.created_at for r in deals)


def test_an_empty_world_has_the_integration_user_and_a_standard_price_book() -> None:
    empty = build_world(0, 3, anchor=ANCHOR)
    assert {name: len(records) for name, records in empty.objects.items()} == {
        name: 1 if name in ("user", "price_book") else 0 for name in OBJECTS}
    assert empty.objects["price_book"][0].fields["is_standard"] is True
    assert empty.objects["user"][0].extra["role"] == "integration"
    assert empty.truth["realized"]["closed_deals"] == 0


def test_activities_leave_the_other_records_unchanged() -> None:
    full = build_world(80, 9, anchor=ANCHOR)
    bare = build_world(80, 9, anchor=ANCHOR, activities=False)
    assert bare.objects["activity"] == () and full.objects["activity"]
    for name in OBJECTS:
        if name != "activity":
            assert full.objects[name] == bare.objects[name]


def test_the_win_model_is_recoverable_from_the_records() -> None:
    """What analytics see: cheaper deals (paid / list) win more, at about the target rate."""
    world = build_world(3000, 21, anchor=ANCHOR)
    listed: dict[str, float] = defaultdict(float)
    paid: dict[str, float] = defaultdict(float)
    for line in world.objects["opportunity_line"]:
        f = line.fields
        listed[f["opportunity_id"]] += f["quantity"] * f["list_price"]
        paid[f["opportunity_id"]] += f["total_price"]
    closed = [d for d in world.objects["opportunity"] if d.fields["is_closed"]]
    assert_price_signal([(paid[d.id] / listed[d.id], d.fields["is_won"]) for d in closed])
    truth = world.truth
    assert truth["realized"]["closed_deals"] == len(closed)
    assert all(s["b"] > 0 for s in truth["segments"].values())
    sellers = {u.id for u in world.objects["user"]}
    assert truth["sellers"] and all(s["id"] in sellers for s in truth["sellers"])
