"""A local Close organization: REST API v1 under `/api/v1/`, as `closeio_api.API` calls it.

HTTP Basic with the API key as the user name (empty password), `_skip`/`_limit` paging
with a maximum of each (a 400 in Close's words beyond either), `date_created__*` /
`date_updated__*` filters, `_order_by`, `_fields`, the cursor-paged event log, and a
`RateLimit: limit=N, remaining=N, reset=N` header on every answer (429 when spent). The
limits are settings so tests can hit them with a few dozen records.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

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

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class SandboxSettings:
    """What the organization allows: Close's real figures vary per resource."""

    api_key: str
    max_limit: int = 100
    max_skip: int = 250_000
    max_event_limit: int = 50
    rate_limit: int = 1000  # requests per window, per key
    rate_window_seconds: int = 1


@dataclass
class Faults:
    """Switches tests and chaos runs turn on; `set({})` clears them.

    `throttle`: the next N answers are 429 (with `throttle_reset` in the RateLimit header);
    `errors`: the next N are `error_status` (500 by default); `latency_seconds`: every
    answer waits that long; `late_commit_seconds`: writes get a `date_updated` that far in
    the past, as a write committed late does. `throttle_next` / `fail_next` are accepted
    as the other sandboxes spell the first two.
    """

    throttle: int = 0
    throttle_reset: int = 0
    errors: int = 0
    error_status: int = 500
    latency_seconds: float = 0.0
    late_commit_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    KNOWN = frozenset({"throttle", "throttle_reset", "errors", "error_status",
                       "latency_seconds", "late_commit_seconds", "throttle_next", "fail_next"})

    def set(self, switches: Mapping[str, Any]) -> None:
        unknown = set(switches) - self.KNOWN
        if unknown:
            log.warning("the Close sandbox ignores fault switches %s", sorted(unknown))
        with self.lock:
            self.throttle = int(switches.get("throttle", switches.get("throttle_next", 0)))
            self.throttle_reset = int(switches.get("throttle_reset", 0))
            self.errors = int(switches.get("errors", switches.get("fail_next", 0)))
            self.error_status = int(switches.get("error_status", 500))
            self.latency_seconds = float(switches.get("latency_seconds", 0.0))
            self.late_commit_seconds = float(switches.get("late_commit_seconds", 0.0))

    def take(self) -> str | None:
        with self.lock:
            if self.throttle > 0:
                self.throttle -= 1
                return "throttle"
            if self.errors > 0:
                self.errors -= 1
                return "error"
        return None


class CloseApp:
    """The WSGI application. `writes` does what each POST/PUT/DELETE means to Close."""

    def __init__(self, store: CloseStore, settings: SandboxSettings,
                 faults: Faults | None = None) -> None:
        self.store = store
        self.settings = settings
        self.faults = faults or Faults()
        self.writes = Writes(store)
        self._window_start = time.monotonic()
        self._used = 0
        self._rate_lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path.startswith("/_sandbox/"):
            return self._admin(request)(environ, start_response)
        limit_header = self._rate_header()
        self.store.late_by = timedelta(seconds=self.faults.late_commit_seconds)
        if self.faults.latency_seconds:
            time.sleep(self.faults.latency_seconds)
        try:
            fault = self.faults.take()
            if fault == "throttle" or limit_header is None:
                return self._throttled()(environ, start_response)
            if fault == "error":
                raise ApiError(self.faults.error_status, {"error": "Internal server error"})
            self._authenticate(request)
            status, body = self._route(request)
        except ApiError as exc:
            status, body = exc.status, exc.body
        response = Response(json.dumps(body) if body is not None else "", status=status,
                            mimetype="application/json")
        response.headers["RateLimit"] = limit_header or ""
        return response(environ, start_response)

    def _admin(self, request: Request) -> Response:
        """`/_sandbox/health`, and `/_sandbox/faults` (GET; POST a JSON object of switches;
        DELETE clears) for a sandbox run in another process (`accrue sandbox close`)."""
        if request.path == "/_sandbox/health":
            return Response('{"ok": true}', mimetype="application/json")
        if request.path != "/_sandbox/faults":
            return Response('{"error": "Not found"}', status=404, mimetype="application/json")
        if request.method == "POST":
            try:
                switches = json.loads(request.get_data(as_text=True) or "{}")
                if not isinstance(switches, dict):
                    raise ValueError("switches must be a JSON object")
                self.faults.set(switches)
            except ValueError as exc:
                return Response(json.dumps({"error": str(exc)}), status=400,
                                mimetype="application/json")
        elif request.method == "DELETE":
            self.faults.set({})
        f = self.faults
        body = {"throttle": f.throttle, "throttle_reset": f.throttle_reset, "errors": f.errors,
                "error_status": f.error_status, "latency_seconds": f.latency_seconds,
                "late_commit_seconds": f.late_commit_seconds}
        return Response(json.dumps(body), mimetype="application/json")

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

    def _throttled(self) -> Response:
        s = self.settings
        reset = self.faults.throttle_reset
        body = {"error": {"rate_reset": reset, "message": "API call count exceeded for this "
                          "period", "rate_limit_type": "key", "rate_limit": s.rate_limit,
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
    try:
        body = json.loads(request.get_data(as_text=True) or "{}")
    except ValueError:
        raise bad_request("Invalid JSON.") from None
    if not isinstance(body, dict):
        raise bad_request("Expected a JSON object.")
    return body

