"""A page sorted a column at a time (`page_columns.PlainPage`) is the rule book's page.

`_Page.add` decides each change (the rule book); `plain_page` takes a page whole only
when every change is a plain upsert of a distinct record, and must then hold the very
rows, versions and shared documents `_Page` would — compared by value *and* type (an
integer in a float column becomes a float; 1 == 1.0 would hide that). Pages it must
leave to the rule book are refused, whatever the one odd value is.
"""

from __future__ import annotations

import math
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accrue.warehouse.page import _Page, sort_page
from accrue.warehouse.page_columns import PlainPage, plain_page
from accrue.warehouse.rows import Rows
from connectors.base import Delete, Quarantine, Upsert
from connectors.common_model import ID_LENGTH

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
OBJECT = "opportunity"  # text, float, bool, date and date-time columns
TENANT = "acme"
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def _typed(rows: Rows) -> list[dict[str, tuple[str, str]]]:
    """Rows with each value's type and spelling, so 1 and 1.0 (or two zones) differ."""
    return [{k: (type(v).__name__, repr(v)) for k, v in row.items()} for row in rows.dicts()]


def _rule_book(changes: list[Any]) -> _Page:
    page = _Page(TENANT, OBJECT, NOW, 7)
    for change in changes:
        page.add(change)
    return page


def _same_page(changes: list[Any], stored: dict[str, datetime]) -> PlainPage | None:
    """Both ways over `changes`; asserts they agree when the column way takes the page."""
    plain = plain_page(TENANT, OBJECT, NOW, 7, changes)
    if plain is None:
        return None
    rule = _rule_book(changes)
    assert [_typed(r) for r in plain.rows()] == [_typed(r) for r in rule.rows()]
    assert (plain.records, plain.bare_deletes, plain.quarantine, plain.live_ids) == (
        rule.records, rule.bare_deletes, rule.quarantine, rule.live_ids)
    assert plain.resolving == rule.resolving
    assert sorted(plain.carried) == sorted(rule.carried)
    assert _typed(plain.log_rows()) == _typed(rule.log_rows())  # before any sharing
    assert sorted(plain.share(stored)) == sorted(rule.share(stored))
    assert _typed(plain.log_rows()) == _typed(rule.log_rows())
    return plain


TEXT = st.one_of(st.none(), st.text("abcXYZ09 -", max_size=8))
NUMBER = st.one_of(st.none(), st.integers(-10**6, 10**6),
                   st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
INSTANT = st.one_of(st.none(), st.integers(0, 10**6).map(lambda s: T0 + timedelta(seconds=s)))
DOCUMENT_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9), st.text("abc é", max_size=5),
              st.floats(allow_nan=False, allow_infinity=False)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text("xyz", max_size=3), inner, max_size=3)),
    max_leaves=6)


@st.composite
def plain_upsert(draw: st.DrawFn, source_id: str) -> Upsert:
    fields = {
        "name": draw(TEXT), "stage": draw(TEXT), "amount": draw(NUMBER),
        "probability": draw(NUMBER), "is_closed": draw(st.one_of(st.none(), st.booleans())),
        "close_date": draw(st.one_of(st.none(), st.dates(date(2020, 1, 1), date(2030, 1, 1)))),
        "source_created_at": draw(INSTANT),
    }
    if draw(st.booleans()):
        del fields["stage"]  # a column the connector does not send is NULL
    raw = {"Id": source_id, **draw(st.dictionaries(st.text("ABC", min_size=1, max_size=4),
                                                    DOCUMENT_VALUE, max_size=4))}
    stamp = T0 + timedelta(minutes=draw(st.integers(0, 600)))
    return Upsert(source_id, stamp, fields, raw, draw(st.booleans()))


@st.composite
def plain_pages(draw: st.DrawFn) -> list[Upsert]:
    ids = draw(st.lists(st.text("0123456789ABCDEF", min_size=1, max_size=18), min_size=1,
                        max_size=12, unique=True))
    return [draw(plain_upsert(source_id)) for source_id in ids]


@st.composite
def stored_stamps(draw: st.DrawFn, changes: list[Upsert]) -> dict[str, datetime]:
    """Some records already stored: older, the same or newer than the page's version."""
    stored = {}
    for change in changes:
        if draw(st.booleans()):
            stored[change.source_id] = change.modified_at + timedelta(
                minutes=draw(st.sampled_from([-5, 0, 5])))
    return stored


@SETTINGS
@given(data=st.data())
def test_a_plain_page_is_sorted_as_the_rule_book_sorts_it(data: st.DataObject) -> None:
    changes = data.draw(plain_pages())
    stored = data.draw(stored_stamps(changes))
    assert _same_page(changes, stored) is not None  # plain: the column way must take it


def test_large_finite_numbers_whose_sum_overflows_stay_on_the_column_way() -> None:
    """Each value finite and within its limit, their sum beyond a float (Hypothesis found
    `fsum` refusing such a page): the column way takes it, with the rule book's rows."""
    big = sys.float_info.max / 1.5
    changes = [Upsert(f"006{n}", T0, {"name": "deal", "amount": 0.9e15},
                      {"Id": f"006{n}", "A": [big, big], "B": -big}) for n in range(3)]
    assert _same_page(changes, {}) is not None


ODD_VALUES: list[tuple[str, Any]] = [
    ("name", "é"),  # not ASCII: the coercer checks it is valid UTF-8
    ("name", "a\x00b"),  # NUL
    ("name", "x" * 10_000),  # beyond the column's length
    ("name", 5),  # a number in a text column: spelled by the coercer
    ("amount", "12.5"),  # text in a float column
    ("amount", math.nan),
    ("amount", math.inf),
    ("amount", 1e300),  # beyond FLOAT_LIMIT
    ("amount", 10**20),  # an integer beyond a float's exact range
    ("amount", True),  # a boolean is no number
    ("is_closed", "true"),
    ("close_date", "2026-01-01"),
    ("close_date", datetime(2026, 1, 1, tzinfo=UTC)),  # a date-time in a date column
    ("source_created_at", datetime(2026, 1, 1)),  # naive
    ("source_created_at", datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2)))),
    ("source_created_at", datetime(2026, 1, 1, tzinfo=timezone(timedelta(0), "Z"))),
]


def _page(**odd: Any) -> list[Any]:
    changes: list[Any] = [
        Upsert(f"006{n:03d}", T0 + timedelta(minutes=n), {"name": f"deal {n}", "amount": 10.0 * n},
               {"Id": f"006{n:03d}", "Amount": 10.0 * n}) for n in range(5)]
    last = changes[-1]
    changes[-1] = Upsert(last.source_id, last.modified_at, {**last.fields, **odd}, last.raw)
    return changes


def test_a_typical_page_takes_the_column_way() -> None:
    page = sort_page(TENANT, OBJECT, NOW, None, iter(_page()))
    assert isinstance(page, PlainPage)
    live, soft_deleted, tombstones = page.rows()
    assert (len(live), len(soft_deleted), len(tombstones)) == (5, 0, 0)


@pytest.mark.parametrize(("column", "value"), ODD_VALUES,
                         ids=[f"{c}={v!r:.30}" for c, v in ODD_VALUES])
def test_one_odd_value_hands_the_page_to_the_rule_book(column: str, value: Any) -> None:
    changes = _page(**{column: value})
    assert plain_page(TENANT, OBJECT, NOW, None, changes) is None
    assert isinstance(sort_page(TENANT, OBJECT, NOW, None, changes), _Page)


ODD_DOCUMENTS: list[Any] = [
    {"Amount": math.nan},  # orjson would write null
    {"Deep": [{"x": -math.inf}]},
    {"Note": "a\x00b"},  # PostgreSQL cannot store NUL
    {"Note": "\ud800"},  # a lone surrogate
    {1: "a key that is no string"},
    {"Big": 2**70},  # beyond 64 bits: the careful walk stores it
    {"When": datetime(2026, 1, 1, tzinfo=UTC)},  # the careful walk spells it
    {"Pair": (1, 2)},
]


@pytest.mark.parametrize("document", ODD_DOCUMENTS, ids=[repr(d)[:30] for d in ODD_DOCUMENTS])
def test_a_document_only_the_careful_walk_can_judge_hands_the_page_over(document: Any) -> None:
    changes = _page()
    last = changes[-1]
    changes[-1] = Upsert(last.source_id, last.modified_at, last.fields, {**last.raw, **document})
    assert plain_page(TENANT, OBJECT, NOW, None, changes) is None


def test_pages_that_are_not_all_plain_upserts_of_distinct_records_are_handed_over() -> None:
    changes = _page()
    stamp = T0 + timedelta(hours=1)
    cases: list[list[Any]] = [
        [],
        changes + [changes[0]],  # a record twice
        changes + [Delete("006999", stamp)],
        changes + [Quarantine("006998", stamp, {"Id": "006998"}, "unmappable")],
        [Upsert("", stamp, {}, {})],
        [Upsert("0" * (ID_LENGTH + 1), stamp, {}, {})],
        [Upsert("00é", stamp, {}, {})],
        [Upsert("006A", stamp.astimezone(timezone(timedelta(hours=1))), {}, {})],
        [Upsert("006A", stamp, {}, {}, is_deleted=1)],  # type: ignore[arg-type]
    ]
    for case in cases:
        assert plain_page(TENANT, OBJECT, NOW, None, case) is None, case


def test_rows_keep_their_order_when_split() -> None:
    rows = Rows(("source_id", "n"), [["a", "b", "c"], [1, 2, 3]])
    chosen, others = rows.partition([True, False, True])
    assert (chosen.dicts(), others.dicts()) == (
        [{"source_id": "a", "n": 1}, {"source_id": "c", "n": 3}], [{"source_id": "b", "n": 2}])
    with pytest.raises(ValueError, match="one column per name"):
        Rows(("a", "b"), [[1], [1, 2]])
