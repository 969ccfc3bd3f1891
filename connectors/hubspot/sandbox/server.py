"""A local HubSpot portal: the CRM v3 API as `hubspot-api-client` calls it.

Bearer tokens (a private app's, or an OAuth access token that lives 30 minutes on the
sandbox's clock, renewed with the refresh token at `/oauth/v1/token`; the browser sign-in
at `/oauth/authorize` approves at once and redirects with a code), the objects endpoints
(`objects.py`), owners, deal pipelines, association v4 batch reads, and
`X-HubSpot-RateLimit-*` headers on every answer: beyond `rate_limit_max` calls in a
10-second interval a 429 with `Retry-After`.

Faults are the sandbox kit's (`FaultMiddleware`), answered in HubSpot's shape: a
`rate_limit` is HubSpot's ten-secondly 429 *without* `Retry-After` (HubSpot sends none for
it), `quota_exceeded` the daily limit spent (429, policy DAILY), `session_expiry` a 401
`EXPIRED_AUTHENTICATION`, 5xx HubSpot's error body; late commits stamp a write's
modification date in the past.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from connectors.hubspot.sandbox.objects import ApiError, Limits, Objects, bad_request
from connectors.hubspot.sandbox.store import OBJECT_TYPES, HubSpotStore
from connectors.sandbox_kit import faults as kit
from connectors.sandbox_kit.fault_wsgi import FaultMiddleware, FaultSwitches, late_commits
from connectors.sandbox_kit.faults import FaultPlanner, Plan
from connectors.sandbox_kit.server import json_object_body

ACCESS_TOKEN_SECONDS = 1800  # HubSpot's OAuth access tokens live 30 minutes
INTERVAL_MS = 10_000
SCOPES: tuple[str, ...] = (*OBJECT_TYPES, "owners", "pipelines", "associations")
# The methods whose calls draw a late commit: HubSpot's writes (an archive stamps
# `archivedAt`; a search is a POST too and draws one, writing nothing).
WRITE_METHODS = ("POST", "PATCH", "DELETE")


@dataclass(frozen=True)
class SandboxSettings:
    private_app_token: str
    # OAuth apps this portal knows: client id -> client secret.
    oauth_clients: Mapping[str, str] = field(default_factory=dict)
    limits: Limits = Limits()
    rate_limit_max: int = 190  # calls per 10-second interval (a Professional portal's)
    daily_limit: int = 625_000


@dataclass(frozen=True)
class FaultConfig(kit.FaultConfig):
    """The kit's switches, scoped to HubSpot's object types and endpoints."""

    scopes: ClassVar[tuple[str, ...]] = SCOPES


def group_of(environ: Mapping[str, Any]) -> str | None:
    """The kit's fault group of a request (None: never faulted)."""
    path = str(environ.get("PATH_INFO", ""))
    if path == "/oauth/v1/token":
        return "login"
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 4 and parts[:3] == ["crm", "v3", "objects"] and parts[3] in OBJECT_TYPES:
        return parts[3]
    if parts[:3] == ["crm", "v3", "owners"]:
        return "owners"
    if parts[:3] == ["crm", "v3", "pipelines"]:
        return "pipelines"
    if parts[:3] == ["crm", "v4", "associations"]:
        return "associations"
    return None


def _json_response(body: Any, status: int = 200) -> Response:
    return Response("" if body is None else json.dumps(body), status=status,
                    mimetype="application/json")


class HubSpotApp:
    def __init__(self, store: HubSpotStore, settings: SandboxSettings,
                 planner: FaultPlanner | None = None) -> None:
        self.store = store
        self.settings = settings
        self.objects = Objects(store, settings.limits)
        self.switches = FaultSwitches(FaultConfig, planner)
        self.planner = self.switches.planner
        self._faulted = FaultMiddleware(self._serve, self.planner, group_of, self._respond)
        self._calls: list[float] = []
        self._daily = 0
        self._rate_lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if str(environ.get("PATH_INFO", "")).startswith("/_sandbox/"):
            return self._admin(Request(environ))(environ, start_response)
        return self._faulted(environ, start_response)

    # -- faults and limits ------------------------------------------------------------

    def set_faults(self, switches: Mapping[str, Any]) -> dict[str, Any]:
        """Replace every switch — the kit's and `fail_next` / `throttle_next` — (`{}` clears
        them); a bad one raises FaultConfigError and changes nothing."""
        return self.switches.replace(switches)

    def _admin(self, request: Request) -> Response:
        """`/_sandbox/health`; `/_sandbox/faults` as the kit has it (GET the state, POST
        switches merged over the current ones, DELETE clears), a bad switch a 400."""
        return self.switches.admin_response(request, lambda status, message: _json_response(
            bad_request(message).body if status == 400 else {"error": message}, status))

    def _respond(self, plan: Plan) -> Response | None:
        fault = plan.fault
        if fault == "rate_limit":
            return self._throttled("TEN_SECONDLY_ROLLING", None)
        if fault == "quota_exceeded":
            return self._throttled("DAILY", None)
        if fault in ("http_500", "http_503"):
            status = 500 if fault == "http_500" else 503
            error = ApiError(status, "internal error" if status == 500 else
                             "Service Unavailable", "INTERNAL_ERROR")
            return self._with_limits(_json_response(error.body, status))
        if fault == "session_expiry":
            error = ApiError(401, "The OAuth token used to make this call expired 0 minute(s) "
                             "ago.", "EXPIRED_AUTHENTICATION")
            return self._with_limits(_json_response(error.body, 401))
        return None

    def _remaining(self) -> int | None:
        """Count this call in the 10-second interval: calls left, or None when spent."""
        with self._rate_lock:
            now = time.monotonic()
            self._calls = [t for t in self._calls if now - t < INTERVAL_MS / 1000]
            if len(self._calls) >= self.settings.rate_limit_max:
                return None
            self._calls.append(now)
            self._daily += 1
            return self.settings.rate_limit_max - len(self._calls)

    def _with_limits(self, response: Response, remaining: int | None = None) -> Response:
        s = self.settings
        response.headers.update({
            "X-HubSpot-RateLimit-Daily": str(s.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, s.daily_limit - self._daily)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(INTERVAL_MS),
            "X-HubSpot-RateLimit-Max": str(s.rate_limit_max),
            "X-HubSpot-RateLimit-Remaining": str(remaining or 0)})
        return response

    def _throttled(self, policy: str, retry_after: int | None) -> Response:
        message = ("You have reached your daily limit." if policy == "DAILY"
                   else "You have reached your ten_secondly_rolling limit.")
        error = ApiError(429, message, "RATE_LIMITS")
        response = _json_response({**error.body, "errorType": "RATE_LIMIT",
                                   "policyName": policy}, 429)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return self._with_limits(response)

    # -- serving ----------------------------------------------------------------------

    def _serve(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path.startswith("/oauth/"):
            return self._oauth(request)(environ, start_response)
        counted = self.switches.counted_response(self._respond) if group_of(environ) else None
        if counted is not None:  # `throttle_next` / `fail_next`
            return counted(environ, start_response)
        remaining = self._remaining()
        if remaining is None:  # the portal's own burst limit: this 429 says when to retry
            return self._throttled("TEN_SECONDLY_ROLLING", 1)(environ, start_response)
        try:
            with late_commits(self.planner, request.method, WRITE_METHODS):
                self._authenticate(request)
                status, body = self._route(request)
        except ApiError as exc:
            status, body = exc.status, exc.body
        response = self._with_limits(_json_response(body, status), remaining)
        return response(environ, start_response)

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        found = self.store.token(token) if token else None
        if found is None or found[0] not in ("private", "access"):
            raise ApiError(401, "Authentication credentials not found. This API supports "
                           "OAuth 2.0 authentication and you can find more details at "
                           "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                           "INVALID_AUTHENTICATION")
        if found[2] is not None and found[2] <= self.store.now_ms():
            raise ApiError(401, "The OAuth token used to make this call expired.",
                           "EXPIRED_AUTHENTICATION")

    def _route(self, request: Request) -> tuple[int, Any]:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if parts[:3] == ["crm", "v3", "objects"] and len(parts) >= 4 and \
                parts[3] in OBJECT_TYPES:
            kind, rest = parts[3], parts[4:]
            if not rest and method == "GET":
                return 200, self.objects.list(kind, request.args)
            if not rest and method == "POST":
                return 201, self.objects.create(kind, _body(request))
            if rest == ["search"] and method == "POST":
                return 200, self.objects.search(kind, _body(request))
            if len(rest) == 1 and method == "GET":
                return 200, self.objects.read(kind, rest[0], request.args)
            if len(rest) == 1 and method == "PATCH":
                return 200, self.objects.update(kind, rest[0], _body(request))
            if len(rest) == 1 and method == "DELETE":
                self.objects.archive(kind, rest[0])
                return 204, None
        if parts[:3] == ["crm", "v3", "owners"] and method == "GET":
            return 200, self._owners(request.args)
        if parts == ["crm", "v3", "pipelines", "deals"] and method == "GET":
            return 200, {"results": [self.store.meta("pipeline")]}
        if len(parts) == 7 and parts[:3] == ["crm", "v4", "associations"] and \
                parts[5:] == ["batch", "read"] and method == "POST":
            return 200, self.objects.batch_associations(parts[3], parts[4], _body(request))
        raise ApiError(404, f"No route for {method} {request.path}", "NOT_FOUND")

    def _owners(self, args: Mapping[str, str]) -> dict[str, Any]:
        archived = str(args.get("archived", "false")).lower() == "true"
        owners = self.store.owners(archived=archived)
        limit = min(int(args.get("limit", 100) or 100), 500)
        after = int(args.get("after", 0) or 0)
        page = [o for o in owners if int(o["id"]) > after][:limit]
        body: dict[str, Any] = {"results": page}
        if page and int(page[-1]["id"]) < int(owners[-1]["id"]):
            body["paging"] = {"next": {"after": page[-1]["id"], "link": ""}}
        return body

    # -- OAuth 2.0 ----------------------------------------------------------------------

    def _oauth(self, request: Request) -> Response:
        if request.path == "/oauth/authorize" and request.method == "GET":
            client_id = request.args.get("client_id", "")
            redirect = request.args.get("redirect_uri", "")
            if client_id not in self.settings.oauth_clients or not redirect:
                return _json_response(bad_request("Unknown client_id or no redirect_uri").body,
                                      400)
            code = secrets.token_urlsafe(24)
            self.store.add_token(code, "code", client_id, self.store.now_ms() + 600_000)
            query = urlencode({"code": code, "state": request.args.get("state", "")})
            return Response(status=302, headers={"Location": f"{redirect}?{query}"})
        if request.path == "/oauth/v1/token" and request.method == "POST":
            return self._token(request.form)
        return _json_response({"status": "error", "message": "Not found"}, 404)

    def _token(self, form: Mapping[str, str]) -> Response:
        """Authorization code or refresh token -> a 30-minute access token. HubSpot's
        refresh tokens do not rotate: the same one keeps working until the app is
        uninstalled."""
        client_id = form.get("client_id", "")
        expected = self.settings.oauth_clients.get(client_id)
        if expected is None or (expected and form.get("client_secret") != expected):
            return _json_response({"status": "BAD_CLIENT_ID", "message": "missing or unknown "
                                   "client id or secret"}, 400)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            if self.store.take_token(form.get("code", ""), "code") != client_id:
                return _json_response({"status": "BAD_AUTH_CODE",
                                       "message": "auth code not found"}, 400)
            refresh = secrets.token_urlsafe(32)
            self.store.add_token(refresh, "refresh", client_id)
        elif grant == "refresh_token":
            refresh = form.get("refresh_token", "")
            found = self.store.token(refresh)
            if found is None or found[0] != "refresh" or found[1] != client_id:
                return _json_response({"status": "BAD_REFRESH_TOKEN",
                                       "message": "missing or invalid refresh token"}, 400)
        else:
            return _json_response({"status": "BAD_GRANT_TYPE",
                                   "message": "unsupported grant_type"}, 400)
        access = secrets.token_urlsafe(32)
        self.store.add_token(access, "access", client_id,
                             self.store.now_ms() + ACCESS_TOKEN_SECONDS * 1000)
        return _json_response({"token_type": "bearer", "access_token": access,
                               "refresh_token": refresh, "expires_in": ACCESS_TOKEN_SECONDS})


def _body(request: Request) -> dict[str, Any]:
    return json_object_body(request, bad_request, invalid="Invalid input JSON on line 1",
                            not_object="Expected a JSON object")
