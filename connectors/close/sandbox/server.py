"""A local Close organization: REST API v1 under `/api/v1/`, as `closeio_api.API` calls it.

HTTP Basic with the API key as the user name (empty password), `_skip`/`_limit` paging
with a maximum of each (a 400 in Close's words beyond either), `date_created__*` /
`date_updated__*` filters, `_order_by`, `_fields`, the cursor-paged event log, and a
`RateLimit: limit=N, remaining=N, reset=N` header on every answer (429 when spent). The
limits are settings so tests can hit them with a few dozen records.

Faults are the sandbox kit's (`connectors.sandbox_kit.faults`, the same switches in every
CRM's sandbox): `FaultMiddleware` plans them around the app, `CloseApp._respond` answers
each in Close's shape, late commits stamp `date_updated` in the past.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from werkzeug.wrappers import Request, Response

from connectors.close.sandbox.errors import ApiError, bad_request
from connectors.close.sandbox.store import (
    OPPORTUNITY_CUSTOM_FIELD_KIND,
    CloseStore,
    ListQuery,
    close_time,
    parse_time,
)
from connectors.close.sandbox.writes import Writes
from connectors.sandbox_kit import faults as kit
from connectors.sandbox_kit.fault_wsgi import FaultMiddleware, FaultSwitches, late_commits
from connectors.sandbox_kit.faults import FaultPlanner, Plan
from connectors.sandbox_kit.server import json_object_body

API_PREFIX = "/api/v1/"
# The kinds of activity this sandbox keeps: endpoint name -> Close's `_type`.
ACTIVITY_TYPES = {"call": "Call", "email": "Email", "meeting": "Meeting", "note": "Note"}
# Equality filters each list endpoint accepts (document keys).
EQUALITY_FILTERS = {
    "lead": (), "user": (), "contact": ("lead_id",),
    "opportunity": ("lead_id", "user_id", "status_id", "contact_id"),
    "activity": ("lead_id", "contact_id", "user_id", "_type"),
    "task": ("lead_id", "assigned_to"),
}
ORDERABLE = ("date_created", "date_updated")
# Close filters and sorts activities and tasks by `date_created` only (its docs list no
# `date_updated` filter there): asking for it is refused, so no client relies on it.
CREATED_ONLY = ("activity", "task")
DATE_OPERATORS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
# Lists that also report how many records match (Close's leads and opportunities do).
WITH_TOTAL = ("lead", "opportunity")
# The calls that draw a late commit: those that stamp `date_updated` (a DELETE removes the
# record instead).
WRITE_METHODS = ("POST", "PUT")


@dataclass(frozen=True)
class SandboxSettings:
    """What the organization allows: Close's real figures vary per resource."""

    api_key: str
    max_limit: int = 100
    max_skip: int = 250_000
    max_event_limit: int = 50
    rate_limit: int = 1000  # requests per window, per key
    rate_window_seconds: int = 1
    quota_reset_seconds: int = 3600  # the `reset` of the kit's `quota_exceeded` fault


# The kit's request groups (`scope`): the resource a call is about. Close has no login
# (an API key goes with every call), so `faults_on_login` changes nothing here.
SCOPES: tuple[str, ...] = ("me", "lead", "contact", "opportunity", "activity", "task",
                           "user", "event", "settings")
_GROUPS = {"status": "settings", "custom_field": "settings"}
INVALID_KEY = {"error": "The API key you provided is invalid."}


@dataclass(frozen=True)
class FaultConfig(kit.FaultConfig):
    """The kit's switches, scoped to Close's resources (`scope`: any of `SCOPES`; none
    given is every one)."""

    scopes: ClassVar[tuple[str, ...]] = SCOPES


def group_of(environ: Mapping[str, Any]) -> str | None:
    """The kit's fault group of a request: the first part of its path under /api/v1/
    (None outside the API: `/_sandbox/…` is never faulted)."""
    path = str(environ.get("PATH_INFO", ""))
    if not path.startswith(API_PREFIX):
        return None
    first = path[len(API_PREFIX):].split("/", 1)[0]
    group = _GROUPS.get(first, first)
    return group if group in SCOPES else None


class CloseApp:
    """The WSGI application. `writes` does what each POST/PUT/DELETE means to Close.

    The kit's faults wrap it (`planner`, switches through `set_faults` or
    `/_sandbox/faults`), plus the counted `fail_next` / `throttle_next` (`faults`), as
    NetSuite's sandbox keeps them.
    """

    def __init__(self, store: CloseStore, settings: SandboxSettings,
                 planner: FaultPlanner | None = None) -> None:
        self.store = store
        self.settings = settings
        self.switches = FaultSwitches(FaultConfig, planner)
        self.faults = self.switches.counted
        self.planner = self.switches.planner
        self.writes = Writes(store)
        self._faulted = FaultMiddleware(self._serve, self.planner, group_of, self._respond)
        self._window_start = time.monotonic()
        self._used = 0
        self._rate_lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if str(environ.get("PATH_INFO", "")).startswith("/_sandbox/"):
            return self._admin(Request(environ))(environ, start_response)
        return self._faulted(environ, start_response)

    def _serve(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        counted = self.switches.counted_response(self._respond) if group_of(environ) else None
        if counted is not None:  # `throttle_next` / `fail_next`
            return counted(environ, start_response)
        limit_header = self._rate_header()
        if limit_header is None:
            return self._throttled(self._window_reset())(environ, start_response)
        try:
            with late_commits(self.planner, request.method, WRITE_METHODS):
                self._authenticate(request)
                status, body = self._route(request)
        except ApiError as exc:
            status, body = exc.status, exc.body
        response = Response(json.dumps(body) if body is not None else "", status=status,
                            mimetype="application/json")
        response.headers["RateLimit"] = limit_header
        return response(environ, start_response)

    def _respond(self, plan: Plan) -> Response | None:
        """A planned fault as Close answers it (None: the call goes on, maybe to be cut).

        - `rate_limit`: 429 with `RateLimit: limit=N, remaining=0, reset=<retry after>`,
          `Retry-After` and Close's body (`error.rate_reset`, `rate_limit_type: key`);
          `closeio_api` sleeps `reset` and retries.
        - `quota_exceeded`: Close has no daily quota; what a used-up budget looks like
          there is the organization's limit spent (`rate_limit_type: organization`, shared
          by every key): the same 429 with a long reset (`quota_reset_seconds`, an hour).
        - `http_500` / `http_503`: Close's JSON error body with that status.
        - `session_expiry`: 401 with Close's "The API key you provided is invalid." Close's
          API keys do not expire and there is no session to renew: the one way a session
          ends for a key-authenticated client is the key refused, as when it is deleted.
          A 401 is what the client sees then (no retry helps, the sync stops with an
          authentication error); the calls after the fault's window succeed again, as
          with a key pasted anew.
        """
        fault = plan.fault
        if fault == "rate_limit":
            return self._throttled(plan.retry_after)
        if fault == "quota_exceeded":
            return self._throttled(self.settings.quota_reset_seconds, scope="organization")
        if fault in ("http_500", "http_503"):
            status = 500 if fault == "http_500" else 503
            message = ("Internal server error" if status == 500
                       else "Service temporarily unavailable")
            return self._with_limit(Response(json.dumps({"error": message}), status=status,
                                             mimetype="application/json"))
        if fault == "session_expiry":
            return self._with_limit(Response(json.dumps(INVALID_KEY), status=401,
                                             mimetype="application/json"))
        return None

    def _with_limit(self, response: Response) -> Response:
        """Every answer carries the RateLimit header; a faulted call counts as a call."""
        header = self._rate_header()
        s = self.settings
        response.headers["RateLimit"] = header or (
            f"limit={s.rate_limit}, remaining=0, reset={self._window_reset()}")
        return response

    def set_faults(self, switches: Mapping[str, Any]) -> dict[str, Any]:
        """Replace every switch: the kit's (`FaultConfig`) and `fail_next` /
        `throttle_next`; `{}` clears them all. Everything is validated first: an unknown
        or bad switch raises `FaultConfigError` and changes nothing."""
        return self.switches.replace(switches)

    def fault_state(self) -> dict[str, Any]:
        """The planner's state (switches, injected counts) and the counted switches."""
        return self.switches.state()

    def _admin(self, request: Request) -> Response:
        """`/_sandbox/health`, and `/_sandbox/faults` for a sandbox run in another process
        (`accrue sandbox close`): the kit's (GET the state, POST a JSON object of switches
        merged over the current ones, DELETE clears), an unknown or bad switch a 400 in
        Close's words naming it."""
        return self.switches.admin_response(request, _admin_error)

    # -- rate limit ---------------------------------------------------------------

    def _rate_header(self) -> str | None:
        """Count this request; the header to send, or None when the window is spent."""
        s = self.settings
        with self._rate_lock:
            now = time.monotonic()
            if now - self._window_start >= s.rate_window_seconds:
                self._window_start, self._used = now, 0
            reset = math.ceil(s.rate_window_seconds - (now - self._window_start))
            if self._used >= s.rate_limit:
                return None
            self._used += 1
            return f"limit={s.rate_limit}, remaining={s.rate_limit - self._used}, reset={reset}"

    def _window_reset(self) -> int:
        """Seconds until the current rate window ends."""
        with self._rate_lock:
            elapsed = time.monotonic() - self._window_start
            return max(0, math.ceil(self.settings.rate_window_seconds - elapsed))

    def _throttled(self, reset: int, scope: str = "key") -> Response:
        """429 as Close answers a spent limit: the RateLimit header with nothing remaining,
        `Retry-After`, and the limit in the body."""
        s = self.settings
        body = {"error": {"rate_reset": reset, "message": "API call count exceeded for this "
                          "period", "rate_limit_type": scope, "rate_limit": s.rate_limit,
                          "rate_window": s.rate_window_seconds}}
        response = Response(json.dumps(body), status=429, mimetype="application/json")
        response.headers["RateLimit"] = f"limit={s.rate_limit}, remaining=0, reset={reset}"
        response.headers["Retry-After"] = str(reset)
        return response

    def _authenticate(self, request: Request) -> None:
        auth = request.authorization
        key = auth.username if auth and auth.type == "basic" else None
        if not key or (auth and auth.password) or not self.store.key_is_valid(key):
            raise ApiError(401, {"error": "The API key you provided is invalid."})

    # -- routing ------------------------------------------------------------------

    def _route(self, request: Request) -> tuple[int, Any]:
        path = request.path
        if not path.startswith(API_PREFIX) or not path.endswith("/"):
            raise ApiError(404, {"error": "Not found"})
        parts = path[len(API_PREFIX):-1].split("/")
        method = request.method
        if parts == ["me"] and method == "GET":
            return 200, self.writes.me()
        if parts == ["event"] and method == "GET":
            return 200, self._events(request)
        if parts == ["status", "opportunity"] and method == "GET":
            return 200, self._plain_list("status")
        if parts == ["custom_field", "lead"] and method == "GET":
            return 200, self._plain_list("custom_field")
        if parts == ["custom_field", "opportunity"] and method == "GET":
            return 200, self._plain_list(OPPORTUNITY_CUSTOM_FIELD_KIND)
        kind, activity_type, object_id = _resource(parts)
        if kind is None:
            raise ApiError(404, {"error": "Not found"})
        if object_id is None:
            if method == "GET":
                return 200, self._list(kind, activity_type, request)
            if method == "POST" and kind != "user":
                return 200, self.writes.create(kind, activity_type, _json(request))
        else:
            if method == "GET":
                document = self.store.get(kind, object_id)
                if document is None or (activity_type and document.get("_type") != activity_type):
                    raise ApiError(404, {"error": "Not found"})
                return 200, document
            if method == "PUT" and kind != "user":
                return 200, self.writes.update(kind, object_id, _json(request))
            if method == "DELETE" and kind != "user":
                self.writes.delete(kind, object_id)
                return 200, {}
        raise ApiError(405, {"error": "Method not allowed"})

    def _plain_list(self, kind: str) -> dict[str, Any]:
        page, _, _ = self.store.select(ListQuery(kind, order=(), limit=1000))
        return {"data": page, "has_more": False}

    def _list(self, kind: str, activity_type: str | None, request: Request) -> dict[str, Any]:
        args = request.args
        s = self.settings
        skip, limit = _int(args, "_skip", 0), _int(args, "_limit", s.max_limit)
        if limit > s.max_limit:
            raise bad_request(f"The limit you set is larger than the maximum limit for this "
                              f"resource (max_limit = {s.max_limit}).")
        if skip > s.max_skip:
            raise bad_request("The skip you set is larger than the maximum skip for this "
                              f"resource (max_skip = {s.max_skip}). Please refine your search "
                              "query.")
        equals = [(key, args[key]) for key in EQUALITY_FILTERS[kind] if key in args]
        if activity_type:
            equals.append(("_type", activity_type))
        conditions, order = _date_conditions(args), _order(args.get("_order_by"))
        if kind in CREATED_ONLY and (any(c[0] == "date_updated" for c in conditions)
                                     or any(o[0] == "date_updated" for o in order)):
            raise bad_request(f"{kind} can be filtered and sorted by date_created only.")
        ids = tuple(i for i in args["id__in"].split(",") if i) if "id__in" in args else None
        query = ListQuery(kind, conditions=conditions, equals=tuple(equals), order=order,
                          skip=skip, limit=limit, ids=ids)
        page, has_more, total = self.store.select(query)
        wanted = [f for f in args.get("_fields", "").split(",") if f]
        if wanted:
            page = [{k: v for k, v in doc.items() if k in wanted} for doc in page]
        body: dict[str, Any] = {"data": page, "has_more": has_more}
        if kind in WITH_TOTAL:
            body["total_results"] = total
        return body

    def _events(self, request: Request) -> dict[str, Any]:
        args = request.args
        limit = _int(args, "_limit", self.settings.max_event_limit)
        limit = min(limit, self.settings.max_event_limit)
        filters = {k: args[k] for k in ("object_type", "object_id", "action", "lead_id")
                   if k in args}
        before = None
        if args.get("_cursor"):
            try:
                before = int(base64.urlsafe_b64decode(args["_cursor"].encode()).decode())
            except ValueError:
                raise bad_request("Invalid cursor.") from None
        conditions = [c for c in _date_conditions(args) if c[0] == "date_updated"]
        events, next_seq = self.store.events(filters, conditions, before, limit)
        cursor_next = (base64.urlsafe_b64encode(str(next_seq).encode()).decode()
                       if next_seq is not None else None)
        return {"data": events, "cursor_next": cursor_next, "cursor_previous": None}


def _resource(parts: list[str]) -> tuple[str | None, str | None, str | None]:
    """(kind, activity _type, object id) from the path parts after /api/v1/."""
    if parts and parts[0] == "activity":
        if len(parts) >= 2 and parts[1] in ACTIVITY_TYPES:
            return ("activity", ACTIVITY_TYPES[parts[1]], parts[2]) if len(parts) == 3 else (
                ("activity", ACTIVITY_TYPES[parts[1]], None) if len(parts) == 2
                else (None, None, None))
        if len(parts) <= 2:
            return "activity", None, parts[1] if len(parts) == 2 else None
        return None, None, None
    if parts and parts[0] in EQUALITY_FILTERS and len(parts) <= 2:
        return parts[0], None, parts[1] if len(parts) == 2 else None
    return None, None, None


def _admin_error(status: int, message: str) -> Response:
    body = bad_request(message).body if status == 400 else {"error": message}
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _int(args: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(args.get(name, default))
    except ValueError:
        raise bad_request(f"{name} must be an integer.") from None
    if value < 0:
        raise bad_request(f"{name} must not be negative.")
    return value


def _date_conditions(args: Mapping[str, str]) -> tuple[tuple[str, str, str], ...]:
    conditions = []
    for column in ORDERABLE:
        for suffix, operator in DATE_OPERATORS.items():
            value = args.get(f"{column}__{suffix}")
            if value is None:
                continue
            try:
                stamp = parse_time(value)
            except ValueError:
                raise bad_request(f"Invalid date: {value}") from None
            conditions.append((column, operator, close_time(stamp)))
    return tuple(conditions)


def _order(text: str | None) -> tuple[tuple[str, bool], ...]:
    if not text:
        return (("date_created", True),)
    order = []
    for part in text.split(","):
        name = part.lstrip("-")
        if name not in ORDERABLE:
            raise bad_request(f"Cannot order by {name}.")
        order.append((name, part.startswith("-")))
    return tuple(order)


def _json(request: Request) -> dict[str, Any]:
    return json_object_body(request, bad_request, invalid="Invalid JSON.",
                            not_object="Expected a JSON object.")

