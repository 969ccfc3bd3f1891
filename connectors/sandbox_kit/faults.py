"""Fault switches and the planner that decides, call by call, which fault a sandbox injects.

Chaos tests, benchmarks and demos need the failures a connector meets in production —
500/503s, rate limits, a used-up daily quota, sessions that expire mid-sync, slow
responses, connections cut mid-body and writes that commit "late" — on demand and
reproducibly, whichever CRM the sandbox speaks. This module holds what is the same for
every CRM: the switches (`FaultConfig`) and their validation, the planner
(`FaultPlanner`: counted faults, seeded random streams, counts of what it injected);
`fault_wsgi` applies them to any WSGI app. A CRM's sandbox decides which of its
requests form which group and answers each planned fault in its own API's shape.
"""

from __future__ import annotations

import json
import random
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

ERROR_STATUSES: tuple[int, ...] = (500, 503)
# Faults that fire "after N calls", by the prefix of their switches; earlier wins.
COUNTED_KINDS: tuple[str, ...] = ("session_expiry", "quota_exceeded", "rate_limit")
# Keys of `FaultPlanner.state()["injected"]`.
INJECTED_KINDS: tuple[str, ...] = (
    "http_500", "http_503", "rate_limit", "quota_exceeded", "session_expiry",
    "dropped_connection", "latency", "late_commit",
)
# Counted switches older than the kit's, kept by the sandboxes that had them: the next N
# API calls answer 503 (`fail_next`) or 429 (`throttle_next`). See `CountedFaults`.
COUNTED_SWITCHES: tuple[str, ...] = ("fail_next", "throttle_next")
_MAX_LATENCY_MS = 600_000
_MAX_LATE_MINUTES = 30 * 24 * 60


class FaultConfigError(ValueError):
    """A bad switch; the message names the key and what it accepts."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

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

    # The request groups `scope` may name (a CRM's sandbox lists its own) and the error
    # its bad switches raise (a CRM's sandbox may answer it in its API's error shape).
    scopes: ClassVar[tuple[str, ...]] = ()
    error_class: ClassVar[type[FaultConfigError]] = FaultConfigError

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
    scope: tuple[str, ...] = ()  # () = every group; a CRM's subclass names its groups
    faults_on_login: bool = False

    @classmethod
    def from_dict(cls, data: Any, base: Self | None = None) -> Self:
        """Validate `data` (a mapping of switches) applied over `base` (default: all off)."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise cls.error_class("Fault switches must be a JSON object, e.g. "
                                  '{"error_rate": 0.1}')
        known = [f.name for f in fields(cls)]
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise cls.error_class(f"Unknown fault switch '{key}'. Known switches: "
                                      f"{', '.join(known)}")
            values[key] = cls._validate(key, value)
        config = replace(base or cls(), **values)
        for kind in COUNTED_KINDS:
            if getattr(config, f"{kind}_repeat") and getattr(config, f"{kind}_calls") is None:
                raise cls.error_class(
                    f"'{kind}_repeat' needs '{kind}_calls': a fault that lasts until it is "
                    "cleared cannot repeat")
        return config

    @classmethod
    def _validate(cls, key: str, value: Any) -> Any:
        """One switch's value, checked and normalised; raises `FaultConfigError`."""
        if key in ("error_rate", "drop_connection_rate", "late_commit_rate"):
            if not _is_number(value) or not 0 <= value <= 1:
                raise cls.error_class(f"'{key}' must be a number from 0 to 1, got {value!r}")
            return float(value)
        if key.endswith("_after") and key != "rate_limit_retry_after":
            if value is not None and (not _is_int(value) or value < 0):
                raise cls.error_class(f"'{key}' must be a whole number of calls >= 0, or null "
                                      f"(off), got {value!r}")
            return value
        if key.endswith("_calls"):
            if value is not None and (not _is_int(value) or value < 1):
                raise cls.error_class(f"'{key}' must be a whole number of calls >= 1, or null "
                                      f"(until cleared), got {value!r}")
            return value
        if key.endswith("_repeat") or key == "faults_on_login":
            if not isinstance(value, bool):
                raise cls.error_class(f"'{key}' must be true or false, got {value!r}")
            return value
        if key in ("latency_ms", "latency_jitter_ms", "rate_limit_retry_after"):
            high = 86_400 if key == "rate_limit_retry_after" else _MAX_LATENCY_MS
            if not _is_int(value) or not 0 <= value <= high:
                raise cls.error_class(f"'{key}' must be a whole number from 0 to {high}, "
                                      f"got {value!r}")
            return value
        if key == "late_commit_minutes":
            if not _is_number(value) or not 0 < value <= _MAX_LATE_MINUTES:
                raise cls.error_class(f"'late_commit_minutes' must be a number above 0 and at "
                                      f"most {_MAX_LATE_MINUTES}, got {value!r}")
            return value
        if key == "seed":
            if value is not None and not _is_int(value):
                raise cls.error_class(f"'seed' must be a whole number or null, got {value!r}")
            return value
        allowed = ERROR_STATUSES if key == "error_statuses" else cls.scopes
        if (not isinstance(value, list | tuple) or not value
                or any(isinstance(v, bool) or v not in allowed for v in value)):
            choices = ", ".join(json.dumps(v) for v in allowed)
            raise cls.error_class(f"'{key}' must be a non-empty list of {choices}, got {value!r}")
        return tuple(dict.fromkeys(value))

    def merged(self, changes: Mapping[str, Any]) -> Self:
        """A validated copy with `changes` applied (what `POST /_sandbox/faults` does)."""
        return type(self).from_dict(changes, base=self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists instead of tuples); `from_dict` reads it back."""
        data = asdict(self)
        data["error_statuses"] = list(self.error_statuses)
        data["scope"] = list(self.scope)
        return data

    def changed(self) -> dict[str, Any]:
        """Only the switches that differ from the defaults (for banners and logs)."""
        defaults = type(self)().to_dict()
        return {k: v for k, v in self.to_dict().items() if v != defaults[k]}

    @property
    def active(self) -> bool:
        """Whether any switch is on (`scope` and friends alone change nothing)."""
        return bool(
            self.error_rate or self.drop_connection_rate or self.late_commit_rate
            or self.latency_ms or self.latency_jitter_ms
            or any(getattr(self, f"{kind}_after") is not None for kind in COUNTED_KINDS))

    def covers(self, group: str) -> bool:
        """Whether faults apply to a request of this group (login has its own switch)."""
        if group == "login":
            return self.faults_on_login
        return not self.scope or group in self.scope


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


C = TypeVar("C", bound=FaultConfig)


def parse_faults(text: str, config_class: type[C] = FaultConfig) -> C:  # type: ignore[assignment]
    """Switches from a CLI argument: a JSON object, or the path of a file holding one.

    Raises `FaultConfigError` (a ValueError) naming the bad key or value.
    """
    source = text.strip()
    if not source.startswith("{"):
        path = Path(source).expanduser()
        if not path.is_file():
            raise config_class.error_class(
                f"Faults must be a JSON object such as '{{\"error_rate\": 0.1}}' or the "
                f"path of a JSON file; no file named {source!r}")
        source = path.read_text(encoding="utf-8")
    try:
        data = json.loads(source)
    except ValueError as error:
        raise config_class.error_class(f"Faults are not valid JSON: {error}") from None
    return config_class.from_dict(data)


def as_fault_config(value: FaultConfig | Mapping[str, Any] | str,
                    config_class: type[C] = FaultConfig) -> C:  # type: ignore[assignment]
    """Accept switches in any form a caller has them: config, mapping or CLI text."""
    if isinstance(value, str):
        return parse_faults(value, config_class)
    return config_class.from_dict(value)


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


@dataclass(frozen=True)
class Plan:
    """What the planner decided for one request: wait `delay` seconds, then fail with
    `fault` (one of INJECTED_KINDS but latency / late_commit) or not at all (None)."""

    delay: float = 0.0
    fault: str | None = None
    config: FaultConfig | None = None  # the switches it was planned with

    @property
    def retry_after(self) -> int:
        return self.config.rate_limit_retry_after if self.config else 1


class FaultPlanner:
    """Decides each request's fault from the switches, thread-safely.

    Random faults draw from one seeded stream per kind, so with a given seed the same
    sequence of calls meets the same faults (for a single client calling one request at
    a time), whatever the other switches are. `load`/`save` let a sandbox keep the
    switches in its own state (a file that survives restarts); without them they live
    in memory. The planner follows switches changed through `load`'s source too.
    """

    def __init__(self, config: FaultConfig | None = None, *,
                 load: Callable[[], FaultConfig] | None = None,
                 save: Callable[[FaultConfig], None] | None = None) -> None:
        self._memory = config or FaultConfig()
        self._load = load or (lambda: self._memory)
        self._save = save or self._remember
        # `_lock` guards counters and streams; it is never held while calling load/save
        # from `update`, which may write to a store that takes the lock (late commits).
        self._lock = threading.Lock()
        self._update_lock = threading.Lock()  # serialises updates
        self._config = self._load()
        self._armed = {kind: _Armed() for kind in COUNTED_KINDS}
        self._injected = dict.fromkeys(INJECTED_KINDS, 0)
        self._calls = 0
        self._streams: dict[str, random.Random] = {}
        self._seed = 0
        self._reseed()

    def _remember(self, config: FaultConfig) -> None:
        self._memory = config

    # -- switches ------------------------------------------------------------

    @property
    def config(self) -> FaultConfig:
        with self._lock:
            self._sync()
            return self._config

    def update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Merge switches, save them and re-arm the counted faults they name.

        Every update restarts the random streams from the seed, so the same update
        followed by the same calls injects the same faults.
        """
        with self._update_lock:
            config = self._load().merged(changes)
            self._save(config)
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
            config = type(self._load())()
            self._save(config)
            with self._lock:
                self._config = config
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
        """Follow switches changed elsewhere (a sandbox's own config endpoint)."""
        current = self._load()
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

    # -- planning ------------------------------------------------------------

    def plan(self, group: str) -> Plan | None:
        """This request's faults, or None when the switches do not cover its group.

        `group` is the CRM's name for the kind of request ("login" is special: only with
        `faults_on_login`, and it never counts towards counted faults). Every stream
        advances on every call in scope, so one switch never shifts another's faults.
        """
        with self._lock:
            self._sync()
            config = self._config
            if not config.covers(group):
                return None
            delay = 0.0
            fault: str | None = None
            if config.latency_ms or config.latency_jitter_ms:
                jitter = self._streams["latency"].randint(0, config.latency_jitter_ms)
                delay = (config.latency_ms + jitter) / 1000
                self._injected["latency"] += 1
            if group != "login":
                self._calls += 1
                for kind in COUNTED_KINDS:
                    hit = self._armed[kind].hit(getattr(config, f"{kind}_after"),
                                                getattr(config, f"{kind}_calls"),
                                                getattr(config, f"{kind}_repeat"))
                    if hit and fault is None:
                        fault = kind
            if config.error_rate:
                draw = self._streams["error"].random()
                if draw < config.error_rate and fault is None:
                    # One draw picks both: where it falls below the rate chooses the status.
                    statuses = config.error_statuses
                    status = statuses[min(len(statuses) - 1,
                                          int(draw / config.error_rate * len(statuses)))]
                    fault = f"http_{status}"
            if config.drop_connection_rate:
                draw = self._streams["drop"].random()
                if draw < config.drop_connection_rate and fault is None:
                    fault = "dropped_connection"
            if fault is not None:
                self._injected[fault] += 1
            return Plan(delay, fault, config)

    def late_commit(self) -> timedelta | None:
        """How late a write made by an API call commits, or None (on time)."""
        with self._lock:
            config = self._config
            if not config.late_commit_rate:
                return None
            if self._streams["late_commit"].random() >= config.late_commit_rate:
                return None
            self._injected["late_commit"] += 1
        return timedelta(minutes=config.late_commit_minutes)


@dataclass
class CountedFaults:
    """`fail_next` / `throttle_next`: the next N API calls answer 503 / 429, counted down.

    The kit's switches have no plain "fail the next N calls with a 5xx" (`error_rate` is
    random; `rate_limit_after: 0` with `rate_limit_calls: N` is `throttle_next: N`), so the
    sandboxes that spelled these keep them, in one place; `take()` is asked once per API
    call and the sandbox answers the status in its API's shape.
    """

    fail_next: int = 0
    throttle_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self) -> int | None:
        """429 or 503 for this call (throttling first), or None; counts it down."""
        with self.lock:
            if self.throttle_next > 0:
                self.throttle_next -= 1
                return 429
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503
        return None

    def set(self, counts: Mapping[str, int]) -> None:
        """Both counts (a missing one is 0); `split_counted` validates them."""
        with self.lock:
            self.fail_next = int(counts.get("fail_next", 0))
            self.throttle_next = int(counts.get("throttle_next", 0))

    def to_dict(self) -> dict[str, int]:
        with self.lock:
            return {"fail_next": self.fail_next, "throttle_next": self.throttle_next}


def split_counted(switches: Mapping[str, Any], config_class: type[FaultConfig] = FaultConfig
                  ) -> tuple[dict[str, int], dict[str, Any]]:
    """`switches` as (`CountedFaults` counts, the kit's switches), every one validated
    before anything changes: a bad count or an unknown switch raises the config's error."""
    counts: dict[str, int] = {}
    for key in COUNTED_SWITCHES:
        if key in switches:
            value = switches[key]
            if not _is_int(value) or value < 0:
                raise config_class.error_class(
                    f"'{key}' must be a whole number of calls >= 0, got {value!r}")
            counts[key] = value
    rest = {k: v for k, v in switches.items() if k not in COUNTED_SWITCHES}
    config_class.from_dict(rest)
    return counts, rest
