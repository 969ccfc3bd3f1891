"""Fault injection: switches that make the sandbox fail the way a real org does.

Chaos tests, benchmarks and demos need the failures a connector meets in
production — 500/503s, rate limits, a used-up daily quota, sessions that
expire mid-sync, slow responses, connections cut mid-body and writes that
commit "late" (with a SystemModstamp minutes in the past) — on demand and
reproducibly. `FaultConfig` holds the switches; it is part of `SandboxConfig`,
so it is saved in the state file and can be given at start-up.
`FaultInjector` applies them through the app's request hooks and counts every
fault it injects. The switches, their validation and the planning are the sandbox kit's
(`connectors.sandbox_kit.faults`), the same for every CRM; what is Salesforce's here is
which endpoints form which group and how each fault looks on the wire (its error
bodies, `Retry-After`, a SOAP fault at login). See docs/sandbox-salesforce.md.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from werkzeug.wrappers import Response

from ...sandbox_kit import faults as kit
from ...sandbox_kit.fault_wsgi import IN_API_CALL, DroppedResponse
from ...sandbox_kit.faults import COUNTED_KINDS, ERROR_STATUSES, INJECTED_KINDS, FaultPlanner, Plan
from . import soap
from .errors import ApiError, request_limit_exceeded, server_unavailable, unexpected_error

if TYPE_CHECKING:
    from .context import RequestContext
    from .sandbox import SalesforceSandbox
    from .server import SandboxApp

__all__ = ["COUNTED_KINDS", "ERROR_STATUSES", "INJECTED_KINDS", "SCOPES", "DroppedResponse",
           "FaultConfig", "FaultConfigError", "FaultInjector", "as_fault_config",
           "parse_faults"]

# The REST endpoint groups a fault can be scoped to (see `FaultConfig.scope`).
SCOPES: tuple[str, ...] = ("query", "sobjects", "composite", "limits", "resources")
_ENDPOINT_GROUPS: dict[str, str] = {
    "rest.query": "query", "rest.query_all": "query", "rest.query_more": "query",
    "rest.bulk_create": "query", "rest.bulk_job": "query", "rest.bulk_results": "query",
    "rest.describe_global": "sobjects", "rest.sobject": "sobjects", "rest.describe": "sobjects",
    "rest.record": "sobjects", "rest.updated": "sobjects", "rest.deleted": "sobjects",
    "rest.collection": "composite", "rest.collection_get": "composite",
    "rest.limits": "limits", "rest.resources": "resources",
    "oauth.token": "login",
}


class FaultConfigError(ApiError, kit.FaultConfigError):
    """A bad switch: HTTP callers get a 400 `INVALID_FIELD`, Python callers a ValueError."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "INVALID_FIELD", message)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class FaultConfig(kit.FaultConfig):
    """The kit's switches, scoped to Salesforce's REST endpoint groups."""

    scopes: ClassVar[tuple[str, ...]] = SCOPES
    error_class: ClassVar[type[kit.FaultConfigError]] = FaultConfigError

    scope: tuple[str, ...] = SCOPES


def parse_faults(text: str) -> FaultConfig:
    """Switches from a CLI argument: a JSON object, or the path of a file holding one.

    Raises `FaultConfigError` (a ValueError) naming the bad key or value.
    """
    return kit.parse_faults(text, FaultConfig)


def as_fault_config(value: kit.FaultConfig | Mapping[str, Any] | str) -> FaultConfig:
    """Accept switches in any form a caller has them: config, mapping or CLI text."""
    return kit.as_fault_config(value, FaultConfig)


class FaultInjector(FaultPlanner):
    """Applies a sandbox's `FaultConfig` to the requests of one `SandboxApp`; the switches
    live in the sandbox's config, so they are saved in its state file."""

    def __init__(self, sandbox: SalesforceSandbox) -> None:
        self.sandbox = sandbox
        super().__init__(load=lambda: sandbox.config.faults, save=self._keep)
        sandbox.write_delay = self._write_delay

    def _keep(self, config: kit.FaultConfig) -> None:
        self.sandbox.update_config({"faults": config})

    def install(self, app: SandboxApp) -> None:
        """Register the hooks; the app calls this once, before any other hook."""
        app.before_request(self.before_request)
        app.after_request(self.after_request)

    # -- hooks ---------------------------------------------------------------

    def before_request(self, ctx: RequestContext) -> Response | None:
        group = self._group(ctx)
        plan = None if group is None else self.plan(group)
        if group is None or plan is None:
            return None
        if plan.delay:
            time.sleep(plan.delay)
        if group != "login":
            ctx.notes["fault_api_token"] = IN_API_CALL.set(True)
        ctx.notes["fault"] = plan.fault
        return self._apply(ctx, plan, group)

    def after_request(self, ctx: RequestContext, response: Response) -> Response | None:
        token = ctx.notes.pop("fault_api_token", None)
        if token is not None:
            IN_API_CALL.reset(token)
        fault = ctx.notes.get("fault")
        if fault == "rate_limit":
            response.headers["Retry-After"] = str(ctx.notes["fault_retry_after"])
        elif fault == "dropped_connection":
            return DroppedResponse(response)
        return None

    @staticmethod
    def _group(ctx: RequestContext) -> str | None:
        endpoint = ctx.endpoint or ""
        if endpoint == "soap.partner":
            if not ctx.sandbox.config.faults.faults_on_login:
                return None
            call = soap.parse_call(ctx.request.get_data(cache=True))
            return "login" if call is not None and call.operation == "login" else None
        return _ENDPOINT_GROUPS.get(endpoint)

    def _apply(self, ctx: RequestContext, plan: Plan, group: str) -> Response | None:
        """Each fault as Salesforce shows it."""
        fault = plan.fault
        if fault == "session_expiry":
            # Every session dies now; the session check right after answers 401.
            self.sandbox.expire_sessions()
        elif fault == "quota_exceeded":
            limit = self.sandbox.config.api_daily_limit
            ctx.api_usage = (limit, limit)  # Sforce-Limit-Info as when the quota runs out
            raise request_limit_exceeded()
        elif fault == "rate_limit":
            seconds = plan.retry_after
            ctx.notes["fault_retry_after"] = seconds
            raise ApiError(429, "REQUEST_LIMIT_EXCEEDED",
                           f"Too many requests. Retry after {seconds} seconds.")
        elif fault in ("http_500", "http_503"):
            error = (unexpected_error(uuid.uuid4().hex[:12]) if fault == "http_500"
                     else server_unavailable())
            if group == "login":
                return _login_error(ctx, error)
            raise error
        return None

    def _write_delay(self) -> timedelta | None:
        """How late the current write commits (`SalesforceSandbox.write_timestamp`)."""
        return self.late_commit() if IN_API_CALL.get() else None


def _login_error(ctx: RequestContext, error: ApiError) -> Response:
    """A failed login in the shape each login endpoint uses (SOAP fault or OAuth JSON)."""
    if ctx.endpoint == "soap.partner":
        return Response(soap.fault(error.code, f"{error.code}: {error.message}"),
                        status=error.status, content_type="text/xml;charset=UTF-8")
    oauth_error = "server_error" if error.status == 500 else "temporarily_unavailable"
    return Response(json.dumps({"error": oauth_error, "error_description": error.message}),
                    status=error.status, content_type="application/json;charset=UTF-8")
