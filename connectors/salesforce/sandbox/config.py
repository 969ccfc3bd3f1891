"""Run-time settings of one sandbox, persisted in its state file.

Everything an operator (or a test, or a later fault-injection switch) may
change while the server runs lives here, so one admin endpoint can read and
change it and a restart keeps it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import ApiError
from .faults import FaultConfig

DEFAULT_USERNAME = "admin@sandbox.accrue.local"
DEFAULT_PASSWORD = "sandbox-password"
DEFAULT_SECURITY_TOKEN = "SANDBOXTOKEN"
# Org and integration user exist "since" this instant, so that two state files
# built from the same seed are identical, audit fields included.
ORG_EPOCH = "2020-01-06T09:00:00.000+0000"

# name → (minimum, maximum) for the integer settings.
_BOUNDS: dict[str, tuple[int, int]] = {
    "page_size": (1, 2000),
    "api_daily_limit": (1, 10_000_000),
    "session_lifetime_seconds": (1, 30 * 86400),
    "query_locator_ttl_seconds": (1, 86400),
    "max_query_locators": (1, 1_000_000),
    "bulk_in_progress_polls": (0, 1000),
    "bulk_fault_every": (1, 1_000_000),
}
# Bulk API 2.0 job faults (bulk.py): "" none, "fail", "stuck" (InProgress for ever), "abort".
BULK_FAULTS = ("", "fail", "stuck", "abort")


@dataclass
class SandboxConfig:
    """Tunable behaviour; `extra` keeps keys written by newer sandbox versions."""

    page_size: int = 2000
    api_daily_limit: int = 100_000
    session_lifetime_seconds: int = 7200
    query_locator_ttl_seconds: int = 900
    max_query_locators: int = 10_000
    org_name: str = "Accrue Sandbox"
    bulk_in_progress_polls: int = 0  # polls that see a Bulk job InProgress before it completes
    bulk_fault: str = ""  # one of BULK_FAULTS, applied to every `bulk_fault_every`-th job
    bulk_fault_every: int = 1
    faults: FaultConfig = field(default_factory=FaultConfig)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        data["faults"] = self.faults.to_dict()
        return {**extra, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SandboxConfig:
        known = {f.name for f in fields(cls)} - {"extra"}
        config = cls(extra={k: v for k, v in data.items() if k not in known})
        return config.updated({k: v for k, v in data.items() if k in known})

    def updated(self, changes: dict[str, Any]) -> SandboxConfig:
        """A validated copy with `changes` applied; unknown keys are rejected."""
        known = {f.name for f in fields(self)} - {"extra"}
        values = self.to_dict()
        for key, value in changes.items():
            if key not in known and key not in self.extra:
                raise ApiError(400, "INVALID_FIELD", f"Unknown sandbox setting '{key}'")
            if key in _BOUNDS:
                low, high = _BOUNDS[key]
                if isinstance(value, bool) or not isinstance(value, int) or not (
                    low <= value <= high
                ):
                    raise ApiError(400, "INVALID_FIELD",
                                   f"'{key}' must be an integer between {low} and {high}")
            elif key == "org_name" and (not isinstance(value, str) or not value.strip()):
                raise ApiError(400, "INVALID_FIELD", "'org_name' must be a non-empty string")
            elif key == "bulk_fault" and value not in BULK_FAULTS:
                raise ApiError(400, "INVALID_FIELD",
                               f"'bulk_fault' must be one of {', '.join(map(repr, BULK_FAULTS))}")
            elif key == "faults":
                value = FaultConfig.from_dict(value)  # replaces all switches; raises a 400
            values[key] = value
        values["faults"] = FaultConfig.from_dict(values["faults"])
        extra = {k: v for k, v in values.items() if k not in known}
        return SandboxConfig(extra=extra, **{k: values[k] for k in known})
