"""Fault-injection switches of the Salesforce sandbox, seen through the real simple-salesforce."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceRefusedRequest,
)

from accrue_pipelines_tests.fixtures_sandbox import SandboxClock, login, start_sandbox
from connectors.salesforce.sandbox import (
    FaultConfig,
    FaultConfigError,
    RunningSandbox,
    parse_faults,
)
from connectors.salesforce.transport import sandbox_session

COUNT = "SELECT COUNT() FROM Account"


def admin(sandbox: RunningSandbox, method: str, path: str, body: Any = None) -> Any:
    response = requests.request(method, f"{sandbox.url}/_sandbox/{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json() if response.content else None


def set_faults(sandbox: RunningSandbox, **switches: Any) -> dict[str, Any]:
    return admin(sandbox, "POST", "faults", switches)


def injected(sandbox: RunningSandbox) -> dict[str, int]:
    return admin(sandbox, "GET", "faults")["injected"]


def rest(sandbox: RunningSandbox, sf: Salesforce, path: str) -> requests.Response:
    """A raw REST call, for what simple-salesforce hides (headers, exact bodies)."""
    return requests.get(
        f"{sandbox.url}/services/data/v59.0/{path}",
        timeout=10,
        headers={"Authorization": f"Bearer {sf.session_id}"},
    )


def outcome(call: Callable[[], Any]) -> int:
    """200 for success, else the HTTP status simple-salesforce reports."""
    try:
        call()
    except SalesforceGeneralError as error:
        return int(error.status)
    return 200


def stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


def soql_datetime(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# -- HTTP errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"), [(500, "UNKNOWN_EXCEPTION"), (503, "SERVER_UNAVAILABLE")]
)
def test_error_rate_gives_salesforce_shaped_5xx(
    sf_sandbox: RunningSandbox, sf_client: Salesforce, status: int, code: str
) -> None:
    state = set_faults(sf_sandbox, error_rate=1, error_statuses=[status])
    assert state["config"]["error_rate"] == 1.0 and state["active"] is True
    with pytest.raises(SalesforceGeneralError) as failure:
        sf_client.query(COUNT)
    assert failure.value.status == status
    [item] = failure.value.content
    assert set(item) == {"message", "errorCode"} and item["errorCode"] == code
    raw = rest(sf_sandbox, sf_client, "limits/")
    assert raw.status_code == status and raw.headers["Sforce-Limit-Info"].startswith("api-usage=")
    assert injected(sf_sandbox)[f"http_{status}"] == 2
    admin(sf_sandbox, "DELETE", "faults")
    assert sf_client.query(COUNT)["totalSize"] == 24
    assert injected(sf_sandbox)[f"http_{status}"] == 0


def test_seed_makes_the_fault_sequence_reproducible(
    sf_sandbox: RunningSandbox, sf_client: Salesforce
) -> None:
    def trial() -> list[int]:
        return [outcome(lambda: sf_client.query(COUNT)) for _ in range(24)]

    assert set_faults(sf_sandbox, error_rate=0.5, seed=11)["seed"] == 11
    first = trial()
    assert {200, 500, 503} <= set(first)
    set_faults(sf_sandbox, error_rate=0.5, seed=11)  # setting the switches restarts the stream
    assert trial() == first
    counts = injected(sf_sandbox)
    assert counts["http_500"] + counts["http_503"] == 2 * sum(s != 200 for s in first)
    set_faults(sf_sandbox, seed=12)
    assert trial() != first


def test_scope_limits_faults_to_chosen_endpoint_groups(
    sf_sandbox: RunningSandbox, sf_client: Salesforce
) -> None:
    set_faults(sf_sandbox, error_rate=1, scope=["query"])
    assert sf_client.Account.describe()["name"] == "Account"
    assert sf_client.limits()["DailyApiRequests"]["Max"] == 100000
    assert outcome(lambda: sf_client.query(COUNT)) in (500, 503)


# -- counted faults ------------------------------------------------------------


def test_rate_limit_after_n_calls_for_m_calls(
    sf_sandbox: RunningSandbox, sf_client: Salesforce
) -> None:
    set_faults(sf_sandbox, rate_limit_after=2, rate_limit_calls=2, rate_limit_retry_after=7)
    assert [outcome(lambda: sf_client.query(COUNT)) for _ in range(3)] == [200, 200, 429]
    limited = rest(sf_sandbox, sf_client, "limits/")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert limited.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert outcome(lambda: sf_client.query(COUNT)) == 200  # the window of 2 calls is over
    state = admin(sf_sandbox, "GET", "faults")
    assert state["injected"]["rate_limit"] == 2 and state["armed"]["rate_limit"]["calls_seen"] == 5
    set_faults(sf_sandbox, rate_limit_after=1, rate_limit_calls=1, rate_limit_repeat=True)
    assert [outcome(lambda: sf_client.query(COUNT)) for _ in range(6)] == [200, 429] * 3


def test_quota_exceeded_matches_the_real_daily_limit(
    sf_sandbox: RunningSandbox, sf_client: Salesforce
) -> None:
    set_faults(sf_sandbox, quota_exceeded_after=1)
    assert sf_client.query(COUNT)["totalSize"] == 24
    with pytest.raises(SalesforceRefusedRequest) as failure:
        sf_client.query(COUNT)
    assert failure.value.content == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    with pytest.raises(SalesforceRefusedRequest):
        sf_client.limits()  # sticky by default, like a used-up quota
    faulted = rest(sf_sandbox, sf_client, "sobjects/")
    assert injected(sf_sandbox)["quota_exceeded"] == 3
    admin(sf_sandbox, "DELETE", "faults")
    used = sf_client.limits()["DailyApiRequests"]
    admin(sf_sandbox, "POST", "config", {"api_daily_limit": used["Max"] - used["Remaining"]})
    natural = rest(sf_sandbox, sf_client, "sobjects/")
    assert (
        (natural.status_code, natural.json())
        == (faulted.status_code, faulted.json())
        == (403, failure.value.content)
    )
    for response in (faulted, natural):
        used_calls, limit = response.headers["Sforce-Limit-Info"][10:].split("/")
        assert used_calls == limit


def test_session_expiry_after_n_calls(sf_sandbox: RunningSandbox, sf_client: Salesforce) -> None:
    old_session = sf_client.session_id
    by_session_id = Salesforce(
        session_id=old_session, instance_url=sf_sandbox.url, session=sandbox_session(sf_sandbox.url)
    )
    set_faults(sf_sandbox, session_expiry_after=1)
    assert sf_client.query(COUNT)["totalSize"] == 24
    assert sf_client.session_id == old_session
    # Call 2 expires every session; the password client logs in again and retries.
    assert sf_client.query(COUNT)["totalSize"] == 24
    assert sf_client.session_id != old_session
    with pytest.raises(SalesforceExpiredSession) as failure:
        by_session_id.query(COUNT)
    assert failure.value.content[0]["errorCode"] == "INVALID_SESSION_ID"
    assert injected(sf_sandbox)["session_expiry"] == 1
    fresh = Salesforce(
        session_id=sf_client.session_id,
        instance_url=sf_sandbox.url,
        session=sandbox_session(sf_sandbox.url),
    )
    set_faults(sf_sandbox, session_expiry_after=0)
    with pytest.raises(SalesforceExpiredSession):
        fresh.query(COUNT)
    # Sticky expiry: simple-salesforce re-logs in 3 times, then gives up.
    set_faults(sf_sandbox, session_expiry_after=0, session_expiry_calls=None)
    with pytest.raises(SalesforceExpiredSession):
        sf_client.query(COUNT)
    assert injected(sf_sandbox)["session_expiry"] == 2 + 4


# -- the network ---------------------------------------------------------------


def test_dropped_connection_mid_body(sf_sandbox: RunningSandbox, sf_client: Salesforce) -> None:
    set_faults(sf_sandbox, drop_connection_rate=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        sf_client.query(COUNT)
    conn = http.client.HTTPConnection(sf_sandbox.host, sf_sandbox.port, timeout=10)
    conn.request(
        "GET",
        "/services/data/v59.0/limits/",
        headers={"Authorization": f"Bearer {sf_client.session_id}"},
    )
    response = conn.getresponse()
    announced = int(response.getheader("Content-Length") or 0)
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    conn.close()
    assert response.status == 200 and len(cut.value.partial) == announced // 2 > 0
    # The call ran before its response was lost: the write is committed.
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        sf_client.Account.create({"Name": "Lost Reply Ltd"})
    assert admin(sf_sandbox, "GET", "health")["status"] == "ok"  # admin is never cut
    assert injected(sf_sandbox)["dropped_connection"] == 3
    admin(sf_sandbox, "DELETE", "faults")
    record_id = sf_client.query("SELECT Id FROM Account WHERE Name = 'Lost Reply Ltd'")["records"][
        0
    ]["Id"]
    set_faults(sf_sandbox, drop_connection_rate=1)
    # A 204 has no body to cut, so the connection closes before the status line.
    with pytest.raises(requests.exceptions.ConnectionError):
        sf_client.Account.update(record_id, {"Website": "lost.example"})
    admin(sf_sandbox, "DELETE", "faults")
    assert sf_client.Account.get(record_id)["Website"] == "lost.example"
    assert sf_client.query(COUNT)["totalSize"] == 25  # and the server keeps serving


def test_latency_is_counted(sf_sandbox: RunningSandbox, sf_client: Salesforce) -> None:
    state = set_faults(sf_sandbox, latency_ms=5, latency_jitter_ms=5)
    assert (state["config"]["latency_ms"], state["config"]["latency_jitter_ms"]) == (5, 5)
    assert sf_client.query(COUNT)["totalSize"] == 24
    sf_client.limits()
    assert injected(sf_sandbox)["latency"] == 2


# -- late commits --------------------------------------------------------------


def test_late_commit_hides_a_write_from_a_window_without_lookback(
    sf_sandbox: RunningSandbox, sf_client: Salesforce
) -> None:
    clock = sf_sandbox.sandbox.clock
    assert isinstance(clock, SandboxClock)
    set_faults(sf_sandbox, late_commit_rate=1, late_commit_minutes=10)
    cursor = clock()
    record_id = sf_client.Account.create({"Name": "Slow Transaction Inc"})["id"]
    record = sf_client.Account.get(record_id)
    lateness = cursor - stamp(record["SystemModstamp"])
    # Stamps keep milliseconds, so the stamp may read up to 1 ms earlier still.
    assert timedelta(minutes=9, seconds=55) <= lateness <= timedelta(minutes=10, milliseconds=1)
    assert record["LastModifiedDate"] == record["CreatedDate"] == record["SystemModstamp"]
    window = "SELECT Id FROM Account WHERE SystemModstamp >= {}"
    missed = sf_client.query(window.format(soql_datetime(cursor)))["records"]
    assert record_id not in {r["Id"] for r in missed}
    lookback = cursor - timedelta(minutes=10)
    caught = sf_client.query(window.format(soql_datetime(lookback)))["records"]
    assert record_id in {r["Id"] for r in caught}
    assert injected(sf_sandbox)["late_commit"] == 1
    # Admin calls never commit late.
    purged = admin(sf_sandbox, "POST", "purge", {"sobject": "Account"})
    assert stamp(purged["earliestDateAvailable"]) > cursor - timedelta(minutes=1)


# -- admin, start-up, persistence, validation ------------------------------------


def test_admin_endpoints_and_login_are_not_faulted(
    sf_sandbox: RunningSandbox, sf_client: Salesforce
) -> None:
    set_faults(
        sf_sandbox,
        error_rate=1,
        drop_connection_rate=1,
        quota_exceeded_after=0,
        rate_limit_after=0,
        latency_ms=1,
    )
    for path in ("health", "config", "faults", "fields", "truth"):
        admin(sf_sandbox, "GET", path)
    admin(sf_sandbox, "POST", "config", {"page_size": 100})
    assert requests.get(f"{sf_sandbox.url}/services/data/", timeout=10).status_code == 200
    second = login(sf_sandbox)  # login is outside the fault scope by default
    with pytest.raises(SalesforceRefusedRequest):
        second.query(COUNT)

    def oauth_login() -> requests.Response:
        return requests.post(
            f"{sf_sandbox.url}/services/oauth2/token",
            timeout=10,
            data={
                "grant_type": "password",
                "client_id": "x",
                "client_secret": "y",
                "username": sf_sandbox.username,
                "password": sf_sandbox.password + sf_sandbox.security_token,
            },
        )

    assert oauth_login().status_code == 200
    set_faults(sf_sandbox, faults_on_login=True, quota_exceeded_after=None)
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        login(sf_sandbox)
    assert failure.value.code in ("UNKNOWN_EXCEPTION", "SERVER_UNAVAILABLE")
    token = oauth_login()
    assert token.status_code in (500, 503) and "error" in token.json()


def test_faults_set_at_start_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "faulty.db"

    def trial(sandbox: RunningSandbox) -> list[int]:
        sf = login(sandbox)
        return [outcome(lambda: sf.query(COUNT)) for _ in range(12)]

    first = start_sandbox(path, faults='{"error_rate": 0.5, "seed": 5}')
    try:
        sequence = trial(first)
        assert {200, 500, 503} <= set(sequence)
    finally:
        first.stop()
    second = start_sandbox(path, seed=None, n_opportunities=None)
    try:
        assert second.faults.config == FaultConfig(error_rate=0.5, seed=5)
        assert admin(second, "GET", "config")["faults"]["seed"] == 5
        assert trial(second) == sequence  # same seed, same calls: the same trial
    finally:
        second.stop()
    switch_file = tmp_path / "faults.json"
    switch_file.write_text(json.dumps({"latency_ms": 1}))
    third = start_sandbox(path, seed=None, n_opportunities=None, faults=str(switch_file))
    try:
        assert third.faults.config == FaultConfig(latency_ms=1)
        assert set(trial(third)) == {200}
    finally:
        third.stop()


def test_config_endpoint_replaces_the_switches(
    sf_sandbox: RunningSandbox, sf_client: Salesforce
) -> None:
    set_faults(sf_sandbox, latency_ms=1)
    admin(sf_sandbox, "POST", "config", {"faults": {"error_rate": 1, "error_statuses": [503]}})
    assert outcome(lambda: sf_client.query(COUNT)) == 503
    assert admin(sf_sandbox, "GET", "faults")["config"]["latency_ms"] == 0


@pytest.mark.parametrize(
    ("switches", "mentions"),
    [
        ({"eror_rate": 0.1}, "eror_rate"),
        ({"error_rate": 1.5}, "error_rate"),
        ({"error_rate": True}, "error_rate"),
        ({"error_statuses": [502]}, "error_statuses"),
        ({"rate_limit_after": -1}, "rate_limit_after"),
        ({"rate_limit_calls": 0}, "rate_limit_calls"),
        ({"quota_exceeded_repeat": True}, "quota_exceeded_calls"),
        ({"scope": ["admin"]}, "scope"),
        ({"late_commit_minutes": 0}, "late_commit_minutes"),
    ],
)
def test_bad_switches_are_a_clear_400(
    sf_sandbox: RunningSandbox, switches: dict[str, Any], mentions: str
) -> None:
    before = admin(sf_sandbox, "GET", "faults")["config"]
    response = requests.post(f"{sf_sandbox.url}/_sandbox/faults", json=switches, timeout=10)
    assert response.status_code == 400
    [item] = response.json()
    assert item["errorCode"] == "INVALID_FIELD" and mentions in item["message"]
    assert admin(sf_sandbox, "GET", "faults")["config"] == before
    via_config = requests.post(
        f"{sf_sandbox.url}/_sandbox/config", json={"faults": switches}, timeout=10
    )
    assert via_config.status_code == 400 and mentions in via_config.json()[0]["message"]


def test_parse_faults_for_the_cli(tmp_path: Path) -> None:
    assert parse_faults('{"error_rate": 0.1}') == FaultConfig(error_rate=0.1)
    with pytest.raises(ValueError, match="Unknown fault switch 'errors'"):
        parse_faults('{"errors": 1}')
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_faults('{"error_rate": }')
    with pytest.raises(FaultConfigError, match="no file named"):
        parse_faults("missing.json")
    with pytest.raises(ValueError, match="'error_rate' must be a number from 0 to 1"):
        start_sandbox(tmp_path / "bad.db", faults={"error_rate": 2})
