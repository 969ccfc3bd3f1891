"""The Close sandbox as the official client sees it: `closeio_api.API`, unchanged.

Paging with `_skip`/`_limit` and their ceilings, filters, the event log and its 30 days,
the RateLimit header and the client's own retry on 429, and a refused API key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from closeio_api import API, APIError, ValidationError

from accrue_pipelines_tests.fixtures_sandbox import SandboxClock
from connectors.close.sandbox.harness import CloseHarness, RunningCloseSandbox

RATE_LIMIT = re.compile(r"limit=(\d+), remaining=(\d+), reset=(\d+)")


@pytest.fixture
def close_org(tmp_path: Path) -> Iterator[RunningCloseSandbox]:
    running = CloseHarness().start(tmp_path / "close.db", opportunities=12, page_size=5,
                                   clock=SandboxClock(), max_skip=10)
    running.served.app.settings = type(running.served.app.settings)(
        api_key=running.served.app.settings.api_key, max_limit=5, max_skip=10)
    yield running
    running.stop()


@pytest.fixture
def api(close_org: RunningCloseSandbox) -> API:
    return API(close_org.served.api_url, api_key=close_org.connection()[0]["api_key"])


def test_lists_page_with_skip_and_limit_up_to_the_total(api: API, close_org) -> None:
    first = api.get("opportunity", params={"_limit": 5})
    assert first["has_more"] is True and len(first["data"]) == 5
    assert first["total_results"] == close_org.live_count("opportunity") == 12
    ids, skip = [], 0
    while True:
        page = api.get("opportunity", params={"_limit": 5, "_skip": skip,
                                              "_order_by": "date_updated"})
        ids += [o["id"] for o in page["data"]]
        stamps = [o["date_updated"] for o in page["data"]]
        assert stamps == sorted(stamps)
        if not page["has_more"]:
            break
        skip += 5
    assert len(ids) == len(set(ids)) == 12
    assert all(i.startswith("oppo_") for i in ids)


def test_limit_and_skip_beyond_the_ceiling_are_refused_in_closes_words(api: API) -> None:
    with pytest.raises(ValidationError) as too_deep:
        api.get("activity", params={"_limit": 5, "_skip": 11})
    assert too_deep.value.response.status_code == 400
    assert "The skip you set is larger than the maximum skip for this resource" in str(
        too_deep.value)
    with pytest.raises(ValidationError, match="maximum limit"):
        api.get("lead", params={"_limit": 6})


def test_date_filters_order_and_fields(api: API) -> None:
    everything = api.get("contact", params={"_limit": 5, "_order_by": "-date_updated"})
    stamps = [c["date_updated"] for c in everything["data"]]
    assert stamps == sorted(stamps, reverse=True)
    middle = stamps[2]
    newer = api.get("contact", params={"date_updated__gt": middle, "_fields": "id,date_updated"})
    assert {c["date_updated"] for c in newer["data"]} == set(stamps[:2])
    assert all(set(c) == {"id", "date_updated"} for c in newer["data"])
    with pytest.raises(ValidationError):
        api.get("contact", params={"date_updated__gte": "yesterday"})


def test_writes_move_date_updated_and_land_in_the_event_log(api: API, close_org) -> None:
    statuses = api.get("status/opportunity")["data"]
    won = next(s for s in statuses if s["type"] == "won")
    lead = api.post("lead", {"name": "Brand New Lead"})
    assert lead["id"].startswith("lead_")
    opportunity = api.post("opportunity", {"lead_id": lead["id"], "value": 250000,
                                           "value_period": "monthly", "note": "Pilot"})
    assert opportunity["status_type"] == "active" and opportunity["value_currency"] == "USD"
    close_org.served.store.clock.advance(seconds=30)  # type: ignore[attr-defined]
    changed = api.put(f"opportunity/{opportunity['id']}", {"status_id": won["id"]})
    api.put(f"opportunity/{opportunity['id']}", {"confidence": 90})  # seconds later: merged
    assert changed["status_label"] == won["label"] and changed["date_won"]
    assert changed["date_updated"] > opportunity["date_updated"]
    assert changed["value"] == 250000  # a PUT changes only what it sends
    with pytest.raises(ValidationError) as refused:
        api.post("opportunity", {"lead_id": "lead_missing", "value": 1})
    assert "lead_id" in refused.value.field_errors
    api.delete(f"lead/{lead['id']}")  # takes its opportunity along
    with pytest.raises(APIError) as gone:
        api.get(f"opportunity/{opportunity['id']}")
    assert gone.value.response.status_code == 404
    deleted = api.get("event", params={"action": "deleted", "object_type": "opportunity"})
    assert [e["object_id"] for e in deleted["data"]] == [opportunity["id"]]
    updates = api.get("event", params={"object_type": "opportunity", "action": "updated"})
    assert len(updates["data"]) == 1  # Close merges changes close together into one event
    assert updates["data"][0]["changed_fields"] == ["confidence", "date_won", "status_id",
                                                    "status_label", "status_type"]


def test_event_log_pages_by_cursor_and_keeps_thirty_days(api: API, close_org) -> None:
    lead = api.post("lead", {"name": "Churning"})
    for n in range(3):
        api.post("activity/note", {"lead_id": lead["id"], "note": f"note {n}"})
    first = api.get("event", params={"object_type": "activity.note", "action": "created",
                                     "_limit": 2})
    assert len(first["data"]) == 2 and first["cursor_next"]
    rest = api.get("event", params={"object_type": "activity.note", "action": "created",
                                    "_limit": 2, "_cursor": first["cursor_next"]})
    assert len(rest["data"]) == 1 and rest["cursor_next"] is None
    close_org.served.store.clock.advance(days=31)  # type: ignore[attr-defined]
    assert api.get("event", params={"object_type": "lead", "action": "created"})["data"] == []


def test_rate_limit_header_and_the_clients_own_retry_on_429(api: API, close_org) -> None:
    close_org.set_faults({"throttle": 2, "throttle_reset": 0})
    assert api.get("me")["organizations"]  # closeio_api slept `reset` and retried twice
    response = api.session.get(close_org.served.api_url + "me/")
    assert RATE_LIMIT.fullmatch(response.headers["RateLimit"])
    close_org.set_faults({"throttle": 99, "throttle_reset": 0})
    with pytest.raises(APIError) as throttled:
        api.get("me")
    assert throttled.value.response.status_code == 429
    limit, remaining, _ = RATE_LIMIT.fullmatch(
        throttled.value.response.headers["RateLimit"]).groups()  # type: ignore[union-attr]
    assert int(limit) > 0 and remaining == "0"


def test_a_wrong_api_key_is_refused_with_401(close_org) -> None:
    with pytest.raises(APIError) as refused:
        API(close_org.served.api_url, api_key="api_not_a_real_key").get("lead")
    assert refused.value.response.status_code == 401
    assert "error" in refused.value.response.json()


def test_activities_filter_by_creation_and_by_id_only(api: API) -> None:
    with pytest.raises(ValidationError, match="date_created only"):
        api.get("activity/call", params={"date_updated__gte": "2024-01-01T00:00:00Z"})
    calls = api.get("activity/call", params={"_limit": 3, "_order_by": "date_created"})["data"]
    wanted = [calls[0]["id"], calls[2]["id"]]
    found = api.get("activity/call", params={"id__in": ",".join(wanted)})["data"]
    assert sorted(c["id"] for c in found) == sorted(wanted)


def test_health_and_fault_switches_over_http(close_org) -> None:
    """For a sandbox in another process (`accrue sandbox close`): no API key needed."""
    import requests

    base = close_org.url
    assert requests.get(f"{base}/_sandbox/health", timeout=5).json() == {"ok": True}
    answer = requests.post(f"{base}/_sandbox/faults", json={"errors": 2}, timeout=5)
    assert answer.json()["errors"] == 2
    assert requests.get(f"{base}/api/v1/me/", auth=("x", ""), timeout=5).status_code == 500
    assert requests.delete(f"{base}/_sandbox/faults", timeout=5).json()["errors"] == 0
    assert requests.post(f"{base}/_sandbox/faults", data="[1]", timeout=5).status_code == 400
