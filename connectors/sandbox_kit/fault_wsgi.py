"""The kit's faults on the wire: a WSGI wrapper for any sandbox, and a response cut
off mid-body (what a dropped connection looks like to a client).

A CRM's sandbox either wraps its app in `FaultMiddleware` (naming each request's group
and answering faults in its API's shape) or, like Salesforce's, calls the planner from
its own request hooks and reuses `DroppedResponse` and `IN_API_CALL`.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import socket
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from .faults import CountedFaults, FaultConfig, FaultConfigError, FaultPlanner, Plan, split_counted


class DroppedResponse(Response):
    """Sends the status, the headers (with the full Content-Length) and half the body,
    then closes the connection: a network failure in the middle of a response.

    A response without a body (204) is cut before its status line instead.
    The call itself has run: a write it made is committed.
    """

    def __init__(self, original: Response) -> None:
        super().__init__(original.get_data(), status=original.status,
                         headers=original.headers)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        return self._stream(environ, start_response)

    def _stream(self, environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        body = self.get_data()
        sock = environ.get("werkzeug.socket")
        if not body:
            close_for_writing(sock)
            # werkzeug treats ConnectionError as a dropped connection: no traceback.
            raise ConnectionAbortedError("sandbox fault: connection dropped before the response")
        headers = [(k, v) for k, v in self.get_wsgi_headers(environ).items()
                   if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(self.status, headers)
        yield body[: len(body) // 2]
        close_for_writing(sock)


def close_for_writing(sock: socket.socket | None) -> None:
    """Send FIN now, so the client sees the end of the stream at once."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)


# True while a request in fault scope runs on this thread: a sandbox's store asks
# `in_api_call()` so that late commits hit API writes only, never seeding or admin calls.
IN_API_CALL: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "sandbox_kit_api_call", default=False)


def in_api_call() -> bool:
    return IN_API_CALL.get()


# How late the writes of the API call running on this thread commit (the kit's late-commit
# fault): a sandbox's store subtracts it from a write's stamp. Shared by every sandbox that
# stamps writes itself, so the draw below is the same everywhere.
LATE_BY: contextvars.ContextVar[timedelta] = contextvars.ContextVar(
    "sandbox_kit_late_by", default=timedelta(0))


@contextlib.contextmanager
def late_commits(planner: FaultPlanner, method: str,
                 write_methods: Collection[str]) -> Iterator[None]:
    """Run one request with `LATE_BY` set: drawn once per API call whose `method` writes
    (so all of a call's writes commit together, equally late), zero for reads, seeding and
    admin calls (outside `in_api_call()`), which never draw."""
    late = planner.late_commit() if method in write_methods and in_api_call() else None
    token = LATE_BY.set(late or timedelta(0))
    try:
        yield
    finally:
        LATE_BY.reset(token)


Respond = Callable[[Plan], Response | None]
_GENERIC_STATUS = {"http_500": 500, "http_503": 503, "rate_limit": 429,
                   "quota_exceeded": 429, "session_expiry": 401}


def generic_response(plan: Plan) -> Response | None:
    """A plain JSON error for a planned fault; a CRM passes its own `respond` for its
    API's error bodies and headers."""
    if plan.fault is None or plan.fault not in _GENERIC_STATUS:
        return None
    response = Response(json.dumps({"error": plan.fault}), status=_GENERIC_STATUS[plan.fault],
                        content_type="application/json")
    if plan.fault == "rate_limit":
        response.headers["Retry-After"] = str(plan.retry_after)
    return response


class FaultMiddleware:
    """Any sandbox's WSGI app with the kit's faults: `group_of(environ)` names a request's
    group (None: never faulted, e.g. admin routes), `respond(plan)` answers a fault in the
    CRM's shape (None: let the request through, e.g. a session expiry the app itself then
    notices). Latency is slept, dropped connections cut the app's own response."""

    def __init__(self, app: Callable[..., Iterable[bytes]], planner: FaultPlanner,
                 group_of: Callable[[dict[str, Any]], str | None],
                 respond: Respond = generic_response) -> None:
        self.app = app
        self.planner = planner
        self.group_of = group_of
        self.respond = respond

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        group = self.group_of(environ)
        plan = None if group is None else self.planner.plan(group)
        if plan is None:
            return self.app(environ, start_response)
        if plan.delay:
            time.sleep(plan.delay)
        failure = self.respond(plan)
        if failure is not None:
            return failure(environ, start_response)
        token = IN_API_CALL.set(group != "login")
        try:
            if plan.fault == "dropped_connection":
                response = Response.from_app(self.app, environ, buffered=True)
                return DroppedResponse(response)(environ, start_response)
            return list(self.app(environ, start_response))
        finally:
            IN_API_CALL.reset(token)


class FaultSwitches:
    """One sandbox's switches: the kit's planner and the counted `fail_next` /
    `throttle_next`, set alike by its harness (`replace`) and by `/_sandbox/faults`
    (`admin`), so every sandbox validates, merges and reports them the same way."""

    def __init__(self, config_class: type[FaultConfig] = FaultConfig,
                 planner: FaultPlanner | None = None) -> None:
        self.config_class = config_class
        self.planner = planner or FaultPlanner(config_class())
        self.counted = CountedFaults()

    def replace(self, switches: Any) -> dict[str, Any]:
        """Every switch replaced (`{}` clears them all); all validated before anything
        changes: a bad one raises `FaultConfigError`."""
        counted, kit_switches = split_counted(switches, self.config_class)
        self.counted.set(counted)
        self.planner.clear()
        if kit_switches:
            self.planner.update(kit_switches)
        return self.state()

    def merge(self, switches: Any) -> dict[str, Any]:
        """The switches given, merged over the current ones (validated first)."""
        if not isinstance(switches, dict):
            raise FaultConfigError('Fault switches must be a JSON object, e.g. '
                                   '{"error_rate": 0.1}')
        counted, kit_switches = split_counted(switches, self.config_class)
        self.planner.config.merged(kit_switches)  # validated against the current ones
        if counted:
            self.counted.set({**self.counted.to_dict(), **counted})
        if kit_switches:
            self.planner.update(kit_switches)
        return self.state()

    def state(self) -> dict[str, Any]:
        """The planner's state (switches, injected counts) and the counted switches."""
        return {**self.planner.state(), "counted": self.counted.to_dict()}

    def admin(self, method: str, body: str) -> dict[str, Any] | None:
        """What `/_sandbox/faults` does: GET the state, POST a JSON object of switches
        (merged), DELETE clears; None for another method. Bad JSON or a bad switch raises
        a ValueError (`FaultConfigError`) naming it, and nothing changes."""
        if method == "POST":
            try:
                switches = json.loads(body or "{}")
            except ValueError as exc:
                raise FaultConfigError(f"Faults are not valid JSON: {exc}") from None
            return self.merge(switches)
        if method == "DELETE":
            return self.replace({})
        return self.state() if method == "GET" else None

    def admin_response(self, request: Request,
                       error: Callable[[int, str], Response]) -> Response:
        """Any sandbox's `/_sandbox/…`: `health` 200 (the demo and benchmarks wait on it),
        `faults` as `admin` does it, the state as JSON. `error(status, message)` answers a
        404, a bad switch's 400 and a 405 in the CRM's words."""
        if request.path == "/_sandbox/health":
            return Response('{"ok": true}', mimetype="application/json")
        if request.path != "/_sandbox/faults":
            return error(404, "Not found")
        try:
            state = self.admin(request.method, request.get_data(as_text=True))
        except ValueError as exc:  # FaultConfigError, or no JSON
            return error(400, str(exc))
        if state is None:
            return error(405, "Method not allowed")
        return Response(json.dumps(state), mimetype="application/json")

    def counted_response(self, respond: Respond) -> Response | None:
        """The answer to this call if a counted switch is set (one used up): `throttle_next`
        as the CRM's `rate_limit`, `fail_next` as its `http_503`; None when none is."""
        status = self.counted.take()
        if status is None:
            return None
        answer = respond(Plan(fault="rate_limit" if status == 429 else "http_503",
                              config=self.planner.config))
        assert answer is not None  # every CRM answers these two faults itself
        return answer
