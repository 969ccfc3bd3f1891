"""The HubSpot adapter against the HubSpot sandbox: windows past the search cap, the index
lag, archives as deletes, wrong tokens, OAuth refresh, 429s, exact values.

Every change is made through the official client (the harness's writer); the portal's
clock is moved instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from accrue.sync import sync_object
from accrue.warehouse import Warehouse
from accrue_pipelines_tests.connectors.test_hubspot_sandbox import oauth_tokens
from accrue_pipelines_tests.fixtures_sandbox import SandboxClock
from connectors.base import (
    AuthenticationError,
    Checkpoint,
    Delete,
    LiveIds,
    Quarantine,
    QuotaExceeded,
    Upsert,
)
from connectors.hubspot.connector import HubSpotConnector
from connectors.hubspot.mapping import map_record
from connectors.hubspot.sandbox.harness import TEST_CLIENT, HubSpotHarness, RunningHubSpotSandbox

CAP = 10


@pytest.fixture
def clock() -> SandboxClock:
    return SandboxClock()


@pytest.fixture
def portal(tmp_path: Path, clock: SandboxClock) -> Iterator[RunningHubSpotSandbox]:
    running = HubSpotHarness().start(tmp_path / "hubspot.db", opportunities=30, clock=clock,
                                     page_size=4, search_max_results=CAP)
    yield running
    running.stop()


def connector(portal: RunningHubSpotSandbox, **config: Any) -> HubSpotConnector:
    secrets, settings = portal.connection()
    return HubSpotConnector(secrets, {**settings, "max_backoff_seconds": 0.01, **config})


def read(con: HubSpotConnector, name: str, state: Any = None, **kwargs: Any) -> tuple[
        list[Any], dict[str, Any]]:
    changes = list(con.read(name, state, **kwargs))
    assert isinstance(changes[-1], Checkpoint)
    return changes, dict(changes[-1].state)


def upserts(changes: list[Any]) -> dict[str, Upsert]:
    return {c.source_id: c for c in changes if isinstance(c, Upsert)}


def test_a_window_past_the_search_cap_is_read_whole_by_re_anchoring(
        portal: RunningHubSpotSandbox) -> None:
    """A window holding three times the cap (a cursor a decade back): every deal read once,
    no 400 — each page is a new query from the last id."""
    con = connector(portal)
    _, state = read(con, "opportunity")
    old = {**state, "cursor": "2015-01-01T00:00:00+00:00"}
    changes, after = read(con, "opportunity", old)
    got = [c.source_id for c in changes if isinstance(c, Upsert)]
    assert len(got) == len(set(got)) == portal.live_count("opportunity") == 30 > CAP
    assert after["cursor"] > old["cursor"] and "window" not in after
    # A crash mid-window resumes from the last id its checkpoint names.
    middle = [c.state for c in changes if isinstance(c, Checkpoint)][2]
    resumed, _ = read(con, "opportunity", middle)
    assert set(upserts(resumed)) == {g for g in got if int(g) > middle["window"]["after_id"]}


def test_archives_become_deletes_though_their_modification_date_stays(
        portal: RunningHubSpotSandbox, warehouse: Warehouse, tenant_id: str) -> None:
    con = connector(portal)
    assert sync_object(warehouse, con, tenant_id, "opportunity").complete
    victim = sorted(warehouse.live_ids(tenant_id, "opportunity"))[3]
    before = portal.store.get("deals", int(victim))
    portal.writer().delete("opportunity", victim)
    after = portal.store.get("deals", int(victim))
    assert before and after and after["updatedAt"] == before["updatedAt"]
    _, state = read(con, "opportunity", warehouse.get_state(tenant_id, "opportunity"))
    assert sync_object(warehouse, con, tenant_id, "opportunity").complete
    assert victim not in warehouse.live_ids(tenant_id, "opportunity")
    assert warehouse.count(tenant_id, "opportunity") == portal.live_count("opportunity") == 29
    # A later read does not report it again: the scan moved past its archivedAt.
    again, _ = read(con, "opportunity", {**state, "archived_since": (
        datetime.now(UTC) + timedelta(hours=1)).isoformat()})
    assert not [c for c in again if isinstance(c, Delete)]


def test_the_lookback_covers_the_search_index_lag(tmp_path: Path, clock: SandboxClock) -> None:
    """A rename invisible to search at the next read (the index trails by a minute) arrives
    at the read after, because each window starts `lookback` before the last began."""
    portal = HubSpotHarness().start(tmp_path / "lag.db", opportunities=10, clock=clock,
                                    index_lag=timedelta(seconds=60))
    try:
        con = connector(portal)
        _, state = read(con, "opportunity")
        deal = sorted(upserts(read(con, "opportunity")[0]))[0]
        portal.writer().update("opportunity", deal, {"name": "Renamed under the lag"})
        clock.advance(seconds=2)
        missed, state = read(con, "opportunity", state)
        assert deal not in upserts(missed)
        clock.advance(seconds=90)
        caught, _ = read(con, "opportunity", state)
        assert upserts(caught)[deal].fields["name"] == "Renamed under the lag"
    finally:
        portal.stop()


def test_a_wrong_token_is_an_authentication_error_with_a_hint(
        portal: RunningHubSpotSandbox) -> None:
    secrets, config = portal.bad_connection()
    con = HubSpotConnector(secrets, config)
    result = con.check()
    assert not result.ok and result.field == "access_token"
    assert "INVALID_AUTHENTICATION" in result.message and "Private Apps" in str(result.hint)
    with pytest.raises(AuthenticationError) as refused:
        list(con.read("account", None))
    assert refused.value.hint and "token" in refused.value.hint


def test_oauth_access_tokens_are_refreshed_when_they_expire(
        portal: RunningHubSpotSandbox, clock: SandboxClock) -> None:
    tokens = oauth_tokens(portal)
    client_id, secret = TEST_CLIENT
    config = {"auth": "oauth", "sandbox_url": portal.url, "client_id": client_id}
    con = HubSpotConnector({"access_token": tokens["access_token"], "client_secret": secret,
                            "refresh_token": tokens["refresh_token"]}, config)
    assert con.check().ok
    clock.advance(minutes=31)  # HubSpot's access tokens last 30 minutes
    changes, _ = read(con, "account")
    assert len(upserts(changes)) == portal.live_count("account")
    assert con._access_token != tokens["access_token"]  # noqa: SLF001
    revoked = HubSpotConnector({"access_token": "expired", "client_secret": secret,
                                "refresh_token": "revoked"}, config)
    with pytest.raises(AuthenticationError) as refused:
        revoked.count("account")
    assert "connect with HubSpot again" in str(refused.value.hint)


def test_429s_without_retry_after_are_retried_and_the_daily_limit_stops_cleanly(
        portal: RunningHubSpotSandbox) -> None:
    con = connector(portal)
    portal.set_faults({"rate_limit_after": 0, "rate_limit_calls": 3})
    changes, _ = read(con, "account")
    assert len(upserts(changes)) == portal.live_count("account")
    assert portal.fault_counts()["rate_limit"] == 3
    portal.set_faults({"quota_exceeded_after": 0})
    with pytest.raises(QuotaExceeded):
        con.count("account")
    assert portal.fault_counts()["quota_exceeded"] == 1  # not retried: the day is spent


def test_reconcile_lists_every_live_id(portal: RunningHubSpotSandbox) -> None:
    con = connector(portal)
    _, state = read(con, "account")
    changes, _ = read(con, "account", state, reconcile=True)
    live = [c for c in changes if isinstance(c, LiveIds)]
    assert len(live) == 1 and len(live[0].source_ids) == portal.live_count("account")


def test_values_are_read_exactly_or_quarantined_with_the_reason() -> None:
    stages = {"closedwon": ("Closed Won", True, True)}
    deal: dict[str, Any] = {
            "id": "7", "createdAt": "2025-01-01T00:00:00Z", "updatedAt": "2025-01-02T00:00:00Z",
            "archived": False, "associations": {"companies": ["3"]},
            "properties": {"amount": "1234.50", "dealstage": "closedwon",
                           "closedate": "1767225600000", "hs_deal_stage_probability": "0.25",
                           "hs_lastmodifieddate": "2025-01-02T00:00:00.123Z"}}
    mapped = map_record("opportunity", deal, stages)
    assert isinstance(mapped, Upsert)
    assert mapped.fields["amount"] == Decimal("1234.50") and mapped.fields["is_won"] is True
    assert mapped.fields["close_date"].isoformat() == "2026-01-01"  # epoch ms, UTC day
    assert mapped.fields["probability"] == 25 and mapped.fields["account_id"] == "3"
    for props, reason in (({"amount": "1,234.50"}, "amount"),
                          ({"dealstage": "gone"}, "no deal pipeline"),
                          ({"closedate": "soon"}, "close_date")):
        bad = map_record("opportunity", {**deal, "properties": {**deal["properties"], **props}},
                         stages)
        assert isinstance(bad, Quarantine) and reason in bad.reason, props
    company = {**deal, "properties": {"numberofemployees": "12.5",
                                      "hs_lastmodifieddate": "2025-01-02T00:00:00Z"}}
    half = map_record("account", company)
    assert isinstance(half, Quarantine) and "whole number" in half.reason


def test_a_resumed_first_read_brings_changes_to_records_it_had_already_listed(
        portal: RunningHubSpotSandbox) -> None:
    """The list is paged by id: a record changed after the list passed it is found by the
    search window the same read ends with, so a completed read misses nothing before it."""
    con = connector(portal)
    changes = list(con.read("opportunity", None))
    mid = next(c.state for c in changes if isinstance(c, Checkpoint) and c.state.get(
        "list_after"))
    listed = min(c.source_id for c in changes if isinstance(c, Upsert))
    portal.writer().update("opportunity", listed, {"name": "Changed behind the list"})
    resumed, state = read(con, "opportunity", mid)
    assert upserts(resumed)[listed].fields["name"] == "Changed behind the list"
    assert state["cursor"] and "list_after" not in state


def test_a_resumed_window_is_followed_by_a_fresh_one(portal: RunningHubSpotSandbox) -> None:
    """A window resumed from its last id misses changes to ids it had passed: the read goes
    on with a fresh window, so the change is in this read, not the next."""
    con = connector(portal)
    _, state = read(con, "opportunity")
    changes, _ = read(con, "opportunity", {**state, "cursor": "2015-01-01T00:00:00+00:00"})
    mid = [c.state for c in changes if isinstance(c, Checkpoint) and c.state.get("window")][1]
    passed = min(c.source_id for c in changes if isinstance(c, Upsert))
    portal.writer().update("opportunity", passed, {"name": "Changed behind the window"})
    resumed, after = read(con, "opportunity", mid)
    assert upserts(resumed)[passed].fields["name"] == "Changed behind the window"
    assert "window" not in after


def test_hubspot_deals_are_priced_from_their_line_items(
        tmp_path: Path, warehouse: Warehouse, tenant_id: str) -> None:
    """What pricing reads: each deal's quoted total over its value at list price, from the
    line items (price, discount, amount) — the same ratio the deal model drew the deal
    with, so the analytics find in HubSpot the signal they find in every CRM."""
    from accrue.analytics.store import load_tenant
    from connectors.sandbox_kit.deal_model import build_world

    clock = SandboxClock()
    portal = HubSpotHarness().start(tmp_path / "priced.db", opportunities=60, seed=11,
                                    clock=clock)
    try:
        con = connector(portal)
        for name in ("account", "product", "opportunity", "opportunity_line"):
            assert sync_object(warehouse, con, tenant_id, name).complete, name
    finally:
        portal.stop()
    deals = load_tenant(warehouse.engine, tenant_id).deals
    anchor = clock().replace(hour=0, minute=0, second=0, microsecond=0)
    world = build_world(60, 11, anchor=anchor, activities=False)
    truth = {}
    for line in world.objects["opportunity_line"]:
        f = line.fields
        quoted, listed = truth.get(f["opportunity_id"], (0.0, 0.0))
        truth[f["opportunity_id"]] = (quoted + f["total_price"],
                                      listed + f["quantity"] * f["list_price"])
    expected = sorted(round(q / lst, 9) for q, lst in truth.values())
    assert sorted(round(r, 9) for r in deals["ratio"].dropna()) == expected
