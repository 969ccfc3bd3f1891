"""Processes that start together and always stop together: the demo, tests, benchmarks.

Dagster's daemon and webserver, Celery workers and the sandboxes each spawn children
of their own (code servers, run workers, pool processes), some in new sessions, so
signalling a process group is not enough. `LocalStack` remembers every process it
started, collects each one's whole descendant tree before signalling, and escalates
from SIGTERM to SIGKILL, so nothing is left holding a port or a database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import psutil

STOP_GRACE_SECONDS = 15.0


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (children first), those still alive."""
    try:
        root = psutil.Process(pid)
        return [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return []


def stop_processes(processes: Sequence[psutil.Process], grace: float = STOP_GRACE_SECONDS
                   ) -> list[psutil.Process]:
    """SIGTERM every process, SIGKILL what is left after `grace` seconds; returns survivors."""
    alive = []
    for proc in processes:
        try:
            proc.send_signal(signal.SIGTERM)
            alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(alive, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    _, survivors = psutil.wait_procs(alive, timeout=5)
    return list(survivors)


def wait_until(check: Callable[[], object], timeout: float, what: str, *,
               interval: float = 0.5, explain: Callable[[], str] | None = None) -> object:
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


class LocalStack:
    """Named child processes with their logs under `log_dir`; `stop()` ends every one."""

    def __init__(self, log_dir: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.log_dir = log_dir
        self.env = dict(env if env is not None else os.environ)
        self.cwd = cwd
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
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
        path = self.log_path(name)
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def exited(self) -> dict[str, int]:
        """Children that have ended, with their exit codes."""
        return {name: code for name, child in self.children.items()
                if (code := child.poll()) is not None}

    def pids(self) -> set[int]:
        return {p.pid for child in self.children.values() for p in process_tree(child.pid)}

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> list[psutil.Process]:
        """Stop every child and its descendants; returns any process that survived SIGKILL."""
        tree = [p for child in self.children.values() for p in process_tree(child.pid)]
        survivors = stop_processes(tree, grace)
        for child in self.children.values():
            try:
                child.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        for log in self._logs:
            log.close()
        self._logs.clear()
        return survivors

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
