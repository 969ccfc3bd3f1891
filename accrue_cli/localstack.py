"""Processes that start together and always stop together: the demo, tests, benchmarks.

Dagster's daemon and webserver, Celery workers and the sandboxes spawn children of
their own (code servers, run workers, pool processes), some in new sessions, so
signalling a process group is not enough. `LocalStack` marks every process it starts
with an environment variable, collects each one's whole descendant tree before
signalling (a child whose parent dies first is re-parented and lost), finds marked
orphans too, and escalates from SIGTERM to SIGKILL, so nothing is left holding a
port or a database.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import psutil

MARKER_ENV = "ACCRUE_STACK_MARKER"
STOP_TIMEOUT_S = 15.0


def process_tree(pids: Iterable[int]) -> list[psutil.Process]:
    """The processes and all their descendants, collected before any of them is signalled."""
    found: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in family:
            found.setdefault(proc.pid, proc)
    return list(found.values())


def marked_processes(marker: str) -> list[psutil.Process]:
    """This user's processes whose environment carries `marker`, orphans included."""
    uid, me = os.getuid(), os.getpid()
    found = []
    for proc in psutil.process_iter(["uids"]):
        uids = proc.info.get("uids")
        if proc.pid == me or uids is None or uids.real != uid:
            continue
        try:
            if proc.environ().get(MARKER_ENV) == marker:
                found.append(proc)
        except psutil.Error:  # gone, a zombie, or not readable
            continue
    return found


def _gone(proc: psutil.Process) -> bool:
    """True once the process has exited (a zombie counts: it holds no port and runs no code)."""
    try:
        if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return True
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(proc.pid, os.WNOHANG)  # reap it if it is our own child
    return True


def _signal_and_wait(procs: list[psutil.Process], sig: int, timeout: float
                     ) -> list[psutil.Process]:
    """Send `sig` to each process; those still alive after `timeout` s."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)  # psutil checks the pid was not reused meanwhile
    deadline = time.monotonic() + timeout
    while procs and time.monotonic() < deadline:
        time.sleep(0.1)
        procs = [p for p in procs if not _gone(p)]
    return procs


def terminate(procs: list[psutil.Process], timeout: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM every process, wait up to `timeout` s, SIGKILL the rest; how many were alive."""
    alive = [p for p in procs if not _gone(p)]
    _signal_and_wait(_signal_and_wait(alive, signal.SIGTERM, timeout), signal.SIGKILL, 5)
    return len(alive)


def stop_all(pids: Iterable[int], marker: str | None, timeout: float = STOP_TIMEOUT_S) -> int:
    """Stop the processes, their descendants and any marked orphan; how many were stopped."""
    marked = [p.pid for p in marked_processes(marker)] if marker else []
    stopped = terminate(process_tree([*pids, *marked]), timeout)
    for _ in range(3):  # a process launched while the others were stopping (a run, say)
        late = process_tree(p.pid for p in marked_processes(marker)) if marker else []
        late = [p for p in late if not _gone(p)]
        if not late:
            break
        stopped += terminate(late, timeout=2)
    return stopped


def wait_until(check: Callable[[], Any], timeout: float, what: str, *,
               interval: float = 0.5, explain: Callable[[], str] | None = None) -> Any:
    """Poll `check` until it returns something truthy; TimeoutError naming `what` after."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain else ""
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s{detail}")
        time.sleep(interval)


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class LocalStack:
    """Named, marked child processes with logs under `log_dir`; `stop()` ends every one."""

    def __init__(self, log_dir: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.log_dir = log_dir
        self.marker = f"{os.getpid()}-{secrets.token_hex(8)}"
        self.env = {**(env if env is not None else os.environ), MARKER_ENV: self.marker}
        self.cwd = cwd
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        """Start a child in a session of its own (a Ctrl-C reaches only us; we stop it)."""
        log = open(self.log_path(name), "ab")  # noqa: SIM115 - closed by stop()
        self._logs.append(log)
        child = subprocess.Popen(
            list(args), cwd=self.cwd, env={**self.env, **(env or {})}, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.children[name] = child
        return child

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 40) -> str:
        return log_tail(self.log_path(name), lines)

    def exited(self) -> dict[str, int]:
        """Children that have ended, with their exit codes."""
        return {name: code for name, child in self.children.items()
                if (code := child.poll()) is not None}

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Stop every child, its descendants and marked orphans; how many processes ended."""
        stopped = stop_all([c.pid for c in self.children.values()], self.marker, timeout)
        for child in self.children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)
        for log in self._logs:
            log.close()
        self._logs.clear()
        return stopped

    def leftovers(self) -> list[psutil.Process]:
        """Processes still carrying our marker (none after `stop()`)."""
        return [p for p in marked_processes(self.marker) if not _gone(p)]

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
