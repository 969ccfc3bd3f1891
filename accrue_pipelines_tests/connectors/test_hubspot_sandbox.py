"""The HubSpot sandbox against the official client, `hubspot-api-client`, used unchanged.

What an adapter depends on: the client's models accept every answer (id, properties,
createdAt, updatedAt, archived); search refuses what HubSpot refuses (a page past the
result cap, too many filter groups, two sorts); the search index trails writes while the
list endpoints do not; archiving keeps the modification date; 429s come with and without
`Retry-After`; OAuth tokens expire after 30 minutes and refresh. The portal's clock is
moved instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from hubspot import Client
from hubspot.crm.deals import ApiException, PublicObjectSearchRequest, SimplePublicObjectInput

from accrue_pipelines_tests.fixtures_sandbox import SandboxClock
from connectors.hubspot.sandbox.harness import (
    TEST_CLIENT,
    HubSpotHarness,
    RunningHubSpotSandbox,
)

CAP = 12


@pytest.fixture
def clock() -> SandboxClock:
    return SandboxClock()


@pytest.fixture
def portal(tmp_path: Path, clock: SandboxClock) -> Iterator[RunningHubSpotSandbox]:
    from datetime import timedelta

    running = HubSpotHarness().start(tmp_path / "hubspot.db", opportunities=20, clock=clock,
                                     index_lag=timedelta(seconds=60), search_max_results=CAP)
    yield running
    running.stop()


def client(portal: RunningHubSpotSandbox, token: str | None = None) -> Client:
    secrets, _ = portal.connection()
    return Client.create(access_token=token or secrets["access_token"], host=portal.url)


def _search(api: Client, **request: Any) -> Any:
    return api.crm.deals.search_api.do_search(PublicObjectSearchRequest(**request))


def test_the_official_client_reads_every_endpoint_unchanged(
        portal: RunningHubSpotSandbox) -> None:
    api = client(portal)
    page = api.crm.deals.basic_api.get_page(limit=5, properties=["dealname", "amount"])
    assert len(page.results) == 5 and page.paging.next.after
    deal = page.results[0]
    assert deal.id and deal.created_at and deal.updated_at and deal.archived is False
    assert set(deal.properties) >= {"dealname", "amount", "hs_lastmodifieddate"}
    assert isinstance(deal.properties["amount"], str)  # HubSpot's values are strings
    contacts = api.crm.contacts.basic_api.get_page(limit=1).results
    assert "lastmodifieddate" in contacts[0].properties
    assert "hs_lastmodifieddate" not in contacts[0].properties
    owners = api.crm.owners.owners_api.get_page(limit=100).results
    assert owners and all(o.email for o in owners)
    stages = api.crm.pipelines.pipelines_api.get_all("deals").results[0].stages
    assert {"Closed Won", "Closed Lost"} <= {s.label for s in stages}
    links = api.crm.associations.v4.batch_api.get_page(
        "deals", "companies", {"inputs": [{"id": deal.id}]})
    assert links.results[0].to[0].association_types[0].type_id == 5


def test_archiving_keeps_the_modification_date_and_lists_the_record_as_archived(
        portal: RunningHubSpotSandbox) -> None:
    api = client(portal)
    deal = api.crm.deals.basic_api.get_page(limit=1).results[0]
    api.crm.deals.basic_api.archive(deal.id)
    archived = api.crm.deals.basic_api.get_page(limit=100, archived=True).results
    assert [d.id for d in archived] == [deal.id]
    assert archived[0].updated_at == deal.updated_at and archived[0].archived_at
    assert deal.id not in {d.id for d in api.crm.deals.basic_api.get_page(limit=100).results}


def test_search_refuses_a_page_past_the_result_cap_and_malformed_queries(
        portal: RunningHubSpotSandbox) -> None:
    api = client(portal)
    first = _search(api, limit=CAP)
    assert first.total == 20 and len(first.results) == CAP
    assert first.paging.next.after == str(CAP)  # the next page would pass the cap
    with pytest.raises(ApiException) as refused:
        _search(api, limit=5, after=str(CAP))
    assert refused.value.status == 400 and "at most" in refused.value.body
    request: dict[str, Any]
    for request in ({"filter_groups": [{"filters": []}] * 6},
                    {"sorts": ["amount", "-dealname"]}, {"limit": 201}):
        with pytest.raises(ApiException) as bad:
            _search(api, **request)
        assert bad.value.status == 400, request


def test_search_trails_writes_by_the_index_lag_while_lists_do_not(
        portal: RunningHubSpotSandbox, clock: SandboxClock) -> None:
    api = client(portal)
    deal = api.crm.deals.basic_api.get_page(limit=1).results[0]
    api.crm.deals.basic_api.update(deal.id, SimplePublicObjectInput(
        properties={"dealname": "Renamed just now"}))
    by_name = {"filter_groups": [{"filters": [
        {"propertyName": "dealname", "operator": "EQ", "value": "Renamed just now"}]}]}
    assert api.crm.deals.basic_api.get_by_id(deal.id).properties["dealname"] == (
        "Renamed just now")
    assert _search(api, **by_name).total == 0  # the index still has the old name
    clock.advance(seconds=61)
    assert [d.id for d in _search(api, **by_name).results] == [deal.id]


def test_429_without_retry_after_and_with_it(portal: RunningHubSpotSandbox) -> None:
    secrets, _ = portal.connection()
    headers = {"Authorization": f"Bearer {secrets['access_token']}"}
    url = f"{portal.url}/crm/v3/objects/deals"
    portal.set_faults({"rate_limit_after": 0, "rate_limit_calls": 1})
    throttled = requests.get(url, headers=headers, timeout=10)
    assert throttled.status_code == 429 and "Retry-After" not in throttled.headers
    assert throttled.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert throttled.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert requests.get(url, headers=headers, timeout=10).status_code == 200
    assert portal.fault_counts()["rate_limit"] == 1
    portal.set_faults({})
    app = portal.served.app
    app.settings = type(app.settings)(**{**app.settings.__dict__, "rate_limit_max": 1})
    app._calls.clear()
    assert requests.get(url, headers=headers, timeout=10).status_code == 200
    burst = requests.get(url, headers=headers, timeout=10)
    assert burst.status_code == 429 and burst.headers["Retry-After"] == "1"


def test_a_wrong_token_is_refused_with_hubspots_category(
        portal: RunningHubSpotSandbox) -> None:
    with pytest.raises(ApiException) as refused:
        client(portal, "pat-na1-wrong").crm.deals.basic_api.get_page(limit=1)
    assert refused.value.status == 401 and "INVALID_AUTHENTICATION" in refused.value.body


def oauth_tokens(portal: RunningHubSpotSandbox) -> dict[str, str]:
    """The code flow as a browser and the app do it: authorize, then exchange the code."""
    client_id, secret = TEST_CLIENT
    redirect = "https://app.example/callback"
    answer = requests.get(f"{portal.url}/oauth/authorize", allow_redirects=False, timeout=10,
                          params={"client_id": client_id, "redirect_uri": redirect,
                                  "state": "s1", "scope": "oauth"})
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["state"] == ["s1"]
    tokens = requests.post(f"{portal.url}/oauth/v1/token", timeout=10, data={
        "grant_type": "authorization_code", "code": query["code"][0], "client_id": client_id,
        "client_secret": secret, "redirect_uri": redirect}).json()
    assert tokens["expires_in"] == 1800
    return tokens


def test_oauth_tokens_expire_after_30_minutes_and_refresh(
        portal: RunningHubSpotSandbox, clock: SandboxClock) -> None:
    tokens = oauth_tokens(portal)
    assert client(portal, tokens["access_token"]).crm.deals.basic_api.get_page(limit=1).results
    clock.advance(minutes=31)
    with pytest.raises(ApiException) as expired:
        client(portal, tokens["access_token"]).crm.deals.basic_api.get_page(limit=1)
    assert expired.value.status == 401 and "EXPIRED_AUTHENTICATION" in expired.value.body
    client_id, secret = TEST_CLIENT
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
               "client_id": client_id, "client_secret": secret}
    renewed = requests.post(f"{portal.url}/oauth/v1/token", data=refresh, timeout=10).json()
    assert client(portal, renewed["access_token"]).crm.deals.basic_api.get_page(limit=1)
    wrong = requests.post(f"{portal.url}/oauth/v1/token", timeout=10,
                          data={**refresh, "client_secret": "not-it"})
    assert wrong.status_code == 400 and wrong.json()["status"] == "BAD_CLIENT_ID"
