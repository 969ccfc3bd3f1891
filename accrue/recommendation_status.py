"""The "first recommendations" milestone, said only as far as the warehouse can tell.

Whether an analytics run is queued or running lives in Dagster's run storage, and the
concierge must not import Dagster (nor this module, which the e-mail sensor uses too).
What the warehouse does know: when the deals last changed (finished syncs in the
`sync_run` ledger that wrote rows of the objects the price model reads) and when the
recommendations were last computed (`price_recommendation.computed_at`). Deals that
changed after the last computation mean a computation is owed: the refresh sensor
requests one after every such sync, so it is waiting in the queue or running. The
page says exactly that, "waiting to be computed, or being computed now", and never
that a run exists; a sync of the deals still in progress is said as such.

`state` stays "ready" / "pending" (the milestone, as the sensor and the demo read
it); `phase` says which of the situations below it is, for the words and for tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue.schema import object_table, price_recommendation
from accrue.sync_progress import clock
from accrue.warehouse import Warehouse

# The objects price_recommendations reads: its Dagster asset's deps
# (accrue_pipelines.analytics.assets.DEAL_OBJECTS, which a test holds this equal to).
PRICED_FROM = ("account", "opportunity", "opportunity_line", "product")
# Past this, a computation still owed is called slow (the sensor requests it in seconds).
SLOW_AFTER = timedelta(minutes=30)


@dataclass(frozen=True)
class Facts:
    priced: int  # open deals with a recommended price
    rows: int  # open deals with a row (priced, or excluded with the reason)
    computed_at: datetime | None
    deals_changed_at: datetime | None  # the last finished sync that wrote deal rows
    deals_syncing: bool
    opportunities_synced: bool  # a sync of the deals themselves has finished


def facts(engine: Engine, tenant_id: str) -> Facts:
    """Two queries: the recommendations, and the ledger of the objects they are made from."""
    p = price_recommendation
    recs = sa.select(sa.func.count().filter(p.c.method != "excluded"), sa.func.count(),
                     sa.func.max(p.c.computed_at)).where(p.c.tenant_id == tenant_id)
    with engine.connect() as conn:
        priced, rows, computed_at = conn.execute(recs).one()
    ledger = Warehouse(engine).objects_activity(tenant_id, PRICED_FROM)
    return Facts(int(priced), int(rows), computed_at, ledger.changed_at,
                 ledger.syncing, "opportunity" in ledger.completed)


def open_deals(engine: Engine, tenant_id: str) -> int:
    table = object_table("opportunity")
    query = sa.select(sa.func.count()).where(
        table.c.tenant_id == tenant_id, sa.not_(table.c.is_deleted),
        sa.or_(table.c.is_closed.is_(None), sa.not_(table.c.is_closed)))
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def _deals(n: int) -> str:
    return f"{n:,} open deal{'s' if n != 1 else ''}"


def recommendations(engine: Engine, tenant_id: str, now: datetime) -> dict[str, Any]:
    """The milestone: state (ready / pending), phase, and what is true, in words."""
    f = facts(engine, tenant_id)
    changed, computed = f.deals_changed_at, f.computed_at
    owed = changed is not None and (computed is None or changed > computed)
    base = {"count": f.priced, "computed_at": computed.isoformat() if computed else None,
            "deals_changed_at": changed.isoformat() if changed else None}

    def say(state: str, phase: str, message: str) -> dict[str, Any]:
        return {**base, "state": state, "phase": phase, "message": message}

    if f.priced and computed is not None:
        has = "has" if f.priced == 1 else "have"
        done = f"{_deals(f.priced)} {has} a recommended price, computed at {clock(computed)}."
        if f.deals_syncing:
            return say("ready", "refreshing", f"{done} A sync of your deals is in progress; "
                       "they are recomputed after it.")
        if changed is not None and owed:
            return say("ready", "refreshing", f"{done} Your deals changed at {clock(changed)} "
                       "(after that): the new figures are waiting to be computed, or being "
                       "computed now.")
        return say("ready", "ready", f"{done} They are recomputed whenever your deals change.")
    if f.deals_syncing:
        return say("pending", "waiting_for_sync", "Your deals are being synced; "
                   "recommendations are computed after the sync ends.")
    if not f.opportunities_synced:
        return say("pending", "waiting_for_data", "They are computed from your deals once "
                   "the first sync has brought them in.")
    if changed is not None and owed and open_deals(engine, tenant_id):
        since = f" (after the last computation, at {clock(computed)})" if computed else ""
        pace = (" This is taking longer than usual." if now - changed > SLOW_AFTER else
                " Accrue computes them after every sync that changes deals, usually within "
                "a few minutes.")
        return say("pending", "waiting", "Waiting to be computed, or being computed now: "
                   f"your deals changed at {clock(changed)}{since}.{pace}")
    if f.rows and computed is not None and not owed:
        return say("pending", "none_priced", f"Computed at {clock(computed)}: none of your "
                   f"{_deals(f.rows)} could be priced yet; each has its reason.")
    return say("pending", "no_open_deals", "Your CRM has no open deals to price; "
               "recommendations appear when it has.")
