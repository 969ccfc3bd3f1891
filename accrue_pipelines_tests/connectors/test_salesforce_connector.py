"""The Salesforce adapter against the sandbox, through the real simple-salesforce client."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import pytest
import requests
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceRefusedRequest

from connectors.base import Checkpoint, Upsert
from connectors.common_model import COMMON_OBJECTS
from connectors.registry import create_connector
from connectors.salesforce.auth import _is_transient
from connectors.salesforce.connector import SalesforceConnector
from connectors.salesforce.mapping import map_record, parse_sf_datetime, soql_datetime


def _connector(sandbox, **config):
    secrets = {
        "username": sandbox.username,
        "password": sandbox.password,
        "security_token": sandbox.security_token,
    }
    return create_connector("salesforce", secrets, {"sandbox_url": sandbox.url, **config})


def _drain(connector, object_name, state=None):
    upserts, checkpoints = [], []
    for change in connector.read(object_name, state):
        (checkpoints if isinstance(change, Checkpoint) else upserts).append(change)
    return upserts, checkpoints


def test_check_reports_success_and_maps_bad_password_to_the_field(sf_sandbox):
    with _connector(sf_sandbox) as good:
        assert good.check().ok
    bad = create_connector(
        "salesforce",
        {"username": sf_sandbox.username, "password": "wrong", "security_token": "x"},
        {"sandbox_url": sf_sandbox.url},
    )
    result = bad.check()
    assert not result.ok
    assert result.field == "password"
    assert "security token" in (result.hint or "")
    assert "wrong" not in result.message  # S1: never echo a secret


def test_offers_every_common_object(sf_sandbox):
    with _connector(sf_sandbox) as connector:
        assert {o.name for o in connector.objects()} == set(COMMON_OBJECTS)


def test_full_read_pages_with_checkpoints_and_matches_source_count(sf_sandbox):
    with _connector(sf_sandbox) as connector:
        upserts, checkpoints = _drain(connector, "opportunity")
        source_count = connector.count("opportunity")
    ids = [u.source_id for u in upserts]
    assert len(ids) == len(set(ids)) == source_count
    # The fixture's page size is small: several pages, one checkpoint each.
    assert len(checkpoints) > 1
    first = upserts[0]
    assert first.modified_at.tzinfo is not None
    assert isinstance(first.fields["close_date"], date)
    assert isinstance(first.fields["amount"], float)
    assert first.raw["Id"] == first.source_id and "attributes" not in first.raw


def _let_the_clock_pass_the_change() -> None:
    """A read's upper bound is exclusive at SOQL's millisecond precision, so a change stamped
    in the very millisecond a read starts waits for the next sync (its cursor starts there).
    With no lookback, tests that expect the change in the *next* read let a few ms pass."""
    time.sleep(0.005)


def test_incremental_read_returns_changes_since_the_cursor(sf_sandbox, sf_client):
    with _connector(sf_sandbox, lookback_seconds=0) as connector:
        _, checkpoints = _drain(connector, "account")
        state = checkpoints[-1].state
        account_id = sf_client.query("SELECT Id FROM Account LIMIT 1")["records"][0]["Id"]
        sf_client.Account.update(account_id, {"Name": "Renamed Industries"})
        _let_the_clock_pass_the_change()
        changed, _ = _drain(connector, "account", state)
    assert [u.source_id for u in changed] == [account_id]
    assert changed[0].fields["name"] == "Renamed Industries"


def test_lookback_rereads_recent_window(sf_sandbox, sf_client):
    """F3: rows committed behind the cursor are caught by re-reading a window."""
    with _connector(sf_sandbox, lookback_seconds=3600) as connector:
        account_id = sf_client.query("SELECT Id FROM Account LIMIT 1")["records"][0]["Id"]
        sf_client.Account.update(account_id, {"Name": "Touched"})
        _, checkpoints = _drain(connector, "account")
        again, _ = _drain(connector, "account", checkpoints[-1].state)
    assert account_id in {u.source_id for u in again}


def test_deleted_records_arrive_flagged(sf_sandbox, sf_client):
    with _connector(sf_sandbox, lookback_seconds=0) as connector:
        _, checkpoints = _drain(connector, "contact")
        contact_id = sf_client.query("SELECT Id FROM Contact LIMIT 1")["records"][0]["Id"]
        sf_client.Contact.delete(contact_id)
        _let_the_clock_pass_the_change()
        changed, _ = _drain(connector, "contact", checkpoints[-1].state)
    assert [(u.source_id, u.is_deleted) for u in changed] == [(contact_id, True)]


def test_custom_field_is_kept_in_raw(sf_sandbox, sf_client):
    import requests

    response = requests.post(
        f"{sf_sandbox.url}/_sandbox/fields",
        json={"sobject": "Opportunity", "name": "Competitor__c", "type": "string",
              "label": "Competitor", "length": 255},
        timeout=10,
    )
    assert response.status_code < 300, response.text
    opp_id = sf_client.query("SELECT Id FROM Opportunity LIMIT 1")["records"][0]["Id"]
    sf_client.Opportunity.update(opp_id, {"Competitor__c": "Globex"})
    with _connector(sf_sandbox) as connector:
        upserts, _ = _drain(connector, "opportunity")
    by_id = {u.source_id: u for u in upserts}
    assert by_id[opp_id].raw["Competitor__c"] == "Globex"


def test_expired_session_is_renewed_mid_sync(sf_sandbox):
    import requests

    with _connector(sf_sandbox) as connector:
        first = next(iter(connector.read("lead", None)))
        assert isinstance(first, Upsert)
        requests.post(f"{sf_sandbox.url}/_sandbox/sessions/expire", timeout=10).raise_for_status()
        upserts, _ = _drain(connector, "lead")
        assert len(upserts) == connector.count("lead") + sum(u.is_deleted for u in upserts)


def test_datetime_literals_round_trip():
    stamp = parse_sf_datetime("2024-03-01T10:20:30.123+0000")
    assert stamp == datetime(2024, 3, 1, 10, 20, 30, 123000, tzinfo=UTC)
    assert soql_datetime(stamp) == "2024-03-01T10:20:30.123Z"
    assert parse_sf_datetime("2024-03-01T12:20:30.123+02:00") == stamp
    assert parse_sf_datetime("2024-03-01T10:20:30Z") == stamp.replace(microsecond=0)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (SalesforceGeneralError("u", 503, "query", []), True),
        (SalesforceGeneralError("u", 429, "query", []), True),
        (SalesforceGeneralError("u", 418, "query", []), False),
        (SalesforceRefusedRequest(
            "u", 403, "query", [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "x"}]), True),
        (SalesforceRefusedRequest(
            "u", 403, "query", [{"errorCode": "INSUFFICIENT_ACCESS", "message": "x"}]), False),
    ],
)
def test_retry_classification(exc, transient):
    assert _is_transient(exc) is transient


def test_map_record_rejects_nothing_and_fills_missing_with_none():
    record = {"attributes": {"type": "Product2"}, "Id": "01t000000000001AAA",
              "SystemModstamp": "2024-01-01T00:00:00.000+0000", "Name": "Widget",
              "IsActive": True}
    upsert = map_record("product", record)
    assert upsert.fields["name"] == "Widget"
    assert upsert.fields["unit_cost"] is None
    assert set(upsert.fields) == {c.name for c in COMMON_OBJECTS["product"]}


class _TokenEndpoint(requests.Session):
    """A session whose POSTs (the refresh grant) answer from a script, then succeed."""

    def __init__(self, answers: list[tuple[int, bytes]]):
        super().__init__()
        self.answers = list(answers)
        self.posts = 0

    def post(self, url, **kwargs):  # type: ignore[no-untyped-def, override]
        self.posts += 1
        status, body = self.answers.pop(0) if self.answers else (
            200, b'{"access_token": "fresh", "instance_url": "https://na1.example.com"}')
        response = requests.Response()
        response.status_code, response._content, response.url = status, body, url
        return response


def _oauth_connector(answers: list[tuple[int, bytes]], attempts: int = 3):
    session = _TokenEndpoint(answers)
    connector = SalesforceConnector(
        {"refresh_token": "rt", "instance_url": "https://na1.example.com"},
        {"client_id": "app", "max_attempts": attempts, "max_backoff_seconds": 0.1},
        session=session)
    return connector, session


@pytest.mark.parametrize(("status", "body", "kind"), [
    (400, b'{"error": "invalid_grant", "error_description": "expired access/refresh token"}',
     "credentials"),
    (400, b'{"error": "inactive_user"}', "credentials"),
    (503, b'{"error": "temporarily_unavailable"}', "outage"),
    (400, b'{"error": "server_error"}', "outage"),
    (502, b"<html>Bad gateway</html>", "outage"),
    (429, b"", "outage"),
    (400, b'{"error": "unsupported_grant_type"}', "error"),
])
def test_only_a_revoked_grant_asks_to_connect_again(status, body, kind):
    """A refresh that fails for an outage is retried, then reported as one (issue 9, item 2)."""
    from connectors.base import AuthenticationError, ConnectorError, SourceUnavailable

    connector, session = _oauth_connector([(status, body)] * 5, attempts=2)
    expected = {"credentials": AuthenticationError, "outage": SourceUnavailable,
                "error": ConnectorError}[kind]
    with pytest.raises(ConnectorError) as failure:
        connector._call(connector._login)
    assert type(failure.value) is expected, failure.value
    assert failure.value.kind == kind
    assert session.posts == (2 if kind == "outage" else 1)  # only outages are retried


def test_a_refresh_that_fails_for_a_moment_then_works_goes_on():
    connector, session = _oauth_connector([(503, b'{"error": "temporarily_unavailable"}'),
                                           (500, b"")])
    client = connector._call(connector._login)
    assert session.posts == 3 and client.session_id == "fresh"
