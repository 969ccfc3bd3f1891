"""A local SugarCRM instance: REST v11 under `/rest/v11/`, as our client (and Sugar's
own REST clients) call it.

- `POST /oauth2/token`: password grant (`client_id`, `client_secret`, `username`,
  `password`, `platform`) and refresh grant; sessions as in `store.py`.
- Every other call needs `OAuth-Token` (401 `need_login` without one, `invalid_grant`
  for one that expired or was ended by a newer login).
- `GET|POST /<Module>/filter` and `GET /<Module>` (`filter`, `max_num`, `offset`,
  `order_by`, `fields`, `deleted`) answering `{"next_offset", "records"}` (`-1` at the
  end); `/<Module>/filter/count` and `/<Module>/count`; `POST /<Module>`,
  `GET|PUT|DELETE /<Module>/<id>`; `/me`, `/ping`, `/ping/whattimeisit`.
- Date-times are answered in the integration user's time zone, with its offset, as
  Sugar does (a setting, "UTC" unless a test chooses another).

Faults are the sandbox kit's: `FaultMiddleware` plans them around the app (groups: the
module, `me`, `ping`; `login` for the token endpoint) and `_respond` answers each as
Sugar would; late commits stamp `date_modified` in the past.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from werkzeug.wrappers import Request, Response

from connectors.sandbox_kit import faults as kit
from connectors.sandbox_kit.fault_wsgi import FaultMiddleware, FaultSwitches, late_commits
from connectors.sandbox_kit.faults import Plan
from connectors.sugarcrm.sandbox import filters
from connectors.sugarcrm.sandbox.store import SugarStore, TokenRefused, parse_time
from connectors.sugarcrm.sandbox.writes import MODULES, ApiError, Writes

API_PREFIX = "/rest/v11/"
SCOPES: tuple[str, ...] = ("me", "ping", *MODULES)
# The methods whose calls draw a late commit (Sugar's writes).
WRITE_METHODS = ("POST", "PUT", "DELETE")
# Sugar's error codes for what `/_sandbox/…` refuses (the kit's `admin_response`).
ADMIN_ERROR_CODES = {400: "invalid_parameter", 404: "not_found", 405: "not_allowed"}


@dataclass(frozen=True)
class Settings:
    """What the instance allows (Sugar's own configuration values)."""

    max_num: int = 1000  # the most records per page (`api.max_num` caps the request)
    default_max_num: int = 20
    access_lifetime: int = 3600  # seconds
    refresh_lifetime: int = 1_209_600
    timezone: str = "UTC"  # the integration user's preference: answers' offsets
    quota_retry_after: int = 3600


@dataclass(frozen=True)
class FaultConfig(kit.FaultConfig):
    """The kit's switches, scoped to Sugar's modules and `me` / `ping`."""

    scopes: ClassVar[tuple[str, ...]] = SCOPES


def group_of(environ: Mapping[str, Any]) -> str | None:
    path = str(environ.get("PATH_INFO", ""))
    if not path.startswith(API_PREFIX):
        return None
    first = path[len(API_PREFIX):].split("/", 1)[0]
    if first == "oauth2":
        return "login"
    return first if first in SCOPES else None


def _error(status: int, code: str, message: str) -> Response:
    return Response(json.dumps({"error": code, "error_message": message}), status=status,
                    mimetype="application/json")


class SugarApp:
    """The WSGI application; `writes` does what each POST/PUT/DELETE means to Sugar."""

    def __init__(self, store: SugarStore, settings: Settings | None = None) -> None:
        self.store = store
        self.settings = settings or Settings()
        self.tz = ZoneInfo(self.settings.timezone)
        self.switches = FaultSwitches(FaultConfig)
        self.planner = self.switches.planner
        self.writes = Writes(store)
        self._faulted = FaultMiddleware(self._serve, self.planner, group_of, self._respond)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if str(environ.get("PATH_INFO", "")).startswith("/_sandbox/"):
            return self._admin(Request(environ))(environ, start_response)
        return self._faulted(environ, start_response)

    # -- faults ---------------------------------------------------------------------------

    def _respond(self, plan: Plan) -> Response | None:
        """A planned fault as Sugar answers it (None: the call goes on, maybe to be cut):
        500 `fatal_error`, 503 `maintenance` (Sugar's maintenance mode), 429
        `too_many_requests` with `Retry-After` (a used-up quota: the same with an hour),
        401 `invalid_grant` for an access token that expired mid-sync."""
        fault = plan.fault
        if fault == "http_500":
            return _error(500, "fatal_error", "Something went wrong.")
        if fault == "http_503":
            return _error(503, "maintenance", "The server is in maintenance mode.")
        if fault in ("rate_limit", "quota_exceeded"):
            response = _error(429, "too_many_requests", "Too many requests.")
            response.headers["Retry-After"] = str(
                plan.retry_after if fault == "rate_limit" else self.settings.quota_retry_after)
            return response
        if fault == "session_expiry":
            return _error(401, "invalid_grant", "The access token provided is invalid.")
        return None

    def set_faults(self, switches: Mapping[str, Any]) -> dict[str, Any]:
        """Replace every switch (the kit's and `fail_next` / `throttle_next`); `{}` clears.
        Validated first: a bad switch raises `FaultConfigError` and changes nothing."""
        return self.switches.replace(switches)

    def _admin(self, request: Request) -> Response:
        """`/_sandbox/health`; `/_sandbox/faults` (the kit's: GET, POST merges, DELETE
        clears), a bad switch answered as Sugar answers a bad parameter."""
        return self.switches.admin_response(request, lambda status, message: _error(
            status, ADMIN_ERROR_CODES[status], message))

    # -- requests -------------------------------------------------------------------------

    def _serve(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        group = group_of(environ)
        counted = (self.switches.counted_response(self._respond)
                   if group not in (None, "login") else None)
        if counted is not None:  # `throttle_next` / `fail_next`
            return counted(environ, start_response)
        try:
            with late_commits(self.planner, request.method, WRITE_METHODS):
                status, body = self._route(request)
                response = Response(json.dumps(self._render(body)), status=status,
                                    mimetype="application/json")
        except ApiError as exc:
            response = _error(exc.status, exc.code, exc.message)
        return response(environ, start_response)

    def _route(self, request: Request) -> tuple[int, Any]:
        parts = request.path[len(API_PREFIX):].strip("/").split("/")
        method = request.method
        if parts == ["oauth2", "token"] and method == "POST":
            return 200, self._token(_json(request))
        user_id = self._authenticate(request)
        if parts == ["ping"]:
            return 200, "pong"
        if parts == ["ping", "whattimeisit"]:
            return 200, self.store.now()
        if parts == ["me"] and method == "GET":
            return 200, self.writes.me(user_id)
        module = parts[0]
        if module not in MODULES:
            raise ApiError(404, "not_found", f"Could not find a route for {request.path}")
        rest = parts[1:]
        if rest in (["filter"], []) and method in ("GET", "POST") and (rest or method == "GET"):
            return 200, self._filter(module, self._params(request))
        if rest in (["filter", "count"], ["count"]) and method in ("GET", "POST"):
            params = self._params(request)
            where, args = self._where(params)
            return 200, {"record_count": self.store.count(module, where, args)}
        if not rest and method == "POST":
            return 200, self.writes.create(module, _json(request), user_id)
        if len(rest) == 1:
            if method == "GET":
                return 200, self.writes.get(module, rest[0])
            if method == "PUT":
                return 200, self.writes.update(module, rest[0], _json(request), user_id)
            if method == "DELETE":
                return 200, self.writes.delete(module, rest[0], user_id)
        raise ApiError(404, "not_found", f"Could not find a route for {request.path}")

    def _token(self, body: Mapping[str, Any]) -> dict[str, Any]:
        s, store = self.settings, self.store
        client_id, platform = str(body.get("client_id") or ""), str(body.get("platform") or "")
        if not store.client_ok(client_id, str(body.get("client_secret") or "")):
            raise ApiError(401, "invalid_client", "Client authentication failed.")
        if not store.platform_ok(platform or "base"):
            raise ApiError(400, "invalid_platform",
                           f"The platform {platform!r} is not registered.")
        lifetimes = (s.access_lifetime, s.refresh_lifetime)
        grant = body.get("grant_type")
        if grant == "password":
            user_id = store.user_for(str(body.get("username") or ""),
                                     str(body.get("password") or ""))
            if user_id is None:
                raise ApiError(401, "need_login",
                               "You must specify a valid username and password.")
            access, refresh = store.open_session(user_id, platform or "base", client_id,
                                                 lifetimes)
        elif grant == "refresh_token":
            try:
                access, refresh = store.refresh_session(str(body.get("refresh_token") or ""),
                                                        client_id, platform or "base",
                                                        lifetimes)
            except TokenRefused as exc:
                raise ApiError(400, "invalid_grant", str(exc)) from None
        else:
            raise ApiError(400, "unsupported_grant_type", f"Unsupported grant: {grant!r}")
        return {"access_token": access, "expires_in": s.access_lifetime, "token_type": "bearer",
                "scope": None, "refresh_token": refresh,
                "refresh_expires_in": s.refresh_lifetime, "download_token": access}

    def _authenticate(self, request: Request) -> str:
        """The user the call's `OAuth-Token` belongs to."""
        token = request.headers.get("OAuth-Token")
        if not token:
            raise ApiError(401, "need_login", "No valid authentication for user.")
        try:
            return self.store.user_of_token(token)
        except TokenRefused as exc:
            raise ApiError(401, "invalid_grant", str(exc)) from None

    # -- reading ----------------------------------------------------------------------------

    def _params(self, request: Request) -> dict[str, Any]:
        if request.method == "POST":
            return _json(request)
        return filters.bracket_params(request.args)

    def _where(self, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        deleted = str(params.get("deleted", "false")).lower() in ("true", "1")
        try:
            return filters.where(params.get("filter"), deleted)
        except filters.FilterError as exc:
            raise ApiError(422, "invalid_parameter", str(exc)) from None

    def _filter(self, module: str, params: Mapping[str, Any]) -> dict[str, Any]:
        where, args = self._where(params)
        try:
            max_num = int(params.get("max_num", self.settings.default_max_num))
            offset = int(params.get("offset", 0))
            order = filters.order(params.get("order_by"))
        except (TypeError, ValueError) as exc:
            raise ApiError(422, "invalid_parameter", str(exc)) from None
        max_num = max(1, min(max_num, self.settings.max_num))
        rows = self.store.select(module, where, args, order, max_num + 1, max(0, offset))
        records = rows[:max_num]
        wanted = [f.strip() for f in str(params.get("fields") or "").split(",") if f.strip()]
        if wanted:
            keep = {*wanted, "id", "date_modified", "_module"}
            records = [{k: v for k, v in r.items() if k in keep} for r in records]
        more = len(rows) > max_num
        return {"next_offset": offset + max_num if more else -1,
                "records": [{**r, "_module": module} for r in records]}

    def _render(self, body: Any) -> Any:
        """Date-times in the user's time zone, with its offset (Sugar's answers)."""
        if hasattr(body, "astimezone"):
            return body.astimezone(self.tz).isoformat()
        if isinstance(body, list):
            return [self._render(b) for b in body]
        if isinstance(body, dict):
            return {k: self._local(v) if k in filters.DATETIME_FIELDS else self._render(v)
                    for k, v in body.items()}
        return body

    def _local(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return parse_time(value).astimezone(self.tz).isoformat()
        except ValueError:
            return value


def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.get_data(as_text=True) or "{}")
    except ValueError:
        raise ApiError(400, "invalid_parameter", "Invalid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_parameter", "Expected a JSON object.")
    return body
