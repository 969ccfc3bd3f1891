"""HTTP front end of the sandbox: the WSGI app (served by `running.py`).

Every request runs through one pipeline:

    match route → before-request hooks → authenticate → meter API usage
    → handler → after-request hooks → Sforce-Limit-Info header

Hooks are the place for switches that change behaviour without touching the
handlers (fault injection, latency, recording). A hook gets the
`RequestContext` and may return a response to short-circuit the rest (or
raise `ApiError`). The fault injector (`faults.py`) is the first hook pair.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .admin_endpoints import AdminEndpoints
from .auth_endpoints import AuthEndpoints
from .context import AfterHook, BeforeHook, RequestContext, error_response
from .errors import ApiError, unexpected_error
from .faults import FaultInjector
from .oauth import OAuthServer
from .rest_endpoints import RestEndpoints
from .sandbox import SalesforceSandbox

logger = logging.getLogger(__name__)

_VERSION = re.compile(r"^\d{2}\.\d$")
MAX_BODY_BYTES = 50 * 1024 * 1024


def _rules() -> list[Rule]:
    """Fresh rules per app: a werkzeug Rule belongs to exactly one Map."""
    return [
    Rule("/services/data", endpoint="public.versions", methods=["GET"]),
    Rule("/services/data/v<version>", endpoint="rest.resources", methods=["GET"]),
    Rule("/services/data/v<version>/limits", endpoint="rest.limits", methods=["GET"]),
    Rule("/services/data/v<version>/query", endpoint="rest.query", methods=["GET"]),
    Rule("/services/data/v<version>/queryAll", endpoint="rest.query_all", methods=["GET"]),
    Rule("/services/data/v<version>/query/<locator>", endpoint="rest.query_more",
         methods=["GET"]),
    Rule("/services/data/v<version>/queryAll/<locator>", endpoint="rest.query_more",
         methods=["GET"]),
    Rule("/services/data/v<version>/sobjects", endpoint="rest.describe_global",
         methods=["GET"]),
    Rule("/services/data/v<version>/sobjects/<sobject>", endpoint="rest.sobject",
         methods=["GET", "POST"]),
    Rule("/services/data/v<version>/sobjects/<sobject>/describe", endpoint="rest.describe",
         methods=["GET"]),
    Rule("/services/data/v<version>/sobjects/<sobject>/updated", endpoint="rest.updated",
         methods=["GET"]),
    Rule("/services/data/v<version>/sobjects/<sobject>/deleted", endpoint="rest.deleted",
         methods=["GET"]),
    Rule("/services/data/v<version>/sobjects/<sobject>/<record_id>", endpoint="rest.record",
         methods=["GET", "PATCH", "DELETE"]),
    Rule("/services/data/v<version>/composite/sobjects", endpoint="rest.collection",
         methods=["POST", "PATCH", "DELETE"]),
    Rule("/services/data/v<version>/composite/sobjects/<sobject>",
         endpoint="rest.collection_get", methods=["GET"]),
    Rule("/services/data/v<version>/jobs/query", endpoint="rest.bulk_create",
         methods=["POST"]),
    Rule("/services/data/v<version>/jobs/query/<job_id>", endpoint="rest.bulk_job",
         methods=["GET", "PATCH", "DELETE"]),
    Rule("/services/data/v<version>/jobs/query/<job_id>/results", endpoint="rest.bulk_results",
         methods=["GET"]),
    Rule("/services/oauth2/token", endpoint="oauth.token", methods=["POST"]),
    Rule("/services/oauth2/authorize", endpoint="oauth.authorize", methods=["GET", "POST"]),
    Rule("/services/oauth2/revoke", endpoint="oauth.revoke", methods=["GET", "POST"]),
    Rule("/services/Soap/u/<version>", endpoint="soap.partner", methods=["POST"]),
    Rule("/services/Soap/u/<version>/<org_id>", endpoint="soap.partner", methods=["POST"]),
    Rule("/_sandbox/health", endpoint="admin.health", methods=["GET"]),
    Rule("/_sandbox/config", endpoint="admin.config", methods=["GET", "POST"]),
    Rule("/_sandbox/fields", endpoint="admin.fields", methods=["GET", "POST"]),
    Rule("/_sandbox/fields/<sobject>/<name>", endpoint="admin.field", methods=["DELETE"]),
    Rule("/_sandbox/purge", endpoint="admin.purge", methods=["POST"]),
    Rule("/_sandbox/hard_delete", endpoint="admin.hard_delete", methods=["POST"]),
    Rule("/_sandbox/sessions/expire", endpoint="admin.expire_sessions", methods=["POST"]),
    Rule("/_sandbox/truth", endpoint="admin.truth", methods=["GET"]),
    Rule("/_sandbox/bulk/expire", endpoint="admin.bulk_expire", methods=["POST"]),
    Rule("/_sandbox/faults", endpoint="admin.faults", methods=["GET", "POST", "DELETE"]),
    ]


class SandboxApp(RestEndpoints, AuthEndpoints, AdminEndpoints):
    """The WSGI application for one `SalesforceSandbox`: routes, hooks and the request
    pipeline; the endpoints themselves live in their groups (REST, sign-in, admin)."""

    def __init__(self, sandbox: SalesforceSandbox) -> None:
        self.sandbox = sandbox
        self.url_map = Map(_rules(), strict_slashes=False, merge_slashes=False)
        self.before_request_hooks: list[BeforeHook] = []
        self.after_request_hooks: list[AfterHook] = []
        self._handlers: dict[str, Callable[..., Response]] = {
            "public.versions": self.versions,
            "rest.resources": self.resources,
            "rest.limits": self.limits,
            "rest.query": self.query,
            "rest.query_all": self.query,
            "rest.query_more": self.query_more,
            "rest.describe_global": self.describe_global,
            "rest.sobject": self.sobject,
            "rest.describe": self.describe,
            "rest.updated": self.updated,
            "rest.deleted": self.deleted,
            "rest.record": self.record,
            "rest.collection": self.collection,
            "rest.collection_get": self.collection_get,
            "rest.bulk_create": self.bulk_create,
            "rest.bulk_job": self.bulk_job,
            "rest.bulk_results": self.bulk_results,
            "soap.partner": self.soap_partner,
            "oauth.token": self.oauth_token,
            "oauth.authorize": self.oauth_authorize,
            "oauth.revoke": self.oauth_revoke,
            "admin.health": self.admin_health,
            "admin.config": self.admin_config,
            "admin.fields": self.admin_fields,
            "admin.field": self.admin_field,
            "admin.purge": self.admin_purge,
            "admin.hard_delete": self.admin_hard_delete,
            "admin.expire_sessions": self.admin_expire_sessions,
            "admin.truth": self.admin_truth,
            "admin.bulk_expire": self.admin_bulk_expire,
            "admin.faults": self.admin_faults,
        }
        self.oauth = OAuthServer(sandbox)
        self.faults = FaultInjector(sandbox)
        self.faults.install(self)

    # -- hook registration ---------------------------------------------------

    def before_request(self, hook: BeforeHook) -> BeforeHook:
        """Register a hook run after routing, before authentication."""
        self.before_request_hooks.append(hook)
        return hook

    def after_request(self, hook: AfterHook) -> AfterHook:
        """Register a hook that may replace the response."""
        self.after_request_hooks.append(hook)
        return hook

    # -- pipeline ------------------------------------------------------------

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = MAX_BODY_BYTES
        response = self.handle(request)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        ctx = RequestContext(request, self.sandbox)
        try:
            response = self._dispatch(ctx)
        except ApiError as error:
            response = error_response(error)
        except Exception:
            error_id = uuid.uuid4().hex[:12]
            logger.exception("sandbox request failed (ErrorId %s): %s %s", error_id,
                             request.method, request.path)
            response = error_response(unexpected_error(error_id))
        for hook in self.after_request_hooks:
            response = hook(ctx, response) or response
        if request.path.startswith("/services/data/v"):
            used, limit = ctx.api_usage or self.sandbox.api_usage()
            response.headers["Sforce-Limit-Info"] = f"api-usage={used}/{limit}"
        return response

    def _dispatch(self, ctx: RequestContext) -> Response:
        adapter = self.url_map.bind_to_environ(ctx.request.environ)
        try:
            endpoint, args = adapter.match()
        except MethodNotAllowed as error:
            allowed = ",".join(sorted(error.valid_methods or []))
            raise ApiError(405, "METHOD_NOT_ALLOWED",
                           f"HTTP Method '{ctx.request.method}' not allowed. Allowed are "
                           f"{allowed}") from None
        except NotFound:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist") from None
        except HTTPException as error:
            raise ApiError(error.code or 400, "NOT_FOUND", error.description or "") from None
        ctx.endpoint, ctx.args = str(endpoint), dict(args)
        if "version" in ctx.args and not _VERSION.match(ctx.args["version"]):
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        for hook in self.before_request_hooks:
            early = hook(ctx)
            if early is not None:
                return early
        if ctx.is_rest:
            ctx.user_id = self.sandbox.authenticate(_bearer(ctx.request))
            ctx.api_usage = self.sandbox.meter_api_call()
        return self._handlers[ctx.endpoint](ctx, **ctx.args)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and token.strip():
        return token.strip()
    return None


def create_app(sandbox: SalesforceSandbox) -> SandboxApp:
    """The WSGI app serving `sandbox` (mount it in any WSGI server)."""
    return SandboxApp(sandbox)

