"""One seeded deal model that every CRM's sandbox renders, so analytics find the same
signal whichever CRM a tenant connects.

`build_world(n_opportunities, seed)` returns a `World`: users with managers, a product
catalogue with a standard and a partner price book, accounts, contacts, leads,
opportunities with line items and (optionally) activities, in the common model's words
(`connectors.common_model`). A CRM sandbox maps it onto its own records — its ids, field
names and audit stamps — and holds nothing of the sales process itself.

Determinism: everything is drawn from `random.Random(seed)` (activities from a stream of
their own, so switching them off changes nothing else), and all times are offsets from an
*anchor* instant (default: the start of the current UTC day), so the same seed and anchor
give an identical world. Nothing is later than the anchor.

Signal: a closed deal is won with probability `1 / (1 + exp(a_s + b_s * price_ratio))`
where `price_ratio` is what the customer pays relative to list (`sum(total_price) /
sum(quantity * list_price)` over its lines) and `s` is the segment (industry x
company-size band); b_s > 0, so discounts win deals, more so in price-sensitive segments.
Sellers differ in how much they discount. `World.truth` holds the true parameters.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from ..common_model import COMMON_OBJECTS
from .activity_seed import build_activities
from .deal_builder import DAY, OPEN_SHARE, SIZE_BANDS, Builder, Draft

ORG_EPOCH = datetime(2020, 1, 6, 9, 0, tzinfo=UTC)  # when every seeded org was "founded"
OBJECTS = ("user", "account", "contact", "lead", "product", "price_book", "price_book_entry",
           "opportunity", "opportunity_line", "activity")
PRICE_BOOK_COLUMNS = ("name", "is_standard", "is_active", "description")
# Values held as seconds while building that the world gives as dates / datetimes.
_DATES = frozenset({"close_date", "due_date", "service_date"})
_DATETIMES = frozenset({"activity_at", "converted_at", "ends_at"})
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class WorldRecord:
    """One record in the common model's words; references hold other records' neutral ids."""

    id: str  # unique within its object, e.g. "opportunity-000042"
    created_at: datetime  # tz-aware UTC, never after the anchor
    modified_at: datetime  # >= created_at
    fields: Mapping[str, Any]  # exactly the common model's columns of the object
    extra: Mapping[str, Any]  # descriptive values without a common column


@dataclass(frozen=True)
class World:
    """A whole seeded org; `objects` lists each object's records in creation order."""

    seed: int
    anchor: datetime
    objects: Mapping[str, tuple[WorldRecord, ...]]
    truth: Mapping[str, Any]

    def by_id(self, object_name: str) -> dict[str, WorldRecord]:
        return {record.id: record for record in self.objects[object_name]}


def columns(object_name: str) -> tuple[str, ...]:
    """The `fields` keys of an object's records."""
    if object_name == "price_book":
        return PRICE_BOOK_COLUMNS
    return tuple(column.name for column in COMMON_OBJECTS[object_name])


def build_world(n_opportunities: int, seed: int = 42, *, anchor: datetime | None = None,
                activities: bool = True) -> World:
    """The seeded org; 0 opportunities is an empty org that still has what every real org
    has: the integration user and a standard price book."""
    if n_opportunities < 0:
        raise ValueError("n_opportunities must be >= 0")
    if anchor is None:
        anchor = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    anchor = anchor.astimezone(UTC) if anchor.tzinfo else anchor.replace(tzinfo=UTC)
    builder = Builder(random.Random(seed), anchor.timestamp(), n_opportunities,
                      ORG_EPOCH.timestamp())
    builder.build_segments()
    standard = builder.standard_price_book()
    sellers: list[Draft] = []
    opportunities: list[Draft] = []
    if n_opportunities:
        sellers = builder.build_users()
        products = builder.build_catalog(standard)
        accounts = builder.build_accounts(sellers)
        opportunities = builder.build_opportunities(accounts, sellers, products, standard)
        builder.finish_accounts(accounts)
        builder.build_contacts(accounts)
        builder.build_leads(opportunities, sellers)
        if activities:
            # Their own random stream: the records above are the same with or without them.
            build_activities(random.Random(f"activities/{seed}"), builder, opportunities)
    objects, ids = _freeze(builder)
    truth = _truth(builder, opportunities, seed, anchor, n_opportunities)
    truth["sellers"] = [{"id": ids[id(s)], "name": s.fields["name"],
                         "discount_habit": s.extra["discount_habit"]} for s in sellers]
    return World(seed, anchor, objects, truth)


def _day(seconds: float) -> date:
    return date.fromordinal(_EPOCH_ORDINAL + int(seconds // DAY))


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _convert(values: dict[str, Any], dates: tuple[str, ...],
             moments: tuple[str, ...]) -> dict[str, Any]:
    for key in dates:
        value = values.get(key)
        if value is not None:
            values[key] = _day(value)
    for key in moments:
        value = values.get(key)
        if value is not None:
            values[key] = _moment(value)
    return values


def _freeze(builder: Builder) -> tuple[dict[str, tuple[WorldRecord, ...]], dict[int, str]]:
    """Sort each object by creation (ties keep build order), name, then freeze; also
    returns each draft's neutral id (by `id(draft)`)."""
    drafts = {name: sorted(builder.records.get(name, ()), key=lambda d: d.created)
              for name in OBJECTS}
    ids: dict[int, str] = {}
    for name, items in drafts.items():
        for index, draft in enumerate(items):
            ids[id(draft)] = f"{name}-{index:06d}"

    def ref(target: Draft | None) -> str | None:
        return None if target is None else ids[id(target)]

    frozen: dict[str, tuple[WorldRecord, ...]] = {}
    for name, items in drafts.items():
        wanted = columns(name)
        keys = {k for d in items[:1] for k in (*d.fields, *d.extra)}
        dates = tuple(k for k in _DATES if k in keys or name == "activity")
        moments = tuple(k for k in _DATETIMES if k in keys or name == "activity")
        records = []
        for draft in items:
            created = _moment(draft.created)
            fields = _convert(dict(draft.fields), dates, moments)
            extra = _convert(dict(draft.extra), dates, moments)
            for key, target in draft.refs.items():
                (fields if key in wanted else extra)[key] = ref(target)
            if "source_created_at" in wanted:
                fields["source_created_at"] = created
            extra["created_by_id"] = ref(draft.creator)
            extra["modified_by_id"] = ref(draft.modifier)
            records.append(WorldRecord(ids[id(draft)], created, _moment(draft.modified),
                                       {column: fields.get(column) for column in wanted},
                                       extra))
        frozen[name] = tuple(records)
    return frozen, ids


def _truth(builder: Builder, opportunities: list[Draft], seed: int,
           anchor: datetime, n_opportunities: int) -> dict[str, Any]:
    closed = [o for o in opportunities if o.fields["is_closed"]]
    ordered = sorted(closed, key=lambda o: o.extra["price_ratio"])
    quartiles = []
    for q in range(4):
        part = ordered[q * len(ordered) // 4:(q + 1) * len(ordered) // 4]
        if part:
            quartiles.append({
                "price_ratio_min": round(part[0].extra["price_ratio"], 4),
                "price_ratio_max": round(part[-1].extra["price_ratio"], 4),
                "win_rate": round(sum(o.fields["is_won"] for o in part) / len(part), 4),
                "deals": len(part),
            })
    wins = sum(o.fields["is_won"] for o in closed)
    return {
        "generator": "accrue-deal-model/1",
        "seed": seed,
        "anchor": anchor.isoformat(),
        "n_opportunities": n_opportunities,
        "model": {
            "formula": "P(win) = 1 / (1 + exp(a + b * price_ratio))",
            "price_ratio": "sum(total_price) / sum(quantity * list_price) over the "
                           "opportunity's line items",
            "segment": "account.industry | size band of account.employee_count",
            "size_bands": {band: {"min_employees": low, "max_employees": high}
                           for band, (low, high, _, _) in SIZE_BANDS.items()},
            "open_share": OPEN_SHARE,
        },
        "segments": {
            key: {"industry": s["industry"], "size_band": s["size_band"], "a": s["a"],
                  "b": s["b"], "closed_deals": s["closed"],
                  "win_rate": round(s["won"] / s["closed"], 4) if s["closed"] else None}
            for key, s in builder.segments.items()
        },
        "sellers": [],  # filled in by build_world, which knows the neutral ids
        "realized": {
            "closed_deals": len(closed),
            "won_deals": wins,
            "win_rate": round(wins / len(closed), 4) if closed else 0.0,
            "win_rate_by_price_ratio_quartile": quartiles,
        },
    }
