"""The sandbox account's HTTP face: SuiteTalk REST as NetSuite serves it.

`POST /services/rest/query/v1/suiteql` (SuiteQL, `Prefer: transient`, collection
paging with NetSuite's limits), the record service `/services/rest/record/v1/{type}`
and the M2M token endpoint, behind TBA or bearer auth, a per-account concurrency
limit (429 over it) and a few fault switches. Errors use NetSuite's REST error
shape: `{"type", "title", "status", "o:errorDetails": [{"detail", "o:errorCode"}]}`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from connectors.sandbox_kit.fault_wsgi import FaultMiddleware
from connectors.sandbox_kit.faults import CountedFaults, FaultPlanner, Plan

from .auth import TOKEN_PATH, Authenticator, LoginRefused, account_host
from .records import RecordError, add_main_line, columns_of, record_body, touch, write_lines
from .schema import RECORD_TYPES
from .store import AccountStore
from .suiteql import QueryError

SUITEQL_PATH = "/services/rest/query/v1/suiteql"
RECORD_PREFIX = "/services/rest/record/v1/"
TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
          429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
# RFC 9110 sections NetSuite's error `type` links to, per status (429 is RFC 6585's).
SECTIONS = {400: "15.5.1", 401: "15.5.2", 404: "15.5.5", 405: "15.5.6", 500: "15.6.1",
            503: "15.6.4"}
INVALID_LOGIN = ("Invalid login attempt. For more details, see the Login Audit Trail in the "
                 "NetSuite UI at Setup > Users/Roles > User Management > View Login Audit Trail.")


@dataclass
class Settings:
    """What a test may turn: the limits NetSuite imposes, smaller so tests stay small."""

    account_id: str = "1234567_SB1"
    max_limit: int = 1000
    max_results: int = 100_000  # rows one query may page through
    concurrency_limit: int = 5
    default_limit: int = 1000


def error(status: int, code: str, detail: str, headers: dict[str, str] | None = None
          ) -> Response:
    kind = (f"https://www.rfc-editor.org/rfc/rfc9110.html#section-{SECTIONS[status]}"
            if status in SECTIONS else "https://www.rfc-editor.org/rfc/rfc6585.html#section-4")
    body = {"type": kind,
            "title": TITLES.get(status, "Error"), "status": status,
            "o:errorDetails": [{"detail": detail, "o:errorCode": code}]}
    return Response(json.dumps(body), status, headers=headers,
                    content_type="application/vnd.oracle.resource+json; type=error")


def _group_of(environ: dict[str, Any]) -> str | None:
    """The kit's fault group of a request: the token endpoint is the login."""
    path = environ.get("PATH_INFO", "")
    if path == TOKEN_PATH:
        return "login"
    if path == SUITEQL_PATH:
        return "query"
    return "record" if path.startswith(RECORD_PREFIX) else None


class NetSuiteApp:
    """A WSGI application serving one account, with the kit's faults around it and the
    account's concurrency limit around both (a slow call holds its slot)."""

    def __init__(self, store: AccountStore, settings: Settings | None = None,
                 planner: FaultPlanner | None = None) -> None:
        self.store = store
        self.settings = settings or Settings()
        self.auth = Authenticator(store, self.settings.account_id)
        self.faults = CountedFaults()  # fail_next / throttle_next
        self.planner = planner or FaultPlanner()
        store.late_by = self.planner.late_commit
        self._faulted = FaultMiddleware(self._serve, self.planner, _group_of, self._respond)
        self._in_flight = 0
        self._gate = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if _group_of(environ) in (None, "login"):
            return self._faulted(environ, start_response)
        with self._gate:
            if self._in_flight >= self.settings.concurrency_limit:
                return error(429, "CONCURRENCY_LIMIT_EXCEEDED",
                             "Concurrent request limit exceeded. Request blocked.",
                             )(environ, start_response)
            self._in_flight += 1
        try:
            return self._faulted(environ, start_response)
        finally:
            with self._gate:
                self._in_flight -= 1

    def _serve(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        return self.dispatch(Request(environ))(environ, start_response)

    def _respond(self, plan: Plan) -> Response | None:
        """A planned fault in NetSuite's words (None: the call goes on, maybe to be cut)."""
        if plan.fault in ("http_500", "http_503"):
            status = 500 if plan.fault == "http_500" else 503
            return error(status, "UNEXPECTED_ERROR", "An unexpected error occurred.")
        if plan.fault == "rate_limit":
            return error(429, "CONCURRENCY_LIMIT_EXCEEDED",
                         "Concurrent request limit exceeded. Request blocked.",
                         headers={"Retry-After": str(plan.retry_after)})
        if plan.fault == "quota_exceeded":
            return error(400, "SSS_REQUEST_LIMIT_EXCEEDED",
                         "The account's request limit for web services is used up.")
        if plan.fault == "session_expiry":  # every bearer token issued so far expires
            self.store.execute("DELETE FROM ns_access_token")
        return None

    def dispatch(self, request: Request) -> Response:
        if request.path == "/_sandbox/health":
            return Response('{"status": "ok"}', 200, content_type="application/json")
        if request.path == TOKEN_PATH and request.method == "POST":
            return self._token(request)
        fault = self.faults.take()
        if fault == 429:
            return error(429, "CONCURRENCY_LIMIT_EXCEEDED",
                         "Concurrent request limit exceeded. Request blocked.")
        if fault == 503:
            return error(503, "UNEXPECTED_ERROR", "An unexpected error occurred.")
        try:
            self.auth.verify(request.method, request.path,
                             request.query_string.decode(), dict(request.headers))
        except LoginRefused as refused:
            self.store.audit("tba" if "OAuth " in request.headers.get("Authorization", "")
                             else "oauth2", "Failure", refused.audit)
            realm = self.settings.account_id
            return error(401, "INVALID_LOGIN", INVALID_LOGIN, headers={
                "WWW-Authenticate": f'OAuth realm="{realm}", '
                                    f'oauth_problem="{refused.problem}"'})
        if request.path == SUITEQL_PATH and request.method == "POST":
            return self._suiteql(request)
        if request.path.startswith(RECORD_PREFIX):
            return self._record(request)
        return error(404, "INVALID_URL", f"No resource at {request.path}.")

    # -- OAuth 2.0 token endpoint --------------------------------------------------

    def _token(self, request: Request) -> Response:
        try:
            body = self.auth.issue_token(request.form)
        except LoginRefused as refused:
            self.store.audit("oauth2", "Failure", refused.audit)
            return Response(json.dumps({"error": refused.oauth_error}), refused.status,
                            content_type="application/json")
        self.store.audit("oauth2", "Success", "")
        return Response(json.dumps(body), 200, content_type="application/json")

    # -- SuiteQL ---------------------------------------------------------------------

    def _suiteql(self, request: Request) -> Response:
        if request.headers.get("Prefer", "").lower() != "transient":
            return error(400, "INVALID_HEADER",
                         "The request is missing the header 'Prefer: transient'.")
        limits = self.settings
        try:
            limit = int(request.args.get("limit", limits.default_limit))
            offset = int(request.args.get("offset", 0))
        except ValueError:
            return error(400, "INVALID_PARAMETER", "Invalid value for limit or offset.")
        if not 1 <= limit <= limits.max_limit:
            return error(400, "INVALID_PARAMETER",
                         f"Invalid limit: the value must be between 1 and {limits.max_limit}.")
        if offset < 0 or offset % limit:
            return error(400, "INVALID_PARAMETER",
                         "Invalid offset: the value must be a multiple of the limit.")
        if offset + limit > limits.max_results:
            return error(400, "INVALID_PARAMETER",
                         f"Paging beyond {limits.max_results} results is not supported: "
                         "narrow the query.")
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("q"), str):
            return error(400, "INVALID_CONTENT", 'The request body must be {"q": "<SuiteQL>"}.')
        try:
            items, total = self.store.query(body["q"], limit, offset)
        except (QueryError, ValueError) as exc:
            return error(400, "INVALID_PARAMETER",
                         "Invalid search query. Detailed unprocessed description follows. "
                         f"Search error occurred: {exc}")
        base = f"https://{account_host(limits.account_id)}{SUITEQL_PATH}"

        def link(rel: str, at: int) -> dict[str, str]:
            return {"rel": rel, "href": f"{base}?{urlencode({'limit': limit, 'offset': at})}"}

        has_more = offset + len(items) < total
        links = [link("self", offset), link("first", 0)]
        if has_more:
            links.append(link("next", offset + limit))
        if total:
            links.append(link("last", ((total - 1) // limit) * limit))
        payload = {"links": links, "count": len(items), "hasMore": has_more,
                   "items": [{"links": [], **item} for item in items], "offset": offset,
                   "totalResults": total}
        return Response(json.dumps(payload), 200, content_type="application/json")

    # -- record service --------------------------------------------------------------

    def _record(self, request: Request) -> Response:
        parts = request.path[len(RECORD_PREFIX):].strip("/").split("/")
        record_type = parts[0].lower()
        if record_type not in RECORD_TYPES or len(parts) > 2:
            return error(404, "INVALID_RECORD_TYPE", f"Record type '{parts[0]}' is not valid.")
        table, fixed = RECORD_TYPES[record_type]
        try:
            key = int(parts[1]) if len(parts) == 2 else None
        except ValueError:
            return error(404, "NONEXISTENT_ID", "The record instance does not exist.")
        try:
            if request.method == "POST" and key is None:
                return self._create(request, record_type, table, fixed)
            if key is None:
                return error(405, "METHOD_NOT_ALLOWED", "Use a record instance URL.")
            if self.store.get(table, key, fixed) is None:
                return error(404, "NONEXISTENT_ID", "The record instance does not exist. "
                             "Provide a valid record instance ID.")
            if request.method == "GET":
                row = self.store.get(table, key, fixed) or {}
                return Response(json.dumps(record_body(self.store, table, row)), 200,
                                content_type="application/json")
            if request.method == "PATCH":
                body = request.get_json(silent=True) or {}
                with self.store.lock:
                    self.store.update(table, key, self._values(table, body))
                    self._lines(request, key, body)
                return Response(status=204)
            if request.method == "DELETE":
                self.store.delete(record_type, key)
                return Response(status=204)
        except RecordError as exc:
            return error(exc.status, exc.code, exc.detail)
        return error(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here.")

    def _create(self, request: Request, record_type: str, table: str,
                fixed: dict[str, str]) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise RecordError(400, "INVALID_CONTENT", "The request body must be a JSON object.")
        with self.store.lock:
            values = self._values(table, body)
            if record_type == "opportunity":  # NetSuite's default: In Progress
                values.setdefault("status", "A")
            key = self.store.insert(table, {**values, **fixed})
            if table == "transaction":
                add_main_line(self.store, key)
            self._lines(request, key, body)
        location = f"https://{account_host(self.settings.account_id)}{RECORD_PREFIX}" \
                   f"{record_type}/{key}"
        return Response(status=204, headers={"Location": location})

    def _values(self, table: str, body: dict[str, Any]) -> dict[str, Any]:
        """Column values of a body; an opportunity's status follows its entity status."""
        values = columns_of(table, body)
        if table == "transaction" and values.get("entitystatus") is not None:
            name = str(self.store.scalar('SELECT "name" FROM "entitystatus" WHERE "id" = ?',
                                         (values["entitystatus"],)) or "")
            values["status"] = "C" if "won" in name.lower() else (
                "D" if "lost" in name.lower() else "A")
        return values

    def _lines(self, request: Request, key: int, body: dict[str, Any]) -> None:
        sublist = body.get("item")
        if not isinstance(sublist, dict):
            return
        replace = "item" in request.args.get("replace", "").lower().split(",")
        write_lines(self.store, key, list(sublist.get("items", [])), replace=replace)
        touch(self.store, "transaction", key)
