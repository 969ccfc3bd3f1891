"""The SugarCRM sandbox speaks REST v11 as Sugar does (what the contract suite cannot see).

Sugar's sessions (one per user and platform, refresh tokens that die when used, access
tokens that expire), the filter API (bracket GET and JSON POST alike, `next_offset` -1 at
the end, `deleted=true`), soft deletes, answers in the user's time zone, its error shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.sugarcrm.sandbox.harness import (
    INSTANCE_URL,
    PASSWORD,
    PLATFORM,
    RunningSugarSandbox,
    SugarHarness,
)
from connectors.sugarcrm.sandbox.seed import INTEGRATION_USER
from connectors.sugarcrm.sandbox.server import Settings

API = "/rest/v11"


class Clock:
    """The instance's time, standing still until a test moves `now`."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(name="clock")
def clock_fixture() -> Clock:
    return Clock()


@pytest.fixture
def org(tmp_path: Path, clock: Clock) -> Iterator[RunningSugarSandbox]:
    running = SugarHarness().start(tmp_path / "sugar.db", opportunities=20, seed=3,
                                   clock=clock, settings=Settings(timezone="America/New_York"))
    yield running
    running.stop()


def token(org: RunningSugarSandbox, **changes: str) -> requests.Response:
    body = {"grant_type": "password", "client_id": "sugar", "client_secret": "",
            "username": INTEGRATION_USER, "password": PASSWORD, "platform": PLATFORM,
            **changes}
    return requests.post(f"{org.url}{API}/oauth2/token", json=body, timeout=10)


def call(org: RunningSugarSandbox, access: str | None, method: str, path: str,
         **kwargs: Any) -> requests.Response:
    headers = {"OAuth-Token": access} if access else {}
    return requests.request(method, f"{org.url}{API}{path}", headers=headers, timeout=10,
                            **kwargs)


def test_the_password_grant_and_its_refusals(org: RunningSugarSandbox) -> None:
    good = token(org)
    assert good.status_code == 200
    body = good.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    assert body["refresh_token"] and body["refresh_expires_in"] == 1_209_600
    wrong = token(org, password="nope")
    assert wrong.status_code == 401 and wrong.json()["error"] == "need_login"
    client = token(org, client_id="someone-else")
    assert client.status_code == 401 and client.json()["error"] == "invalid_client"
    platform = token(org, platform="not_registered")
    assert platform.status_code == 400 and platform.json()["error"] == "invalid_platform"
    missing = call(org, None, "GET", "/me")
    assert missing.status_code == 401 and missing.json() == {
        "error": "need_login", "error_message": "No valid authentication for user."}


def test_a_refresh_token_works_once_and_a_new_login_ends_the_platform_s_session(
    org: RunningSugarSandbox
) -> None:
    first = token(org).json()
    refresh = {"grant_type": "refresh_token", "client_id": "sugar", "client_secret": "",
               "refresh_token": first["refresh_token"], "platform": PLATFORM}
    renewed = requests.post(f"{org.url}{API}/oauth2/token", json=refresh, timeout=10)
    assert renewed.status_code == 200
    again = requests.post(f"{org.url}{API}/oauth2/token", json=refresh, timeout=10)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    current = renewed.json()["access_token"]
    assert call(org, current, "GET", "/me").json()["current_user"]["user_name"] == (
        INTEGRATION_USER)
    other = token(org, platform="mobile").json()["access_token"]  # another platform: no effect
    assert call(org, current, "GET", "/me").status_code == 200
    assert call(org, other, "GET", "/me").status_code == 200
    token(org)  # the same platform again: the earlier session ends
    ended = call(org, current, "GET", "/me")
    assert ended.status_code == 401 and ended.json()["error"] == "invalid_grant"
    assert call(org, other, "GET", "/me").status_code == 200


def test_access_tokens_expire_on_the_instance_s_clock(org: RunningSugarSandbox,
                                                      clock: Clock) -> None:
    access = token(org).json()["access_token"]
    clock.now += timedelta(minutes=59)
    assert call(org, access, "GET", "/ping").json() == "pong"
    clock.now += timedelta(minutes=2)
    assert call(org, access, "GET", "/ping").status_code == 401


def test_filter_pages_in_order_with_next_offset_and_get_brackets_equal_post(
    org: RunningSugarSandbox
) -> None:
    access = token(org).json()["access_token"]
    body = {"filter": [{"date_modified": {"$gte": "2020-01-01T00:00:00-05:00"}}],
            "order_by": "date_modified:ASC,id:ASC", "max_num": 6, "fields": "name"}
    seen: list[dict[str, Any]] = []
    offset = 0
    while offset != -1:
        page = call(org, access, "POST", "/Opportunities/filter",
                    json={**body, "offset": offset}).json()
        seen += page["records"]
        offset = page["next_offset"]
    assert len(seen) == org.live_count("opportunity") == 20
    keys = [(r["date_modified"], r["id"]) for r in seen]
    assert [datetime.fromisoformat(k[0]) for k in keys] == sorted(
        datetime.fromisoformat(k[0]) for k in keys)
    assert set(seen[0]) == {"id", "name", "date_modified", "_module"}
    assert seen[0]["date_modified"].endswith(("-05:00", "-04:00"))  # the user's zone
    params = {"filter[0][date_modified][$gte]": "2020-01-01T00:00:00-05:00",
              "order_by": "date_modified:ASC,id:ASC", "max_num": "6", "fields": "name"}
    got = call(org, access, "GET", "/Opportunities/filter", params=params).json()
    assert got["records"] == seen[:6] and got["next_offset"] == 6
    count = call(org, access, "POST", "/Opportunities/filter/count", json=body).json()
    assert count == {"record_count": 20}
    bad = call(org, access, "POST", "/Opportunities/filter",
               json={"filter": [{"amount": {"$near": 3}}]})
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_parameter"


def test_deleting_is_soft_and_shows_with_deleted_true(org: RunningSugarSandbox,
                                                      clock: Clock) -> None:
    access = token(org).json()["access_token"]
    deal = call(org, access, "POST", "/Opportunities/filter",
                json={"max_num": 1, "order_by": "id:ASC"}).json()["records"][0]
    lines = call(org, access, "POST", "/RevenueLineItems/filter",
                 json={"filter": [{"opportunity_id": deal["id"]}]}).json()["records"]
    assert lines
    clock.now += timedelta(minutes=5)
    assert call(org, access, "DELETE", f"/Opportunities/{deal['id']}").json() == {
        "id": deal["id"]}
    gone = call(org, access, "GET", f"/Opportunities/{deal['id']}")
    assert gone.status_code == 404 and gone.json()["error"] == "not_found"
    live = call(org, access, "POST", "/Opportunities/filter",
                json={"filter": [{"id": deal["id"]}]}).json()["records"]
    assert live == []
    shown = call(org, access, "POST", "/Opportunities/filter",
                 json={"filter": [{"id": deal["id"]}], "deleted": True}).json()["records"]
    assert shown[0]["deleted"] == 1
    assert datetime.fromisoformat(shown[0]["date_modified"]) == clock.now
    deleted_lines = call(org, access, "POST", "/RevenueLineItems/filter",
                         json={"filter": [{"opportunity_id": deal["id"]}],
                               "deleted": True}).json()["records"]
    assert {r["id"] for r in deleted_lines} == {r["id"] for r in lines}
    assert all(r["deleted"] == 1 for r in deleted_lines)


def test_writes_are_stored_as_sugar_stores_them(org: RunningSugarSandbox) -> None:
    access = token(org).json()["access_token"]
    account = call(org, access, "POST", "/Accounts", json={"name": "Sandbox Holdings"}).json()
    deal = call(org, access, "POST", "/Opportunities", json={
        "name": "A deal", "account_id": account["id"], "amount": 1234.5,
        "sales_stage": "Negotiation/Review", "date_closed": "2027-01-31"}).json()
    assert deal["amount"] == "1234.500000" and deal["account_name"] == "Sandbox Holdings"
    assert deal["probability"] == 80 and deal["currency_id"] == "-99"
    refused = call(org, access, "POST", "/Opportunities", json={
        "name": "Bad", "amount": "lots"})
    assert refused.status_code == 422 and "amount" in refused.json()["error_message"]
    stage = call(org, access, "PUT", f"/Opportunities/{deal['id']}",
                 json={"sales_stage": "Won-ish"})
    assert stage.status_code == 422
    missing = call(org, access, "POST", "/Accounts", json={"industry": "Retail"})
    assert missing.status_code == 422 and missing.json()["error"] == "missing_parameter"


def test_faults_answer_in_sugar_s_shapes(org: RunningSugarSandbox) -> None:
    access = token(org).json()["access_token"]
    org.set_faults({"rate_limit_after": 0, "rate_limit_calls": 1, "rate_limit_retry_after": 7})
    limited = call(org, access, "GET", "/me")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert limited.json()["error"] == "too_many_requests"
    assert token(org).status_code == 200  # the token endpoint is faulted only on request
    org.set_faults({"session_expiry_after": 0, "session_expiry_calls": 1})
    expired = call(org, access, "GET", "/me")
    assert expired.status_code == 401 and expired.json()["error"] == "invalid_grant"
    with pytest.raises(ValueError, match="Unknown fault switch"):
        org.set_faults({"explode": True})
    answer = requests.post(f"{org.url}/_sandbox/faults", json={"error_rate": 2}, timeout=10)
    assert answer.status_code == 400 and "error_rate" in answer.json()["error_message"]
    assert org.fault_counts()["session_expiry"] == 1
    org.set_faults({})
    assert requests.get(f"{org.url}/_sandbox/health", timeout=10).ok
    assert INSTANCE_URL.startswith("https://")
