"""The SugarCRM adapter against its sandbox: what is particular to Sugar's API.

Tokens (expiry, refresh tokens that die when used, a second login with the platform that
ends the first session), keyset paging that survives records modified mid-read (where
offset paging skips one), soft deletes, the lookback over late commits, the user's time
zone, wrong credentials, 429 / 5xx retried, Sugar's monthly prune, free-text numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from accrue.analytics.store import load_tenant
from accrue.sync import sync_object
from accrue.warehouse import Warehouse
from accrue_pipelines_tests.connectors.test_sugarcrm_sandbox import (  # noqa: F401 - fixture
    Clock,
    clock_fixture,
)
from connectors.base import AuthenticationError, Checkpoint, Delete, LiveIds, Quarantine, Upsert
from connectors.sandbox_kit.deal_model import build_world
from connectors.sugarcrm.connector import SugarConnector
from connectors.sugarcrm.sandbox.harness import RunningSugarSandbox, SugarHarness
from connectors.sugarcrm.sandbox.seed import sugar_id
from connectors.sugarcrm.sandbox.server import Settings


@pytest.fixture
def org(tmp_path: Path, clock: Clock) -> Iterator[RunningSugarSandbox]:
    running = SugarHarness().start(tmp_path / "sugar.db", opportunities=30, seed=5,
                                   page_size=7, clock=clock,
                                   settings=Settings(timezone="Europe/Berlin"))
    yield running
    running.stop()


def connect(org: RunningSugarSandbox, **config: Any) -> SugarConnector:
    secrets, base = org.connection()
    return SugarConnector(secrets, {**base, "max_backoff_seconds": 0.05, **config})


def upserts(changes: list[Any]) -> dict[str, Upsert]:
    return {c.source_id: c for c in changes if isinstance(c, Upsert)}


def state_of(changes: list[Any]) -> dict[str, Any]:
    return dict([c for c in changes if isinstance(c, Checkpoint)][-1].state)


def test_expired_tokens_are_refreshed_and_an_ended_session_signs_in_again(
    org: RunningSugarSandbox, clock: Clock
) -> None:
    with closing(connect(org)) as connector:
        assert connector.count("account") == org.live_count("account")
        client = connector.client
        assert (client.logins, client.refreshes) == (1, 0)
        clock.now += timedelta(hours=2)  # the access token (an hour) has expired
        assert connector.count("contact") == org.live_count("contact")
        assert (client.logins, client.refreshes) == (1, 1)
        used = client._refresh
        with connect(org) as other:  # the same user and platform: ends the first session
            assert other.check().ok
        assert connector.count("lead") == org.live_count("lead")
        assert client.logins == 2 and client._refresh != used
        # The refresh token used before died when it was used: Sugar refuses it now.
        refused = requests.post(f"{org.url}/rest/v11/oauth2/token", timeout=10, json={
            "grant_type": "refresh_token", "client_id": "sugar", "client_secret": "",
            "refresh_token": used, "platform": "accrue"})
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_keyset_paging_reads_every_record_when_records_change_mid_read(
    org: RunningSugarSandbox, clock: Clock
) -> None:
    """Offset paging loses a record when one already read moves to the end; ours not."""
    writer = org.writer()
    with connect(org) as connector:
        all_ids = set(upserts(list(connector.read("opportunity", None))))
        reading = connector.read("opportunity", None)
        first_page = []
        for change in reading:
            if isinstance(change, Checkpoint):
                break
            assert isinstance(change, Upsert)
            first_page.append(change.source_id)
        clock.now += timedelta(seconds=5)
        writer.update("opportunity", first_page[0], {"name": "Moved to the end"})
        rest = list(reading)
        # Changed after the read began (past its window's end): the next read brings it.
        following = upserts(list(connector.read("opportunity", state_of(rest))))
    read = set(first_page) | set(upserts(rest))
    assert read == all_ids
    assert following[first_page[0]].fields["name"] == "Moved to the end"

    # The same change under plain offset paging skips a record (why keys are used).
    access = writer.client._token()
    body = {"order_by": "date_modified:ASC,id:ASC", "max_num": 7}

    def page(offset: int) -> list[str]:
        answer = requests.post(f"{org.url}/rest/v11/Opportunities/filter", timeout=10,
                               headers={"OAuth-Token": access},
                               json={**body, "offset": offset}).json()
        return [r["id"] for r in answer["records"]]

    seen = page(0)
    clock.now += timedelta(seconds=5)
    writer.update("opportunity", seen[0], {"name": "Moved again"})
    offset = 7
    while batch := page(offset):
        seen += batch
        offset += 7
    assert set(seen) != all_ids  # one record slid across the page boundary unread


def test_deletes_arrive_flagged_with_their_line_items(org: RunningSugarSandbox,
                                                      clock: Clock) -> None:
    with connect(org) as connector:
        deals = list(connector.read("opportunity", None))
        lines = list(connector.read("opportunity_line", None))
        victim = next(u for u in upserts(lines).values()).fields["opportunity_id"]
        clock.now += timedelta(minutes=20)
        org.writer().delete("opportunity", victim)
        later = list(connector.read("opportunity", state_of(deals)))
        later_lines = list(connector.read("opportunity_line", state_of(lines)))
    gone = upserts(later)
    assert list(gone) == [victim] and gone[victim].is_deleted
    assert gone[victim].fields["name"]  # the last values come along
    flagged = [u for u in upserts(later_lines).values() if u.is_deleted]
    assert flagged and all(u.fields["opportunity_id"] == victim for u in flagged)
    assert not any(isinstance(c, LiveIds) for c in later)


def test_the_lookback_reads_a_change_that_committed_late(org: RunningSugarSandbox,
                                                         clock: Clock) -> None:
    with connect(org) as connector:
        first = list(connector.read("account", None))
        cursor = datetime.fromisoformat(state_of(first)["cursor"])
        clock.now += timedelta(minutes=1)
        org.set_faults({"late_commit_rate": 1.0, "late_commit_minutes": 3})
        target = sorted(upserts(first))[0]
        org.writer().update("account", target, {"name": "Committed late"})
        org.set_faults({})
        later = upserts(list(connector.read("account", state_of(first))))
        no_lookback = upserts(list(connect(org, lookback_seconds=0).read(
            "account", state_of(first))))
    assert later[target].modified_at < cursor  # stamped before the last read ended
    assert later[target].fields["name"] == "Committed late"
    assert target not in no_lookback


def test_stamps_in_the_user_s_time_zone_are_read_as_instants(org: RunningSugarSandbox,
                                                             clock: Clock) -> None:
    clock.now += timedelta(minutes=3)
    created = org.writer().create("account", {"name": "Berlin GmbH"})
    with connect(org) as connector:
        found = upserts(list(connector.read("account", None)))[created]
    assert found.raw["date_modified"] == "2026-11-30T16:03:00+01:00"
    assert found.modified_at == clock.now


def test_wrong_credentials_are_an_authentication_error_with_a_hint(
    org: RunningSugarSandbox
) -> None:
    secrets, config = org.bad_connection()
    with SugarConnector(secrets, config) as connector:
        result = connector.check()
        with pytest.raises(AuthenticationError) as raised:
            list(connector.read("account", None))
    assert not result.ok and result.field == "password" and "need_login" in result.message
    assert raised.value.hint and "password" in raised.value.hint
    good, config = org.connection()
    with SugarConnector(good, {**config, "platform": "unknown_one"}) as connector:
        assert connector.check().field == "platform"
    with SugarConnector(good, {**config, "client_id": "who"}) as connector:
        assert connector.check().field == "client_id"


def test_429_and_5xx_are_retried(org: RunningSugarSandbox) -> None:
    with connect(org) as connector:
        expected = org.live_count("opportunity")
        org.set_faults({"throttle_next": 2, "fail_next": 2})
        read = upserts(list(connector.read("opportunity", None)))
        assert len(read) == expected
        org.set_faults({"error_rate": 1.0, "error_statuses": [500]})
        with pytest.raises(Exception, match="SugarCRM unavailable: HTTP 500"):
            list(connect(org, max_attempts=2).read("opportunity", None))
        assert org.fault_counts()["http_500"] == 2
        org.set_faults({})


def test_a_month_turned_or_reconcile_brings_every_live_id(org: RunningSugarSandbox,
                                                         clock: Clock) -> None:
    with connect(org) as connector:
        first = list(connector.read("contact", None))
        assert not any(isinstance(c, LiveIds) for c in first)
        reconciled = list(connector.read("contact", state_of(first), reconcile=True))
        clock.now += timedelta(days=2)  # past the 1st: Sugar's prune job may have run
        pruned = list(connector.read("contact", state_of(first)))
    for changes in (reconciled, pruned):
        live = [c for c in changes if isinstance(c, LiveIds)]
        assert len(live) == 1 and len(live[0].source_ids) == org.live_count("contact")
        assert isinstance(changes[-1], Checkpoint)


def test_free_text_numbers_are_read_exactly_or_quarantined(org: RunningSugarSandbox) -> None:
    with connect(org) as connector:
        ids = sorted(upserts(list(connector.read("account", None))))
        writer = org.writer()
        writer.write_raw("account", ids[0], {"annual_revenue": "$12M"})
        writer.write_raw("account", ids[1], {"employee_count": "250"})
        changes = list(connector.read("account", None))
    held = [c for c in changes if isinstance(c, Quarantine)]
    assert [q.source_id for q in held] == [ids[0]]
    assert held[0].reason == ("account.annual_revenue: annual_revenue='$12M' is not a "
                              "decimal number")
    assert upserts(changes)[ids[1]].fields["employee_count"] == 250
    assert not any(isinstance(c, Delete) for c in changes)


def test_synced_sugar_deals_are_priced_from_their_revenue_line_items(
    org: RunningSugarSandbox, clock: Clock, warehouse: Warehouse, tenant_id: str
) -> None:
    """End to end: every deal's quote / list ratio is the deal model's, from the lines."""
    with connect(org) as connector:
        for name in ("user", "account", "product", "opportunity", "opportunity_line"):
            assert sync_object(warehouse, connector, tenant_id, name).complete, name
    assert warehouse.quarantine_count(tenant_id) == 0
    deals = load_tenant(warehouse.engine, tenant_id).deals.set_index("opportunity_id")
    world = build_world(30, 5, anchor=clock.now.replace(hour=0), activities=False)
    quoted: dict[str, float] = {}
    listed: dict[str, float] = {}
    for line in world.objects["opportunity_line"]:
        deal = sugar_id(str(line.fields["opportunity_id"]), 5)
        quoted[deal] = quoted.get(deal, 0.0) + line.fields["total_price"]
        listed[deal] = listed.get(deal, 0.0) + line.fields["quantity"] * line.fields[
            "list_price"]
    assert len(quoted) == 30
    for deal, total in quoted.items():
        row = deals.loc[deal]
        assert row["exclusion"] is None or pd.isna(row["exclusion"]), row["exclusion"]
        assert row["ratio"] == pytest.approx(total / listed[deal], rel=1e-9)


def test_activities_are_read_from_four_modules_each_with_its_own_cursor(
    org: RunningSugarSandbox, clock: Clock
) -> None:
    """Calls, meetings, tasks and e-mails; links from the parent; a task's due day as Sugar
    writes it (the user's zone); a change in one module arrives, the others stay put."""
    with connect(org) as connector:
        first = list(connector.read("activity", None))
        read = upserts(first)
        assert len(read) == connector.count("activity") == org.live_count("activity")
        kinds = {u.fields["activity_type"] for u in read.values()}
        assert kinds == {"call", "meeting", "task", "email"}
        assert all(u.fields["opportunity_id"] for u in read.values())
        state = state_of(first)
        assert set(state["parts"]) == {"Calls", "Meetings", "Tasks", "Emails"}
        clock.now += timedelta(minutes=5)
        access = org.writer().client
        task = access.create("Tasks", {"name": "Call back", "status": "Not Started",
                                       "date_due": "2026-12-01T23:30:00+00:00",
                                       "parent_type": "Leads", "parent_id": "lead-1"})
        later = upserts(list(connector.read("activity", state)))
    assert list(later) == [task["id"]]
    fields = later[task["id"]].fields
    assert fields["lead_id"] == "lead-1" and fields["opportunity_id"] is None
    assert fields["is_closed"] is False and fields["activity_type"] == "task"
    assert str(fields["due_date"]) == "2026-12-02"  # 00:30 on the 2nd in Berlin


def test_the_instance_url_is_normalised_or_refused_at_setup() -> None:
    from connectors.spec import SetupValueError, prepare_connection
    from connectors.sugarcrm.spec import SPEC

    values = {"username": "api", "password": "pw"}
    for typed in ("acme.sugarondemand.com", "https://Acme.sugarondemand.com/",
                  "https://acme.sugarondemand.com/rest/v11/Accounts"):
        secrets, config = prepare_connection(SPEC, {**values, "instance_url": typed})
        assert config["instance_url"] == "https://acme.sugarondemand.com", typed
        assert secrets == {"password": "pw"} and config["platform"] == "accrue"
        assert config["client_id"] == "sugar"
    _, config = prepare_connection(SPEC, {**values, "instance_url": "crm.acme.com/sugar/"})
    assert config["instance_url"] == "https://crm.acme.com/sugar"
    for refused in ("http://acme.sugarondemand.com", "https://user@acme.sugarondemand.com",
                    "https://acme.sugarondemand.com:8443"):
        with pytest.raises(SetupValueError) as raised:
            prepare_connection(SPEC, {**values, "instance_url": refused})
        assert raised.value.field == "instance_url"
    assert SPEC.allows_host("acme.sugarondemand.com") and not SPEC.allows_host("crm.acme.com")


def test_users_come_with_their_managers_and_deals_with_their_lines(
    org: RunningSugarSandbox
) -> None:
    with connect(org) as connector:
        users = upserts(list(connector.read("user", None)))
        deals = upserts(list(connector.read("opportunity", None)))
        lines = upserts(list(connector.read("opportunity_line", None)))
        products = upserts(list(connector.read("product", None)))
    managers = {u.fields["manager_id"] for u in users.values()} - {None}
    assert managers and managers <= set(users)  # reports_to_id names another user
    assert {u.fields["is_active"] for u in users.values()} <= {True, False}
    for line in lines.values():
        assert line.fields["opportunity_id"] in deals
        assert line.fields["product_id"] in products
        quantity, unit = line.fields["quantity"], line.fields["unit_price"]
        assert quantity * unit == line.fields["total_price"]  # exact decimals
    won = [d for d in deals.values() if d.fields["stage"] == "Closed Won"]
    assert won and all(d.fields["is_closed"] and d.fields["is_won"] for d in won)
