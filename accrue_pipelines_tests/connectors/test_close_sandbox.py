"""The Close sandbox as the official client sees it: `closeio_api.API`, unchanged.

Paging with `_skip`/`_limit` and their ceilings, filters, the event log and its 30 days,
the RateLimit header and the client's own retry on 429, a refused API key, and each of the
sandbox kit's fault switches as Close shows it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from closeio_api import API, APIError, ValidationError

from accrue_pipelines_tests.fixtures_sandbox import SandboxClock
from connectors.base import AuthenticationError, QuotaExceeded
from connectors.close.connector import CloseConnector
from connectors.close.sandbox.harness import CloseHarness, RunningCloseSandbox
from connectors.close.sandbox.store import parse_time
from connectors.sandbox_kit.faults import FaultConfigError

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
    close_org.set_faults({"rate_limit_after": 0, "rate_limit_calls": 2,
                          "rate_limit_retry_after": 0})
    assert api.get("me")["organizations"]  # closeio_api slept `reset` and retried twice
    assert _injected(close_org) == {"rate_limit": 2}
    response = api.session.get(close_org.served.api_url + "me/")
    assert RATE_LIMIT.fullmatch(response.headers["RateLimit"])
    close_org.set_faults({"rate_limit_after": 0, "rate_limit_calls": None,
                          "rate_limit_retry_after": 0})
    with pytest.raises(APIError) as throttled:
        api.get("me")
    assert throttled.value.response.status_code == 429
    limit, remaining, reset = RATE_LIMIT.fullmatch(
        throttled.value.response.headers["RateLimit"]).groups()  # type: ignore[union-attr]
    assert int(limit) > 0 and remaining == "0" and reset == "0"
    assert throttled.value.response.headers["Retry-After"] == "0"
    assert throttled.value.response.json()["error"]["rate_limit_type"] == "key"


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
    """For a sandbox in another process (`accrue sandbox close`): no API key needed; the
    kit's switches, merged over the current ones; an unknown one is refused by name."""
    import requests

    base = close_org.url
    assert requests.get(f"{base}/_sandbox/health", timeout=5).json() == {"ok": True}
    answer = requests.post(f"{base}/_sandbox/faults",
                           json={"error_rate": 1, "error_statuses": [500]}, timeout=5)
    assert answer.json()["config"]["error_rate"] == 1 and answer.json()["active"]
    assert requests.get(f"{base}/api/v1/me/", auth=("x", ""), timeout=5).status_code == 500
    merged = requests.post(f"{base}/_sandbox/faults", json={"fail_next": 1}, timeout=5).json()
    assert merged["counted"] == {"fail_next": 1, "throttle_next": 0}
    assert merged["config"]["error_statuses"] == [500]
    assert merged["injected"]["http_500"] == 1
    cleared = requests.delete(f"{base}/_sandbox/faults", timeout=5).json()
    assert cleared["config"]["error_rate"] == 0 and not cleared["active"]
    assert cleared["counted"] == {"fail_next": 0, "throttle_next": 0}
    assert requests.post(f"{base}/_sandbox/faults", data="[1]", timeout=5).status_code == 400
    unknown = requests.post(f"{base}/_sandbox/faults", json={"errors": 2}, timeout=5)
    assert unknown.status_code == 400
    assert unknown.json()["error"].startswith("Unknown fault switch 'errors'. Known switches:")
    bad = requests.post(f"{base}/_sandbox/faults", json={"scope": ["lead", "pipeline"]},
                        timeout=5)
    assert bad.status_code == 400 and "'scope' must be a non-empty list of" in bad.text
    assert requests.get(f"{base}/_sandbox/faults", timeout=5).json()["active"] is False


# -- the kit's switches, each as Close shows it to closeio_api -------------------------


class _Quick(API):
    """The official client without its sleeps (503: 2-4 s a retry; 429: `reset`), which
    it keeps in `slept`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slept: list[float] = []

    def _get_rate_limit_sleep_time(self, response: Any) -> float:
        self.slept.append(float(super()._get_rate_limit_sleep_time(response)))
        return 0.0

    def _get_randomized_sleep_time_for_error(self, status_code: int, retries: int) -> float:
        self.slept.append(-status_code)
        return 0.0


@pytest.fixture
def quick(close_org: RunningCloseSandbox) -> _Quick:
    return _Quick(close_org.served.api_url, api_key=close_org.connection()[0]["api_key"])


def _injected(org: RunningCloseSandbox) -> dict[str, int]:
    return {k: v for k, v in org.served.app.planner.state()["injected"].items() if v}


def test_unknown_or_bad_switches_are_refused_and_change_nothing(close_org) -> None:
    close_org.set_faults({"error_rate": 0.5, "throttle_next": 1})
    for bad, message in (({"throttle": 2}, "Unknown fault switch 'throttle'"),
                         ({"late_commit_seconds": 300}, "Unknown fault switch"),
                         ({"error_rate": 2}, "'error_rate' must be a number from 0 to 1"),
                         ({"fail_next": -1}, "'fail_next' must be a whole number"),
                         ({"scope": ["pipeline"]}, "'scope' must be a non-empty list")):
        with pytest.raises(FaultConfigError, match=message):
            close_org.set_faults(bad)
    state = close_org.served.app.fault_state()
    assert state["config"]["error_rate"] == 0.5
    assert state["counted"] == {"fail_next": 0, "throttle_next": 1}
    with pytest.raises(ValueError, match="Unknown fault switch 'errors'"):
        CloseHarness().start(close_org.store.path.parent / "other.db", opportunities=1,
                             faults={"errors": 1}).stop()


def test_5xx_as_close_answers_them_and_the_clients_retry_of_503(close_org, quick) -> None:
    close_org.set_faults({"error_rate": 1, "error_statuses": [500]})
    with pytest.raises(APIError) as failed:
        quick.get("lead")
    assert failed.value.response.status_code == 500
    assert failed.value.response.json() == {"error": "Internal server error"}
    assert RATE_LIMIT.fullmatch(failed.value.response.headers["RateLimit"])
    close_org.set_faults({"error_rate": 1, "error_statuses": [503]})
    with pytest.raises(APIError) as unavailable:
        quick.get("lead")
    assert unavailable.value.response.status_code == 503
    assert quick.slept == [-503] * 5  # closeio_api retries a 503 on its own
    close_org.set_faults({"fail_next": 1})  # the counted spelling: one 503, then fine
    assert quick.get("me")["organizations"] and close_org.served.app.faults.fail_next == 0
    assert _injected(close_org) == {}  # counted faults are not the planner's


def test_the_counted_throttle_answers_429_with_closes_headers(close_org, quick) -> None:
    close_org.set_faults({"throttle_next": 2, "rate_limit_retry_after": 7})
    assert quick.get("me")["organizations"]
    assert quick.slept == [7.0, 7.0]  # `reset` from the RateLimit header


def test_a_used_up_quota_is_a_429_with_a_long_reset(close_org, quick) -> None:
    close_org.set_faults({"quota_exceeded_after": 1})  # until cleared
    assert quick.get("me")["organizations"]
    answer = quick.session.get(close_org.served.api_url + "lead/")
    assert answer.status_code == 429
    assert RATE_LIMIT.fullmatch(answer.headers["RateLimit"]).groups()[1:] == (  # type: ignore[union-attr]
        "0", "3600")
    assert answer.headers["Retry-After"] == "3600"
    assert answer.json()["error"]["rate_limit_type"] == "organization"
    with pytest.raises(APIError):
        quick.get("lead")
    assert quick.slept == [3600.0] * 5
    secrets, config = close_org.connection()
    with CloseConnector(secrets, {**config, "max_attempts": 2, "max_backoff_seconds": 0.01}
                        ) as connector, pytest.raises(QuotaExceeded):
        connector.count("opportunity")
    close_org.set_faults({})
    assert quick.get("lead")["data"]


def test_session_expiry_is_a_refused_key_for_the_faults_window(close_org, quick) -> None:
    close_org.set_faults({"session_expiry_after": 1, "session_expiry_calls": 1})
    assert quick.get("me")["organizations"]
    with pytest.raises(APIError) as refused:
        quick.get("lead")
    assert refused.value.response.status_code == 401
    assert refused.value.response.json() == {"error": "The API key you provided is invalid."}
    assert quick.get("lead")["data"]  # the key is accepted again after the window
    assert _injected(close_org) == {"session_expiry": 1}
    close_org.set_faults({"session_expiry_after": 0})
    secrets, config = close_org.connection()
    with CloseConnector(secrets, config) as connector, pytest.raises(AuthenticationError):
        connector.count("opportunity")


def test_a_dropped_connection_cuts_the_body_after_the_write_committed(close_org,
                                                                      quick) -> None:
    close_org.set_faults({"drop_connection_rate": 1})
    with pytest.raises(requests.exceptions.RequestException):
        quick.post("lead", {"name": "Cut Short"})
    close_org.set_faults({})
    newest = quick.get("lead", params={"_limit": 5, "_order_by": "-date_created"})["data"]
    names = [lead["name"] for lead in newest]
    assert "Cut Short" in names  # the call ran: the write is there
    assert _injected(close_org) == {}  # cleared counts
    close_org.set_faults({"drop_connection_rate": 1, "scope": ["event"]})
    assert quick.get("me")["organizations"]  # outside the scope
    with pytest.raises(requests.exceptions.RequestException):
        quick.get("event")


def test_late_commits_stamp_date_updated_in_the_past(close_org, quick) -> None:
    close_org.set_faults({"late_commit_rate": 1, "late_commit_minutes": 5})
    before = close_org.store.clock()
    lead = quick.post("lead", {"name": "Late Lead"})
    after = close_org.store.clock()
    stamped = parse_time(lead["date_updated"]) + timedelta(minutes=5)
    assert before - timedelta(milliseconds=1) <= stamped <= after
    now = after
    assert quick.get(f"lead/{lead['id']}")["date_updated"] == lead["date_updated"]
    assert _injected(close_org) == {"late_commit": 1}  # reads draw none
    close_org.set_faults({})
    on_time = quick.put(f"lead/{lead['id']}", {"name": "On Time"})
    assert parse_time(on_time["date_updated"]) >= now


def test_latency_delays_every_answer(close_org, quick) -> None:
    close_org.set_faults({"latency_ms": 150})
    began = time.monotonic()
    quick.get("me")
    assert time.monotonic() - began >= 0.15
    assert _injected(close_org) == {"latency": 1}
