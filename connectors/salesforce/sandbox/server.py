"""HTTP front end of the sandbox: a WSGI app, a blocking server and a background one.

Every request runs through one pipeline:

    match route → before-request hooks → authenticate → meter API usage
    → handler → after-request hooks → Sforce-Limit-Info header

Hooks are the place for switches that change behaviour without touching the
handlers (fault injection, latency, recording). A hook gets the
`RequestContext` and may return a response to short-circuit the rest (or
raise `ApiError`). The fault injector (`faults.py`) is the first hook pair.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from ...sandbox_kit.server import BackgroundServer, make_sandbox_server, serve_blocking
from . import soap
from .errors import ApiError, unexpected_error
from .faults import FaultConfig, FaultInjector, as_fault_config
from .oauth import OAuthError, OAuthServer, consent_page, redirect_target
from .sandbox import SalesforceSandbox

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json;charset=UTF-8"
_VERSION = re.compile(r"^\d{2}\.\d$")
_BATCH_SIZE = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)
MAX_BODY_BYTES = 50 * 1024 * 1024
API_VERSIONS = [f"{v}.0" for v in range(31, 63)]

BeforeHook = Callable[["RequestContext"], Response | None]
AfterHook = Callable[["RequestContext", Response], Response | None]


@dataclass
class RequestContext:
    """What the pipeline knows about a request; hooks may read and annotate it."""

    request: Request
    sandbox: SalesforceSandbox
    endpoint: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    user_id: str | None = None
    api_usage: tuple[int, int] | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return str(self.args.get("version") or "59.0")

    @property
    def is_rest(self) -> bool:
        return bool(self.endpoint and self.endpoint.startswith("rest."))


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response; `body` may already be JSON text (query pages are built as text)."""
    text = body if isinstance(body, str) else json.dumps(body)
    return Response(text, status=status, content_type=JSON_TYPE, headers=headers)


def error_response(error: ApiError) -> Response:
    return json_response([error.as_item()], error.status)


def _version_label(version: str) -> str:
    index = int(float(version)) - 20
    return f"{('Winter', 'Spring', 'Summer')[index % 3]} '{11 + index // 3:02d}"


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


class SandboxApp:
    """The WSGI application for one `SalesforceSandbox`."""

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

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def body(ctx: RequestContext) -> Any:
        raw = ctx.request.get_data(cache=True)
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character in request body: "
                                                     f"{error}") from None

    # -- REST: discovery and limits ------------------------------------------

    def versions(self, ctx: RequestContext) -> Response:
        return json_response([
            {"label": _version_label(v), "url": f"/services/data/v{v}", "version": v}
            for v in API_VERSIONS
        ])

    def resources(self, ctx: RequestContext, version: str) -> Response:
        base = f"/services/data/v{version}"
        return json_response({name: f"{base}/{name}" for name in (
            "sobjects", "query", "queryAll", "limits", "composite", "recent", "search",
            "tooling", "metadata")})

    def limits(self, ctx: RequestContext, version: str) -> Response:
        used, limit = ctx.api_usage or self.sandbox.api_usage()

        def fixed(maximum: int) -> dict[str, int]:
            return {"Max": maximum, "Remaining": maximum}

        return json_response({
            "ConcurrentAsyncGetReportInstances": fixed(200),
            "ConcurrentSyncReportRuns": fixed(20),
            "DailyApiRequests": {"Max": limit, "Remaining": max(0, limit - used)},
            "DailyAsyncApexExecutions": fixed(250000),
            "DailyBulkApiBatches": fixed(15000),
            "DailyBulkV2QueryFileStorageMB": fixed(976562),
            "DailyBulkV2QueryJobs": fixed(10000),
            "DailyDurableStreamingApiEvents": fixed(10000),
            "DailyStreamingApiEvents": fixed(10000),
            "DataStorageMB": fixed(1024),
            "FileStorageMB": fixed(1024),
            "HourlyTimeBasedWorkflow": fixed(1000),
            "SingleEmail": fixed(5000),
        })

    # -- REST: query ---------------------------------------------------------

    def query(self, ctx: RequestContext, version: str) -> Response:
        soql = ctx.request.args.get("q")
        if soql is None or not soql.strip():
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        batch_size = None
        options = ctx.request.headers.get("Sforce-Query-Options", "")
        match = _BATCH_SIZE.search(options)
        if match:
            batch_size = min(2000, max(200, int(match.group(1))))
        include_deleted = ctx.endpoint == "rest.query_all"
        return json_response(self.sandbox.query(soql, include_deleted=include_deleted,
                                                version=version, batch_size=batch_size))

    def query_more(self, ctx: RequestContext, version: str, locator: str) -> Response:
        return json_response(self.sandbox.query_more(locator, version=version))

    # -- REST: describe and records ------------------------------------------

    def describe_global(self, ctx: RequestContext, version: str) -> Response:
        return json_response(self.sandbox.describe_global(version))

    def describe(self, ctx: RequestContext, version: str, sobject: str) -> Response:
        return json_response(self.sandbox.describe(sobject, version))

    def sobject(self, ctx: RequestContext, version: str, sobject: str) -> Response:
        obj = self.sandbox.schema.require(sobject)
        if ctx.request.method == "POST":
            record_id = self.sandbox.create(obj.name, self.body(ctx), user_id=ctx.user_id)
            return json_response({"id": record_id, "success": True, "errors": []}, 201)
        return json_response({
            "objectDescribe": obj.describe_global_entry(version),
            "recentItems": self.sandbox.recent_items(obj.name, version),
        })

    def record(self, ctx: RequestContext, version: str, sobject: str,
               record_id: str) -> Response:
        method = ctx.request.method
        if method == "GET":
            fields = ctx.request.args.get("fields")
            names = [f for f in fields.split(",") if f.strip()] if fields else None
            return json_response(self.sandbox.get_record(sobject, record_id, fields=names,
                                                         version=version))
        if method == "PATCH":
            self.sandbox.update(sobject, record_id, self.body(ctx), user_id=ctx.user_id)
        else:
            self.sandbox.delete(sobject, record_id, user_id=ctx.user_id)
        return Response(status=204)

    def updated(self, ctx: RequestContext, version: str, sobject: str) -> Response:
        start, end = _window_args(ctx)
        return json_response(self.sandbox.updated(sobject, start, end))

    def deleted(self, ctx: RequestContext, version: str, sobject: str) -> Response:
        start, end = _window_args(ctx)
        return json_response(self.sandbox.deleted(sobject, start, end))

    # -- REST: sObject Collections -------------------------------------------

    def collection(self, ctx: RequestContext, version: str) -> Response:
        method = ctx.request.method
        if method == "DELETE":
            ids = [i for i in (ctx.request.args.get("ids") or "").split(",") if i.strip()]
            if not ids:
                raise ApiError(400, "MISSING_ARGUMENT", "ids parameter is required")
            all_or_none = (ctx.request.args.get("allOrNone") or "false").lower() == "true"
            return json_response(self.sandbox.collection_delete(
                [i.strip() for i in ids], all_or_none=all_or_none, user_id=ctx.user_id))
        body = self.body(ctx)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body must have a 'records' "
                                                     "list")
        all_or_none = bool(body.get("allOrNone", False))
        if method == "POST":
            results = self.sandbox.collection_create(records, all_or_none=all_or_none,
                                                     user_id=ctx.user_id)
        else:
            results = self.sandbox.collection_update(records, all_or_none=all_or_none,
                                                     user_id=ctx.user_id)
        return json_response(results)

    def collection_get(self, ctx: RequestContext, version: str, sobject: str) -> Response:
        ids = [i.strip() for i in (ctx.request.args.get("ids") or "").split(",") if i.strip()]
        fields = [f for f in (ctx.request.args.get("fields") or "").split(",") if f.strip()]
        if not ids or not fields:
            raise ApiError(400, "MISSING_ARGUMENT", "ids and fields parameters are required")
        if len(ids) > 2000:
            raise ApiError(400, "EXCEEDED_ID_LIMIT", "Maximum number of ids exceeded. Limit is "
                                                     "2000")
        records: list[Any] = []
        for record_id in ids:
            try:
                records.append(json.loads(self.sandbox.get_record(
                    sobject, record_id, fields=fields, version=version)))
            except ApiError as error:
                if error.status != 404:
                    raise
                records.append(None)
        return json_response(records)

    # -- Bulk API 2.0 query jobs (bulk.py) ------------------------------------

    def bulk_create(self, ctx: RequestContext, version: str) -> Response:
        return json_response(self.sandbox.bulk.create(self.body(ctx), user_id=ctx.user_id or "",
                                                      version=version))

    def bulk_job(self, ctx: RequestContext, version: str, job_id: str) -> Response:
        if ctx.request.method == "PATCH":
            return json_response(self.sandbox.bulk.abort(job_id, self.body(ctx), version))
        if ctx.request.method == "DELETE":
            self.sandbox.bulk.delete(job_id)
            return Response(status=204)
        return json_response(self.sandbox.bulk.poll(job_id, version))

    def bulk_results(self, ctx: RequestContext, version: str, job_id: str) -> Response:
        body, headers = self.sandbox.bulk.results(job_id, ctx.request.args.get("maxRecords"),
                                                  ctx.request.args.get("locator"))
        return Response(body, status=200, content_type="text/csv", headers=headers)

    # -- SOAP ----------------------------------------------------------------

    def soap_partner(self, ctx: RequestContext, version: str, org_id: str | None = None
                     ) -> Response:
        call = soap.parse_call(ctx.request.get_data())
        if call is None:
            return _soap_fault("INVALID_REQUEST", "Unable to parse the SOAP request envelope")
        if call.operation == "login":
            return self._soap_login(ctx, call, version)
        if call.operation == "undelete":
            return self._soap_undelete(ctx, call)
        return _soap_fault("INVALID_OPERATION",
                           f"No operation available for request {{{soap.PARTNER}}}"
                           f"{call.operation}")

    def _soap_login(self, ctx: RequestContext, call: soap.SoapCall, version: str) -> Response:
        sid = self.sandbox.login(call.text("username") or "", call.text("password") or "")
        if sid is None:
            return _soap_fault("INVALID_LOGIN", soap.INVALID_LOGIN, "LoginFault")
        host = ctx.request.host
        org15 = self.sandbox.org_id[:15]
        sandbox = self.sandbox
        user = json.loads(sandbox.get_record("User", sandbox.admin_user_id))
        body = soap.login_response(
            server_url=f"https://{host}/services/Soap/u/{version}/{org15}",
            metadata_url=f"https://{host}/services/Soap/m/{version}/{org15}",
            session_id=sid,
            user_id=sandbox.admin_user_id,
            user_info={
                "accessibilityMode": False, "chatterExternal": False, "currencySymbol": "$",
                "orgAttachmentFileSizeLimit": 5242880, "orgDefaultCurrencyIsoCode": "USD",
                "orgDefaultCurrencyLocale": "en_US", "orgDisallowHtmlAttachments": False,
                "orgHasPersonAccounts": False, "organizationId": sandbox.org_id,
                "organizationMultiCurrency": False, "organizationName": sandbox.config.org_name,
                "profileId": sandbox.profile_id(), "roleId": None,
                "sessionSecondsValid": sandbox.config.session_lifetime_seconds,
                "userDefaultCurrencyIsoCode": None, "userEmail": user.get("Email"),
                "userFullName": user.get("Name"), "userId": sandbox.admin_user_id,
                "userLanguage": "en_US", "userLocale": "en_US", "userName": user.get("Username"),
                "userTimeZone": "GMT", "userType": "Standard", "userUiSkin": "Theme3",
            },
        )
        return Response(body, status=200, content_type="text/xml;charset=UTF-8")

    def _soap_undelete(self, ctx: RequestContext, call: soap.SoapCall) -> Response:
        try:
            ctx.user_id = self.sandbox.authenticate(call.session_id)
        except ApiError:
            return _soap_fault("INVALID_SESSION_ID", "INVALID_SESSION_ID: Invalid Session ID "
                                                     "found in SessionHeader: Illegal Session")
        try:
            ctx.api_usage = self.sandbox.meter_api_call()
            results = self.sandbox.undelete(call.texts("ids"), user_id=ctx.user_id)
        except ApiError as error:
            return _soap_fault(error.code, f"{error.code}: {error.message}")
        body = soap.undelete_response(results, ctx.api_usage)
        return Response(body, status=200, content_type="text/xml;charset=UTF-8")

    # -- OAuth 2.0 ------------------------------------------------------------

    def oauth_token(self, ctx: RequestContext) -> Response:
        """Token endpoint: authorization_code (with PKCE), refresh_token and password grants.

        `grant_type=authorization_code` exchanges a code from the authorize page
        and its `code_verifier` for an access token and a refresh token;
        `grant_type=refresh_token` takes a refresh token issued that way (or, for
        older clients, the security token); `grant_type=password` takes the
        username and password + security token. Errors use Salesforce's OAuth
        JSON shape `{"error", "error_description"}`.
        """
        form = {k: v for k, v in ctx.request.form.items()}
        grant = form.get("grant_type", "")
        try:
            tokens = self._grant(grant, form)
        except OAuthError as error:
            return json_response(error.as_json(), error.status)
        host = ctx.request.host
        issued = str(int(self.sandbox.now().timestamp() * 1000))
        identity = f"https://{host}/id/{self.sandbox.org_id}/{self.sandbox.admin_user_id}"
        signature = base64.b64encode(hmac.new(
            self.sandbox.security_token.encode(), (identity + issued).encode(), hashlib.sha256
        ).digest()).decode()
        return json_response({
            **tokens, "instance_url": f"https://{host}", "id": identity,
            "token_type": "Bearer", "issued_at": issued, "signature": signature,
        }, headers={"Cache-Control": "no-store"})

    def _grant(self, grant: str, form: dict[str, str]) -> dict[str, str]:
        if grant == "authorization_code":
            return self.oauth.exchange_code(form)
        sid: str | None = None
        if grant == "password":
            sid = self.sandbox.login(form.get("username", ""), form.get("password", ""))
        elif grant == "refresh_token":
            issued = self.oauth.refresh(form)
            if issued is not None:
                return issued
            token = form.get("refresh_token", "")
            if token and hmac.compare_digest(token.encode(),
                                             self.sandbox.security_token.encode()):
                sid = self.sandbox.login(self.sandbox.username,
                                         self.sandbox.password + self.sandbox.security_token)
            if sid is None:
                raise OAuthError("invalid_grant", "expired access/refresh token")
        else:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        if sid is None:
            raise OAuthError("invalid_grant", "authentication failure")
        return {"access_token": sid}

    def oauth_authorize(self, ctx: RequestContext) -> Response:
        """The consent page (GET) and the user's decision (POST), which redirects back."""
        source = ctx.request.args if ctx.request.method == "GET" else ctx.request.form
        args = {k: v for k, v in source.items()}
        try:
            request = self.oauth.parse_authorize(args)
        except OAuthError as error:  # never redirect to an unchecked redirect_uri
            return Response(f"<!doctype html><title>OAuth error</title><h1>{error.error}</h1>"
                            f"<p>{error.description}</p>", status=400,
                            content_type="text/html;charset=UTF-8")
        try:
            self.oauth.check_authorize(request, args)
        except OAuthError as error:
            return _redirect(redirect_target(request.redirect_uri, {
                "error": error.error, "error_description": error.description,
                "state": request.state}))
        if ctx.request.method == "GET":
            user = json.loads(self.sandbox.get_record("User", self.sandbox.admin_user_id))
            page = consent_page(self.oauth, request, str(user.get("Name") or ""),
                                self.sandbox.username)
            return Response(page, content_type="text/html;charset=UTF-8", headers={
                "Cache-Control": "no-store", "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                           "form-action 'self' http: https:; "
                                           "frame-ancestors 'none'"})
        if not hmac.compare_digest(args.get("consent_token", ""),
                                   self.oauth.consent_token(request)):
            return Response("<!doctype html><title>OAuth error</title><h1>invalid_request</h1>"
                            "<p>The consent form was not submitted from this page.</p>",
                            status=400, content_type="text/html;charset=UTF-8")
        if args.get("decision") != "allow":
            return _redirect(redirect_target(request.redirect_uri, {
                "error": "access_denied", "error_description": "end-user denied authorization",
                "state": request.state}))
        code = self.oauth.issue_code(request)
        return _redirect(redirect_target(request.redirect_uri,
                                         {"code": code, "state": request.state}))

    def oauth_revoke(self, ctx: RequestContext) -> Response:
        """Revoke a refresh token (`token=`); unknown tokens get `unsupported_token_type`."""
        token = ctx.request.values.get("token", "")
        if not self.oauth.revoke(token):
            return json_response({"error": "unsupported_token_type",
                                  "error_description": "this token type is not supported"}, 400)
        return Response(status=200)

    # -- admin ---------------------------------------------------------------

    def admin_health(self, ctx: RequestContext) -> Response:
        return json_response(self.sandbox.health())

    def admin_config(self, ctx: RequestContext) -> Response:
        if ctx.request.method == "POST":
            changes = self.body(ctx)
            if not isinstance(changes, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "Send a JSON object of settings")
            return json_response(self.sandbox.update_config(changes).to_dict())
        return json_response(self.sandbox.config.to_dict())

    def admin_fields(self, ctx: RequestContext) -> Response:
        if ctx.request.method == "POST":
            spec = self.body(ctx)
            if not isinstance(spec, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "Send a JSON object describing the "
                                                         "field")
            return json_response(self.sandbox.add_custom_field(spec), 201)
        return json_response(self.sandbox.custom_fields())

    def admin_field(self, ctx: RequestContext, sobject: str, name: str) -> Response:
        self.sandbox.remove_custom_field(sobject, name)
        return Response(status=204)

    def admin_purge(self, ctx: RequestContext) -> Response:
        body = self.body(ctx)
        sobject = body.get("sobject") if isinstance(body, dict) else None
        purged = self.sandbox.purge(sobject)
        return json_response({"purged": purged,
                              "earliestDateAvailable": self.sandbox.write_timestamp()})

    def admin_hard_delete(self, ctx: RequestContext) -> Response:
        body = self.body(ctx)
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ApiError(400, "JSON_PARSER_ERROR", "Send {\"ids\": [\"…\", …]}")
        return json_response(self.sandbox.hard_delete(ids))

    def admin_expire_sessions(self, ctx: RequestContext) -> Response:
        return json_response({"expired": self.sandbox.expire_sessions()})

    def admin_faults(self, ctx: RequestContext) -> Response:
        if ctx.request.method == "POST":
            changes = self.body(ctx)
            if not isinstance(changes, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "Send a JSON object of fault switches")
            return json_response(self.faults.update(changes))
        if ctx.request.method == "DELETE":
            return json_response(self.faults.clear())
        return json_response(self.faults.state())

    def admin_bulk_expire(self, ctx: RequestContext) -> Response:
        return json_response({"expired": self.sandbox.bulk.expire_all()})

    def admin_truth(self, ctx: RequestContext) -> Response:
        truth = self.sandbox.truth()
        if truth is None:
            raise ApiError(404, "NOT_FOUND", "This sandbox was not seeded by the generator")
        return json_response(truth)


def _redirect(location: str) -> Response:
    return Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})


def _bearer(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and token.strip():
        return token.strip()
    return None


def _window_args(ctx: RequestContext) -> tuple[str, str]:
    start, end = ctx.request.args.get("start"), ctx.request.args.get("end")
    if not start or not end:
        raise ApiError(400, "MISSING_ARGUMENT", "start and end parameters are required")
    return start, end


def _soap_fault(code: str, message: str, fault_type: str = "UnexpectedErrorFault") -> Response:
    return Response(soap.fault(code, message, fault_type), status=500,
                    content_type="text/xml;charset=UTF-8")


def create_app(sandbox: SalesforceSandbox) -> SandboxApp:
    """The WSGI app serving `sandbox` (mount it in any WSGI server)."""
    return SandboxApp(sandbox)


# ---------------------------------------------------------------------------
# Serving


def _seed_if_empty(sandbox: SalesforceSandbox, seed: int | None,
                   n_opportunities: int | None) -> None:
    """`seed=N` alone means N opportunities from random seed N (the CLI's `--seed N`)."""
    count = n_opportunities if n_opportunities is not None else seed
    if count is None or not sandbox.is_empty():
        return
    from .generator import seed as run_seed

    run_seed(sandbox, count, seed if seed is not None else 42)


class RunningSandbox(BackgroundServer):
    """A sandbox served from a background thread; also a context manager."""

    def __init__(self, sandbox: SalesforceSandbox, app: SandboxApp, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.sandbox = sandbox
        super().__init__(app, host, port, quiet=True, name="salesforce-sandbox")
        self.app: SandboxApp = app

    @property
    def username(self) -> str:
        return self.sandbox.username

    @property
    def password(self) -> str:
        return self.sandbox.password

    @property
    def security_token(self) -> str:
        return self.sandbox.security_token

    @property
    def faults(self) -> FaultInjector:
        """The fault switches: `.update({...})`, `.clear()`, `.state()`."""
        return self.app.faults

    def session(self) -> Any:
        """A requests session that routes Salesforce URLs to this sandbox."""
        from ..transport import sandbox_session

        return sandbox_session(self.url)

    def client(self, **kwargs: Any) -> Any:
        """A logged-in `simple_salesforce.Salesforce` (password + token login)."""
        from simple_salesforce.api import Salesforce

        options: dict[str, Any] = {"username": self.username, "password": self.password,
                                   "security_token": self.security_token,
                                   "session": self.session()}
        options.update(kwargs)
        return Salesforce(**options)

    def stop(self) -> None:
        """Stop serving, drop open connections and close the state file."""
        if self._stopped:
            return
        super().stop()
        self.sandbox.close()

    def __enter__(self) -> RunningSandbox:
        return self


def running_sandbox(
    state_path: str,
    *,
    seed: int | None = None,
    n_opportunities: int | None = None,
    port: int = 0,
    page_size: int = 2000,
    host: str = "127.0.0.1",
    faults: FaultConfig | Mapping[str, Any] | str | None = None,
    **config: Any,
) -> RunningSandbox:
    """Start a sandbox in a background thread; use as `with running_sandbox(...) as sb:`.

    `config` takes any `SandboxConfig` setting plus `username`, `password`,
    `security_token` and `clock`. Seeding happens only when the org is empty.
    `faults` (switches as a `FaultConfig`, a mapping or JSON text / a JSON file
    path) replaces the stored fault switches; None keeps them.
    """
    if faults is not None:
        config["faults"] = as_fault_config(faults)
    sandbox = SalesforceSandbox(state_path, page_size=page_size, **config)
    try:
        _seed_if_empty(sandbox, seed, n_opportunities)
        return RunningSandbox(sandbox, create_app(sandbox), host=host, port=port)
    except BaseException:
        sandbox.close()
        raise


def serve(
    port: int,
    state_path: str,
    seed: int | None = None,
    n_opportunities: int | None = None,
    host: str = "127.0.0.1",
    page_size: int = 2000,
    faults: FaultConfig | Mapping[str, Any] | str | None = None,
    **config: Any,
) -> None:
    """Serve the sandbox until interrupted (threaded; seeds only an empty org).

    `faults` is as for `running_sandbox`; a CLI passes its `--faults` text
    straight through (bad text raises a ValueError naming the problem).
    """
    if faults is not None:
        config["faults"] = as_fault_config(faults)
    sandbox = SalesforceSandbox(state_path, page_size=page_size, **config)
    try:
        _seed_if_empty(sandbox, seed, n_opportunities)
        server = make_sandbox_server(create_app(sandbox), host, port, quiet=False)
        url = f"http://{host}:{server.server_port}"
        print(
            f"Salesforce sandbox serving {url} (state: {state_path})\n"
            f"  username:       {sandbox.username}\n"
            f"  password:       {sandbox.password}\n"
            f"  security token: {sandbox.security_token}\n"
            f"  clients: pass session=connectors.salesforce.transport.sandbox_session('{url}')",
            flush=True,
        )
        if sandbox.config.faults.active:
            print(f"  fault switches: {json.dumps(sandbox.config.faults.changed())}", flush=True)
        serve_blocking(server)
    finally:
        sandbox.close()
