"""The kit's fault switches and planner, and its WSGI wrapper for any CRM's sandbox."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

import pytest
import requests
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from connectors.sandbox_kit.fault_wsgi import (
    IN_API_CALL,
    LATE_BY,
    FaultMiddleware,
    FaultSwitches,
    in_api_call,
    late_commits,
)
from connectors.sandbox_kit.faults import (
    FaultConfig,
    FaultConfigError,
    FaultPlanner,
    as_fault_config,
    parse_faults,
)
from connectors.sandbox_kit.server import BackgroundServer


@dataclass(frozen=True)
class ScopedConfig(FaultConfig):
    scopes: ClassVar[tuple[str, ...]] = ("read", "write")
    scope: tuple[str, ...] = ("read", "write")


def test_switches_are_validated_with_the_key_named() -> None:
    for bad, words in (({"errors": 1}, "Unknown fault switch 'errors'"),
                       ({"error_rate": 2}, "'error_rate' must be a number from 0 to 1"),
                       ({"rate_limit_after": 1, "rate_limit_calls": None,
                         "rate_limit_repeat": True}, "'rate_limit_repeat' needs"),
                       ({"scope": ["read"]}, "non-empty list")):
        with pytest.raises(FaultConfigError, match=words):
            FaultConfig.from_dict(bad)
    scoped = as_fault_config({"scope": ["write"]}, ScopedConfig)
    assert isinstance(scoped, ScopedConfig) and scoped.covers("write")
    assert not scoped.covers("read") and not scoped.covers("login")
    assert parse_faults('{"error_rate": 0.5}') == FaultConfig(error_rate=0.5)
    assert FaultConfig(latency_ms=5).changed() == {"latency_ms": 5}


def test_counted_faults_fire_after_n_calls_and_random_ones_repeat_per_seed() -> None:
    planner = FaultPlanner()
    planner.update({"rate_limit_after": 2, "rate_limit_calls": 1})
    faults = [plan.fault for plan in (planner.plan("read") for _ in range(4)) if plan]
    assert faults == [None, None, "rate_limit", None]
    assert planner.state()["injected"]["rate_limit"] == 1
    runs = []
    for _ in range(2):
        planner.update({"rate_limit_after": None, "error_rate": 0.3, "seed": 9})
        runs.append([p.fault for p in (planner.plan("read") for _ in range(40)) if p])
    assert runs[0] == runs[1] and "http_500" in runs[0] and None in runs[0]
    assert planner.plan("login") is None  # login is spared unless faults_on_login
    planner.clear()
    assert planner.state()["active"] is False and planner.plan("read") == planner.plan("read")


def test_switches_live_where_the_sandbox_keeps_them() -> None:
    kept: list[FaultConfig] = [FaultConfig()]
    planner = FaultPlanner(load=lambda: kept[-1], save=kept.append)
    planner.update({"latency_ms": 3})
    assert kept[-1].latency_ms == 3
    kept.append(FaultConfig(error_rate=1.0))  # changed behind the planner's back
    plan = planner.plan("read")
    assert plan is not None and plan.fault in ("http_500", "http_503")


def _app(log: list[bool]) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        log.append(in_api_call())
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"records": ["' + b"x" * 2000 + b'"]}']
    return app


def test_the_middleware_fails_requests_as_planned() -> None:
    log: list[bool] = []
    planner = FaultPlanner()
    app = FaultMiddleware(_app(log), planner,
                          lambda environ: None if environ["PATH_INFO"] == "/admin" else "read")
    with BackgroundServer(app) as server:
        assert requests.get(f"{server.url}/data", timeout=5).ok and log == [True]
        planner.update({"error_rate": 1.0, "error_statuses": [503]})
        assert requests.get(f"{server.url}/data", timeout=5).status_code == 503
        assert requests.get(f"{server.url}/admin", timeout=5).ok and log[-1] is False
        planner.update({"error_rate": 0.0, "rate_limit_after": 0, "rate_limit_calls": 1,
                        "rate_limit_retry_after": 7})
        limited = requests.get(f"{server.url}/data", timeout=5)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
        planner.update({"rate_limit_after": None, "drop_connection_rate": 1.0})
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(f"{server.url}/data", timeout=5).json()
        assert planner.state()["injected"]["dropped_connection"] == 1


def test_fault_switches_replace_merge_and_refuse_as_one_for_every_sandbox() -> None:
    """What a harness's `set_faults` and `/_sandbox/faults` share: a bad switch changes
    nothing, POST merges over the current switches, DELETE (and `{}`) clears."""
    switches = FaultSwitches()
    state = switches.replace({"error_rate": 0.5, "fail_next": 2})
    assert state["config"]["error_rate"] == 0.5 and state["counted"]["fail_next"] == 2
    for bad in ('{"error_rate": 2}', '{"explode": 1}', "[1]", "not json",
                '{"fail_next": -1}'):
        with pytest.raises(ValueError):
            switches.admin("POST", bad)
    unchanged = switches.admin("GET", "")
    assert unchanged is not None and unchanged["config"]["error_rate"] == 0.5
    merged = switches.admin("POST", '{"latency_ms": 5, "throttle_next": 1}')
    assert merged is not None and merged["config"]["error_rate"] == 0.5
    assert merged["config"]["latency_ms"] == 5
    assert merged["counted"] == {"fail_next": 2, "throttle_next": 1}
    assert switches.admin("PUT", "{}") is None
    cleared = switches.admin("DELETE", "")
    assert cleared is not None and not cleared["active"]
    assert cleared["counted"] == {"fail_next": 0, "throttle_next": 0}


def _request(path: str, method: str = "GET", data: str = "") -> Request:
    return Request(EnvironBuilder(path=path, method=method, data=data).get_environ())


def _crm_error(status: int, message: str) -> Response:
    return Response(json.dumps({"crm_error": message}), status=status)


def test_admin_routes_answer_alike_with_errors_in_the_crm_words() -> None:
    switches = FaultSwitches()
    health = switches.admin_response(_request("/_sandbox/health"), _crm_error)
    assert health.status_code == 200 and json.loads(health.get_data()) == {"ok": True}
    merged = switches.admin_response(
        _request("/_sandbox/faults", "POST", '{"fail_next": 1}'), _crm_error)
    assert merged.status_code == 200 and json.loads(merged.get_data())["counted"]["fail_next"] == 1
    for request, status in ((_request("/_sandbox/nothing"), 404),
                            (_request("/_sandbox/faults", "PUT"), 405),
                            (_request("/_sandbox/faults", "POST", '{"explode": 1}'), 400)):
        answer = switches.admin_response(request, _crm_error)
        assert answer.status_code == status and "crm_error" in json.loads(answer.get_data())
    assert switches.counted.to_dict()["fail_next"] == 1  # the bad switch changed nothing


def test_counted_switches_answer_as_the_crm_own_429_then_503_once_each() -> None:
    switches = FaultSwitches()
    planned: list[str | None] = []

    def respond(plan: Any) -> Response:
        planned.append(plan.fault)
        return Response(status=429 if plan.fault == "rate_limit" else 503)

    switches.replace({"fail_next": 1, "throttle_next": 1})
    statuses = [answer.status_code if answer else None
                for answer in (switches.counted_response(respond) for _ in range(3))]
    assert statuses == [429, 503, None] and planned == ["rate_limit", "http_503"]


def test_late_commits_draw_once_for_api_writes_only() -> None:
    planner = FaultPlanner()
    planner.update({"late_commit_rate": 1.0, "late_commit_minutes": 5})
    writes = ("POST", "PUT")
    with late_commits(planner, "POST", writes):  # outside an API call: seeding, admin
        assert LATE_BY.get() == timedelta(0)
    token = IN_API_CALL.set(True)
    try:
        with late_commits(planner, "GET", writes):
            assert LATE_BY.get() == timedelta(0)
        with late_commits(planner, "PUT", writes):
            assert LATE_BY.get() == timedelta(minutes=5)
    finally:
        IN_API_CALL.reset(token)
    assert LATE_BY.get() == timedelta(0)  # reset after the call
    assert planner.state()["injected"]["late_commit"] == 1
