"""The chaos run's process control and fault planning, the same for every CRM.

Why apart from `benchmarks.chaos`: the fork server, the SIGKILL schedule and the
random fault mix do not depend on which CRM is under test, so they live once here;
`benchmarks.chaos` runs trials with them for every registered CRM.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.chaos_worker import DATABASE_URL_ENV
from connectors.sandbox_kit.harness import RunningCrmSandbox

REPO_ROOT = Path(__file__).resolve().parent.parent
RECONCILE_RATE = 0.2  # share of worker syncs run with the nightly id reconciliation
# Kinds of the kit's injected counts that are failures or back-dated writes; latency is
# counted apart (it is every call once switched on).
FAILURE_KINDS = (
    "http_500", "http_503", "rate_limit", "quota_exceeded", "session_expiry",
    "dropped_connection", "late_commit",
)


class ChaosError(RuntimeError):
    """A harness step failed (not a finding about the sync): the message says what."""


# ============================================================ fault plan


@dataclass
class FaultPlan:
    """One trial's fault switches (the kit's names) and the worker settings with them."""

    switches: dict[str, Any]
    request_timeout: float | None  # set in "timeout" trials, below the latency jitter

    def describe(self) -> str:
        shown = {k: v for k, v in self.switches.items() if k != "seed" and v}
        if self.request_timeout is not None:
            shown["worker_timeout_s"] = self.request_timeout
        return json.dumps(shown, sort_keys=True)


def plan_faults(rng: random.Random, fault_seed: int) -> FaultPlan:
    """A random mix of `FaultConfig` switches: always some 5xx, plus any of the counted
    and network faults (every sandbox takes these names through `set_faults`)."""
    switches: dict[str, Any] = {
        "seed": fault_seed,
        "error_rate": rng.choice([0.02, 0.03, 0.05]),
        "drop_connection_rate": rng.choice([0.0, 0.01, 0.02, 0.04]),
        "late_commit_rate": rng.choice([0.0, 0.1, 0.25, 0.5]),
        "late_commit_minutes": round(rng.uniform(0.5, 5.0), 1),
        "latency_ms": rng.randint(0, 10),
        "latency_jitter_ms": rng.randint(0, 30),
    }
    if rng.random() < 0.5:
        calls = rng.randint(1, 3)
        switches.update(rate_limit_after=rng.randint(3, 60), rate_limit_calls=calls,
                        rate_limit_repeat=rng.random() < 0.5)
    if rng.random() < 0.4:
        calls = rng.randint(1, 4)
        switches.update(quota_exceeded_after=rng.randint(10, 150), quota_exceeded_calls=calls,
                        quota_exceeded_repeat=rng.random() < 0.3)
    if rng.random() < 0.5:
        switches.update(session_expiry_after=rng.randint(5, 80), session_expiry_calls=1,
                        session_expiry_repeat=rng.random() < 0.5)
    timeout = None
    if rng.random() < 0.25:
        # Timeouts: about one call in eight takes longer than the worker waits (ReadTimeout).
        switches["latency_jitter_ms"] = 300
        timeout = 0.26
    return FaultPlan(switches, timeout)


def injected_faults(org: RunningCrmSandbox) -> dict[str, int] | None:
    """The sandbox's counts of injected faults by kind since the switches were last set."""
    return {k: v for k, v in org.fault_counts().items() if v}


# ============================================================ files and the worker


@dataclass
class Target:
    """One warehouse under test, for one CRM, and the files its worker writes."""

    backend: str
    url: str
    tenant: str
    workdir: Path
    crm: str = ""

    @property
    def name(self) -> str:
        return f"{self.crm}-{self.backend}" if self.crm else self.backend

    @property
    def journal(self) -> Path:
        return self.workdir / f"journal-{self.name}.jsonl"

    @property
    def events(self) -> Path:
        return self.workdir / f"worker-{self.name}.events.jsonl"

    @property
    def log(self) -> Path:
        return self.workdir / f"worker-{self.name}.log"


class TailReader:
    """New complete lines of a file another process appends to, from where the last read
    stopped (a line still being written waits for the next read)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as tail:
            tail.seek(self.offset)
            chunk = tail.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        return complete.decode("utf-8", errors="replace").splitlines()


class EventReader(TailReader):
    """The worker's JSON-lines events."""

    def read(self) -> list[dict[str, Any]]:
        parsed = []
        for line in self.lines():
            with contextlib.suppress(ValueError):
                parsed.append(json.loads(line))
        return parsed


# Every adapter logs its retries as "<CRM> call failed (attempt N): <cause>; retrying".
RETRY_LINE = re.compile(r"call failed \(attempt \d+\): (.+?); retrying")


def retry_causes(reader: TailReader) -> Counter[str]:
    """What the adapter retried in the worker log since the last read (timeouts included)."""
    causes: Counter[str] = Counter()
    for line in reader.lines():
        match = RETRY_LINE.search(line)
        if match:
            causes[match.group(1)[:80]] += 1
    return causes


@dataclass
class KillStats:
    kills: int = 0
    starts: int = 0
    crashes: list[str] = field(default_factory=list)  # worker exits nobody caused
    syncs: Counter[str] = field(default_factory=Counter)


class ForkServer:
    """`benchmarks.chaos_worker --fork-server`: forks a fresh sync process on demand.

    It is started once per target and never killed; the processes it forks are. The
    connection file holds the sandbox's secrets (mode 0600); argv only names it.
    """

    def __init__(self, target: Target, connection_file: Path, objects: Sequence[str]) -> None:
        self.target = target
        env = dict(os.environ)
        env[DATABASE_URL_ENV] = target.url
        command = [
            sys.executable, "-m", "benchmarks.chaos_worker",
            "--fork-server", str(target.events), "--connection", str(connection_file),
            "--objects", ",".join(objects), "--tenant", target.tenant,
            "--journal", str(target.journal), "--reconcile-rate", str(RECONCILE_RATE),
        ]
        self._log = target.log.open("a", encoding="utf-8")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._log, env=env, cwd=REPO_ROOT, text=True)
        self._answer()  # {"ready": pid}

    def _ask(self, message: Mapping[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise ChaosError(f"the worker fork server died: {tail(self.target.log)}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def spawn(self, seed: int, request_timeout: float | None) -> int:
        return int(self._ask({"cmd": "spawn", "seed": seed,
                              "request_timeout": request_timeout})["pid"])

    def reap(self, pid: int) -> tuple[int | None, int | None]:
        """Wait for a worker to be gone: (signal that ended it, exit code)."""
        answer = self._ask({"cmd": "reap", "pid": pid})
        return answer["signal"], answer["code"]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    return ""


def run_worker_with_kills(
    server: ForkServer, plan: FaultPlan, rng: random.Random, seconds: float,
    reader: EventReader,
) -> KillStats:
    """Run the worker for `seconds`, SIGKILLing it at random moments and restarting it.

    Most kills land 0.05–0.8 s after a worker starts (mid-sync), some after
    1–2.5 s (after whole syncs); the worker is killed once more when the time is
    up, wherever it is. A worker is always gone (reaped) before the next starts.
    """
    stats = KillStats()
    deadline = time.monotonic() + seconds
    while True:
        pid = server.spawn(rng.randrange(2**31), plan.request_timeout)
        stats.starts += 1
        gap = rng.uniform(0.05, 0.8) if rng.random() < 0.7 else rng.uniform(1.0, 2.5)
        remaining = deadline - time.monotonic()
        last = gap >= remaining
        time.sleep(max(0.0, min(gap, remaining)))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        ended_by, code = server.reap(pid)
        if ended_by == signal.SIGKILL:
            stats.kills += 1
        else:
            stats.crashes.append(f"worker {pid} ended by itself (signal {ended_by}, code "
                                 f"{code}): {tail(server.target.log)}")
        for event in reader.read():
            if event.get("event") == "sync":
                stats.syncs[str(event.get("status"))] += 1
        if last:
            return stats
