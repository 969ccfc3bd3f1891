"""Fault injection: switches that make the sandbox fail the way a real org does.

Chaos tests, benchmarks and demos need the failures a connector meets in
production — 500/503s, rate limits, a used-up daily quota, sessions that
expire mid-sync, slow responses, connections cut mid-body and writes that
commit "late" (with a SystemModstamp minutes in the past) — on demand and
reproducibly. `FaultConfig` holds the switches; it is part of `SandboxConfig`,
so it is saved in the state file and can be given at start-up.
`FaultInjector` applies them through the app's request hooks and counts every
fault it injects. See docs/sandbox-salesforce.md ("Fault injection").
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import random
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

from . import soap
from .errors import ApiError, request_limit_exceeded, server_unavailable, unexpected_error

if TYPE_CHECKING:
    from .sandbox import SalesforceSandbox
    from .server import RequestContext, SandboxApp

# The REST endpoint groups a fault can be scoped to (see `FaultConfig.scope`).
SCOPES: tuple[str, ...] = ("query", "sobjects", "composite", "limits", "resources")
ERROR_STATUSES: tuple[int, ...] = (500, 503)
# Faults that fire "after N calls", by the prefix of their switches; earlier wins.
COUNTED_KINDS: tuple[str, ...] = ("session_expiry", "quota_exceeded", "rate_limit")
# Keys of `FaultInjector.state()["injected"]`.
INJECTED_KINDS: tuple[str, ...] = (
    "http_500", "http_503", "rate_limit", "quota_exceeded", "session_expiry",
    "dropped_connection", "latency", "late_commit",
)
_ENDPOINT_GROUPS: dict[str, str] = {
    "rest.query": "query", "rest.query_all": "query", "rest.query_more": "query",
    "rest.describe_global": "sobjects", "rest.sobject": "sobjects", "rest.describe": "sobjects",
    "rest.record": "sobjects", "rest.updated": "sobjects", "rest.deleted": "sobjects",
    "rest.collection": "composite", "rest.collection_get": "composite",
    "rest.limits": "limits", "rest.resources": "resources",
    "oauth.token": "login",
}
_MAX_LATENCY_MS = 600_000
_MAX_LATE_MINUTES = 30 * 24 * 60

# True while a request in fault scope runs on this thread: late commits must
# hit API writes only, never admin calls, seeding or direct Python use.
_IN_API_CALL: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "sandbox_fault_api_call", default=False)


class FaultConfigError(ApiError, ValueError):
    """A bad switch: HTTP callers get a 400 `INVALID_FIELD`, Python callers a ValueError."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "INVALID_FIELD", message)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class FaultConfig:
    """The fault switches; all off by default. See the docs for each one's effect.

    Counted faults (`<kind>_after`, `<kind>_calls`, `<kind>_repeat` for
    `rate_limit`, `quota_exceeded` and `session_expiry`): once `after` API
    calls have passed since the switch was set, the next `calls` calls fail
    (None = every call from then on, until the switch is changed or cleared);
    with `repeat` the cycle of `after` good calls and `calls` bad ones restarts.
    """

    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = ERROR_STATUSES
    rate_limit_after: int | None = None
    rate_limit_calls: int | None = 1
    rate_limit_repeat: bool = False
    rate_limit_retry_after: int = 1
    quota_exceeded_after: int | None = None
    quota_exceeded_calls: int | None = None
    quota_exceeded_repeat: bool = False
    session_expiry_after: int | None = None
    session_expiry_calls: int | None = 1
    session_expiry_repeat: bool = False
    latency_ms: int = 0
    latency_jitter_ms: int = 0
    drop_connection_rate: float = 0.0
    late_commit_rate: float = 0.0
    late_commit_minutes: float = 5.0
    seed: int | None = None
    scope: tuple[str, ...] = SCOPES
    faults_on_login: bool = False

    @classmethod
    def from_dict(cls, data: Any, base: FaultConfig | None = None) -> FaultConfig:
        """Validate `data` (a mapping of switches) applied over `base` (default: all off)."""
        if isinstance(data, FaultConfig):
            return data
        if not isinstance(data, Mapping):
            raise FaultConfigError("Fault switches must be a JSON object, e.g. "
                                   '{"error_rate": 0.1}')
        known = [f.name for f in fields(cls)]
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise FaultConfigError(f"Unknown fault switch '{key}'. Known switches: "
                                       f"{', '.join(known)}")
            values[key] = _validate(key, value)
        config = replace(base or cls(), **values)
        for kind in COUNTED_KINDS:
            if getattr(config, f"{kind}_repeat") and getattr(config, f"{kind}_calls") is None:
                raise FaultConfigError(
                    f"'{kind}_repeat' needs '{kind}_calls': a fault that lasts until it is "
                    "cleared cannot repeat")
        return config

    def merged(self, changes: Mapping[str, Any]) -> FaultConfig:
        """A validated copy with `changes` applied (what `POST /_sandbox/faults` does)."""
        return FaultConfig.from_dict(changes, base=self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists instead of tuples); `from_dict` reads it back."""
        data = asdict(self)
        data["error_statuses"] = list(self.error_statuses)
        data["scope"] = list(self.scope)
        return data

    def changed(self) -> dict[str, Any]:
        """Only the switches that differ from the defaults (for banners and logs)."""
        defaults = FaultConfig().to_dict()
        return {k: v for k, v in self.to_dict().items() if v != defaults[k]}

    @property
    def active(self) -> bool:
        """Whether any switch is on (`scope` and friends alone change nothing)."""
        return bool(
            self.error_rate or self.drop_connection_rate or self.late_commit_rate
            or self.latency_ms or self.latency_jitter_ms
            or any(getattr(self, f"{kind}_after") is not None for kind in COUNTED_KINDS))


def _validate(key: str, value: Any) -> Any:
    """One switch's value, checked and normalised; raises `FaultConfigError`."""
    if key in ("error_rate", "drop_connection_rate", "late_commit_rate"):
        if not _is_number(value) or not 0 <= value <= 1:
            raise FaultConfigError(f"'{key}' must be a number from 0 to 1, got {value!r}")
        return float(value)
    if key.endswith("_after") and key != "rate_limit_retry_after":
        if value is not None and (not _is_int(value) or value < 0):
            raise FaultConfigError(f"'{key}' must be a whole number of calls >= 0, or null "
                                   f"(off), got {value!r}")
        return value
    if key.endswith("_calls"):
        if value is not None and (not _is_int(value) or value < 1):
            raise FaultConfigError(f"'{key}' must be a whole number of calls >= 1, or null "
                                   f"(until cleared), got {value!r}")
        return value
    if key.endswith("_repeat") or key == "faults_on_login":
        if not isinstance(value, bool):
            raise FaultConfigError(f"'{key}' must be true or false, got {value!r}")
        return value
    if key in ("latency_ms", "latency_jitter_ms", "rate_limit_retry_after"):
        high = 86_400 if key == "rate_limit_retry_after" else _MAX_LATENCY_MS
        if not _is_int(value) or not 0 <= value <= high:
            raise FaultConfigError(f"'{key}' must be a whole number from 0 to {high}, "
                                   f"got {value!r}")
        return value
    if key == "late_commit_minutes":
        if not _is_number(value) or not 0 < value <= _MAX_LATE_MINUTES:
            raise FaultConfigError(f"'late_commit_minutes' must be a number above 0 and at "
                                   f"most {_MAX_LATE_MINUTES}, got {value!r}")
        return value
    if key == "seed":
        if value is not None and not _is_int(value):
            raise FaultConfigError(f"'seed' must be a whole number or null, got {value!r}")
        return value
    allowed = ERROR_STATUSES if key == "error_statuses" else SCOPES
    if (not isinstance(value, list | tuple) or not value
            or any(isinstance(v, bool) or v not in allowed for v in value)):
        choices = ", ".join(json.dumps(v) for v in allowed)
        raise FaultConfigError(f"'{key}' must be a non-empty list of {choices}, got {value!r}")
    return tuple(dict.fromkeys(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def parse_faults(text: str) -> FaultConfig:
    """Switches from a CLI argument: a JSON object, or the path of a file holding one.

    Raises `FaultConfigError` (a ValueError) naming the bad key or value.
    """
    source = text.strip()
    if not source.startswith("{"):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FaultConfigError(f"Faults must be a JSON object such as "
                                   f"'{{\"error_rate\": 0.1}}' or the path of a JSON file; "
                                   f"no file named {source!r}")
        source = path.read_text(encoding="utf-8")
    try:
        data = json.loads(source)
    except ValueError as error:
        raise FaultConfigError(f"Faults are not valid JSON: {error}") from None
    return FaultConfig.from_dict(data)


def as_fault_config(value: FaultConfig | Mapping[str, Any] | str) -> FaultConfig:
    """Accept switches in any form a caller has them: config, mapping or CLI text."""
    if isinstance(value, str):
        return parse_faults(value)
    return FaultConfig.from_dict(value)


# ---------------------------------------------------------------------------
# Injection


@dataclass
class _Armed:
    """Progress of one counted fault: API calls seen since its switch was set."""

    calls_seen: int = 0

    def hit(self, after: int | None, calls: int | None, repeat: bool) -> bool:
        """Count one call; True when it falls inside the fault window."""
        self.calls_seen += 1
        if after is None:
            return False
        position = self.calls_seen
        if repeat and calls is not None:
            position = (position - 1) % (after + calls) + 1
        return position > after and (calls is None or position <= after + calls)


@dataclass
class _Plan:
    """What the injector decided for one request (made under the lock, acted on outside)."""

    delay: float = 0.0
    fault: str | None = None


class FaultInjector:
    """Applies a sandbox's `FaultConfig` to the requests of one `SandboxApp`.

    Random faults draw from one seeded stream per kind, so with a given seed
    the same sequence of calls meets the same faults (for a single client
    calling one request at a time), whatever the other switches are.
    """

    def __init__(self, sandbox: SalesforceSandbox) -> None:
        self.sandbox = sandbox
        # `_lock` guards counters and streams. It is taken inside store write
        # transactions (late commits), so it must never be held while calling the store.
        self._lock = threading.Lock()
        self._update_lock = threading.Lock()  # serialises updates, which do call the store
        self._config = sandbox.config.faults
        self._armed = {kind: _Armed() for kind in COUNTED_KINDS}
        self._injected = dict.fromkeys(INJECTED_KINDS, 0)
        self._calls = 0
        self._streams: dict[str, random.Random] = {}
        self._seed = 0
        self._reseed()
        sandbox.write_delay = self._write_delay

    def install(self, app: SandboxApp) -> None:
        """Register the hooks; the app calls this once, before any other hook."""
        app.before_request(self.before_request)
        app.after_request(self.after_request)

    # -- switches ------------------------------------------------------------

    @property
    def config(self) -> FaultConfig:
        with self._lock:
            self._sync()
            return self._config

    def update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Merge switches, save them and re-arm the counted faults they name.

        Every update restarts the random streams from the seed, so the same
        update followed by the same calls injects the same faults.
        """
        with self._update_lock:
            config = self.sandbox.config.faults.merged(changes)
            self.sandbox.update_config({"faults": config})
            kinds = {k for k in COUNTED_KINDS if any(key.startswith(f"{k}_") for key in changes)}
            with self._lock:
                self._config = config
                for kind in kinds:
                    self._armed[kind] = _Armed()
                self._reseed()
        return self.state()

    def clear(self) -> dict[str, Any]:
        """Switch every fault off and zero the counts."""
        with self._update_lock:
            self.sandbox.update_config({"faults": FaultConfig()})
            with self._lock:
                self._config = FaultConfig()
                self._armed = {kind: _Armed() for kind in COUNTED_KINDS}
                self._injected = dict.fromkeys(INJECTED_KINDS, 0)
                self._calls = 0
                self._reseed()
        return self.state()

    def state(self) -> dict[str, Any]:
        """Switches, counts of injected faults by kind, and counted-fault progress."""
        with self._lock:
            self._sync()
            config = self._config
            return {
                "config": config.to_dict(),
                "active": config.active,
                "injected": dict(self._injected),
                "calls": self._calls,
                "armed": {
                    kind: {"calls_seen": self._armed[kind].calls_seen}
                    for kind in COUNTED_KINDS if getattr(config, f"{kind}_after") is not None
                },
                "seed": self._seed,
            }

    def _sync(self) -> None:
        """Follow changes made elsewhere (`POST /_sandbox/config`, `update_config`)."""
        current = self.sandbox.config.faults
        if current == self._config:
            return
        for kind in COUNTED_KINDS:
            names = [f"{kind}_{part}" for part in ("after", "calls", "repeat")]
            if any(getattr(current, n) != getattr(self._config, n) for n in names):
                self._armed[kind] = _Armed()
        self._config = current
        self._reseed()

    def _reseed(self) -> None:
        seed = self._config.seed
        self._seed = seed if seed is not None else secrets.randbelow(2**31)
        # String seeds hash with SHA-512: stable across runs and Python processes.
        self._streams = {kind: random.Random(f"{self._seed}:{kind}")
                         for kind in ("error", "drop", "latency", "late_commit")}

    # -- hooks ---------------------------------------------------------------

    def before_request(self, ctx: RequestContext) -> Response | None:
        group = self._group(ctx)
        if group is None:
            return None
        with self._lock:
            self._sync()
            config = self._config
            if (group == "login" and not config.faults_on_login) or (
                    group != "login" and group not in config.scope):
                return None
            plan = self._plan(config, counted=group != "login")
        if plan.delay:
            time.sleep(plan.delay)
        if group != "login":
            ctx.notes["fault_api_token"] = _IN_API_CALL.set(True)
        ctx.notes["fault"] = plan.fault
        return self._apply(ctx, plan, group, config)

    def after_request(self, ctx: RequestContext, response: Response) -> Response | None:
        token = ctx.notes.pop("fault_api_token", None)
        if token is not None:
            _IN_API_CALL.reset(token)
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

    def _plan(self, config: FaultConfig, *, counted: bool) -> _Plan:
        """Decide this call's faults. Every stream advances on every call in scope."""
        plan = _Plan()
        if config.latency_ms or config.latency_jitter_ms:
            jitter = self._streams["latency"].randint(0, config.latency_jitter_ms)
            plan.delay = (config.latency_ms + jitter) / 1000
            self._injected["latency"] += 1
        if counted:
            self._calls += 1
            for kind in COUNTED_KINDS:
                hit = self._armed[kind].hit(getattr(config, f"{kind}_after"),
                                            getattr(config, f"{kind}_calls"),
                                            getattr(config, f"{kind}_repeat"))
                if hit and plan.fault is None:
                    plan.fault = kind
        if config.error_rate:
            draw = self._streams["error"].random()
            if draw < config.error_rate and plan.fault is None:
                # One draw picks both: where it falls below the rate chooses the status.
                statuses = config.error_statuses
                status = statuses[min(len(statuses) - 1,
                                      int(draw / config.error_rate * len(statuses)))]
                plan.fault = f"http_{status}"
        if config.drop_connection_rate:
            draw = self._streams["drop"].random()
            if draw < config.drop_connection_rate and plan.fault is None:
                plan.fault = "dropped_connection"
        if plan.fault is not None:
            self._injected[plan.fault] += 1
        return plan

    def _apply(self, ctx: RequestContext, plan: _Plan, group: str,
               config: FaultConfig) -> Response | None:
        fault = plan.fault
        if fault == "session_expiry":
            # Every session dies now; the session check right after answers 401.
            self.sandbox.expire_sessions()
        elif fault == "quota_exceeded":
            limit = self.sandbox.config.api_daily_limit
            ctx.api_usage = (limit, limit)  # Sforce-Limit-Info as when the quota runs out
            raise request_limit_exceeded()
        elif fault == "rate_limit":
            seconds = config.rate_limit_retry_after
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
        if not _IN_API_CALL.get():
            return None
        with self._lock:
            config = self._config
            if not config.late_commit_rate:
                return None
            if self._streams["late_commit"].random() >= config.late_commit_rate:
                return None
            self._injected["late_commit"] += 1
        return timedelta(minutes=config.late_commit_minutes)


def _login_error(ctx: RequestContext, error: ApiError) -> Response:
    """A failed login in the shape each login endpoint uses (SOAP fault or OAuth JSON)."""
    if ctx.endpoint == "soap.partner":
        return Response(soap.fault(error.code, f"{error.code}: {error.message}"),
                        status=error.status, content_type="text/xml;charset=UTF-8")
    oauth_error = "server_error" if error.status == 500 else "temporarily_unavailable"
    return Response(json.dumps({"error": oauth_error, "error_description": error.message}),
                    status=error.status, content_type="application/json;charset=UTF-8")


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
            _close_for_writing(sock)
            # werkzeug treats ConnectionError as a dropped connection: no traceback.
            raise ConnectionAbortedError("sandbox fault: connection dropped before the response")
        headers = [(k, v) for k, v in self.get_wsgi_headers(environ).items()
                   if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(self.status, headers)
        yield body[: len(body) // 2]
        _close_for_writing(sock)


def _close_for_writing(sock: socket.socket | None) -> None:
    """Send FIN now, so the client sees the end of the stream at once."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
