"""The server the push benchmarks load and kill: `accrue app` (gunicorn) with production
settings, in a process group of its own so one SIGKILL takes the master and every worker;
and the machine's CPU split between it, its clients and PostgreSQL."""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from benchmarks.support.processes import BenchError, LoggedChild

START_TIMEOUT_SECONDS = 60.0
# Far above any rate this machine reaches: still counted in Redis on every push.
BENCH_RATE_LIMIT = "1000000 per minute"


class BenchSkipped(BenchError):
    """A service the benchmark needs is not there: skipped with the reason, like sync_bench
    skips PostgreSQL, so `make bench` still runs the others."""


@dataclass
class Gunicorn:
    """`accrue app` (gunicorn) in its own process group, so one signal reaches the master
    and every worker at once."""

    port: int
    env: dict[str, str]
    workers: int
    threads: int
    log: Path
    child: LoggedChild = field(init=False)

    def __post_init__(self) -> None:
        self.child = LoggedChild(
            "gunicorn",
            [sys.executable, "-m", "accrue_cli", "app", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(self.workers),
             "--threads", str(self.threads)],
            self.env, self.log, own_group=True)

    def start(self) -> None:
        self.child.start()

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.child.running():
                raise BenchError("gunicorn exited while starting; its log ends:\n"
                                 f"{self.child.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            time.sleep(0.05)
        raise BenchError(f"gunicorn did not answer /healthz within {timeout:.0f} s")

    def kill(self) -> None:
        """SIGKILL the master and all its workers (no graceful anything), and reap."""
        self.child.kill()

    def stop(self) -> None:
        self.child.stop(timeout=20)

    def cpu_seconds(self) -> float:
        if self.child.process is None:
            return 0.0
        return _tree_cpu(psutil.Process(self.child.process.pid))


def _tree_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def _backend_cpu(engine: Engine) -> dict[int, float]:
    """CPU of the PostgreSQL backends serving the benchmark's database, by pid (the
    server's own processes and other databases' backends are not ours)."""
    with engine.connect() as conn:
        pids = conn.execute(sa.text("SELECT pid FROM pg_stat_activity "
                                    "WHERE datname = current_database()")).scalars().all()
    found = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            found[pid] = times.user + times.system
    return found


@dataclass
class CpuMeter:
    """Machine CPU over a round, split into server, clients, PostgreSQL and the rest."""

    server: Gunicorn
    engine: Engine
    began: dict[str, float] = field(default_factory=dict)
    backends: dict[int, float] = field(default_factory=dict)

    def _now(self) -> dict[str, float]:
        machine = psutil.cpu_times()
        backends = _backend_cpu(self.engine)
        postgres = sum(cpu - self.backends.get(pid, 0.0) for pid, cpu in backends.items())
        self.backends = backends
        return {"wall": time.time(), "busy": sum(machine) - machine.idle - machine.iowait,
                "server": self.server.cpu_seconds(), "postgres": postgres,
                "bench": sum(psutil.Process().cpu_times()[:2])}

    def start(self) -> None:
        self.began = self._now()

    def stop(self, clients_cpu: float) -> dict[str, float]:
        end = self._now()
        d = {k: end[k] - self.began[k] for k in end}
        d["postgres"] = end["postgres"]  # the backends' CPU since start()
        cores = os.cpu_count() or 1
        own = d["server"] + d["postgres"] + d["bench"] + clients_cpu
        return {"busy_percent": 100 * d["busy"] / (d["wall"] * cores),
                "server_cpu": d["server"], "clients_cpu": clients_cpu,
                "postgres_cpu": d["postgres"], "other_cpu": max(0.0, d["busy"] - own),
                "wall": d["wall"], "load_avg": os.getloadavg()[0]}


# ============================================================ one round



def server_env(database_url: str, redis_url: str, keys: str, home: Path) -> dict[str, str]:
    """Production settings (the app refuses to start otherwise), no CRM sandbox."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("ACCRUE_") and k.endswith("_SANDBOX_URL"))}
    env.update({
        "ACCRUE_ENV": "production", "ACCRUE_APP_ENV": "production",
        "ACCRUE_HOME": str(home), "ACCRUE_DATABASE_URL": database_url,
        "ACCRUE_SECRET_KEYS": keys, "ACCRUE_APP_SECRET_KEY": secrets.token_urlsafe(48),
        "ACCRUE_APP_PUBLIC_URL": "https://push-bench.invalid",
        "ACCRUE_RATELIMIT_STORAGE_URI": redis_url, "ACCRUE_SMTP_HOST": "127.0.0.1",
        "ACCRUE_PUSH_RATE_LIMIT": BENCH_RATE_LIMIT,
    })
    return env


def check_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=3).ping()
    except redis.RedisError as exc:
        raise BenchSkipped(f"Redis at {url} does not answer ({exc}): production counts rate "
                         "limits there; start it or pass --redis-url") from None
