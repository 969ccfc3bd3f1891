"""Child processes: results reported on a marked line, logged children killed and reaped,
SIGTERM unwinding like Ctrl-C.

Benchmarks run what they time (and what they kill) in processes of their own, so a
peak RSS is the child's alone and a SIGKILL hits only what it means to.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULT_MARK = "BENCH-RESULT "  # prefixes the one stdout line a child reports on


class BenchError(RuntimeError):
    """A benchmark step failed in a way the operator can act on; the message says how."""


def report_result(result: Mapping[str, Any]) -> None:
    """The child's side: its result as the one marked line on stdout."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def marked_result(line: str) -> dict[str, Any] | None:
    """The result a marked line carries, None for any other line."""
    if not line.startswith(RESULT_MARK):
        return None
    return dict(json.loads(line[len(RESULT_MARK):]))


def run_child(module: str, spec: Mapping[str, Any], what: str, timeout: float,
              *args: str) -> dict[str, Any]:
    """Run `python -m module args...` to completion with `spec` as JSON on stdin and return
    what it reported (its stderr passes through)."""
    command = [sys.executable, "-m", module, *args]
    try:
        completed = subprocess.run(command, input=json.dumps(spec), stdout=subprocess.PIPE,
                                   text=True, cwd=REPO_ROOT, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what} did not finish in {timeout:.0f} s") from None
    if completed.returncode != 0:
        raise BenchError(
            f"{what} failed (exit code {completed.returncode}); its traceback is above")
    for line in reversed(completed.stdout.splitlines()):
        result = marked_result(line)
        if result is not None:
            return result
    raise BenchError(f"{what} exited without reporting a result")


def read_first_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The first stdout line of a running child, or "" when none came in `timeout` seconds
    (readline itself blocks, so it runs in a thread)."""
    stdout = process.stdout
    assert stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


def close_and_reap(process: subprocess.Popen[str], grace: float = 15.0) -> None:
    """Close stdin (the child's cue to stop cleanly), then terminate, then kill, and reap."""
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


@dataclass
class LoggedChild:
    """A restartable child process whose output goes to a log file; `own_group` puts it in
    a process group of its own, so one signal reaches it and everything it started."""

    name: str
    args: list[str]
    env: dict[str, str] | None
    log: Path
    own_group: bool = False
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.args, env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                            start_new_session=self.own_group)
        self.starts += 1

    def send(self, signum: int) -> None:
        """`signum` to the child (its whole group when it has one); gone already is fine."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            if self.own_group:
                os.killpg(self.process.pid, signum)
            else:
                self.process.send_signal(signum)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL (no graceful anything) and reap."""
        if self.process is not None and (self.own_group or self.running()):
            self.send(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, and SIGKILL if it has not gone within `timeout` seconds."""
        self.send(signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def exit_code(self) -> int | None:
        """The code it exited with by itself, None while it runs (or never started)."""
        return None if self.process is None else self.process.poll()

    def log_tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, so every `finally` cleans up (children,
    sandboxes, scratch files and databases) as on Ctrl-C."""
    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def finish_benchmark(run: Callable[[], Any], report: Callable[[Any], str],
                     output: Path | None, default_name: str) -> int:
    """The benchmarks' common ending, as an exit status: run with signals unwinding like
    Ctrl-C; a BenchError is 1 and an interruption 130 (both after cleaning up); otherwise
    the results are written and the report printed."""
    from benchmarks.support.measure import log, write_results

    try:
        with interrupt_on_sigterm():
            results = run()
    except BenchError as exc:
        log(f"benchmark failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("benchmark interrupted; the sandbox and scratch databases were cleaned up")
        return 130
    written = write_results(results, output, default_name)
    print(report(results))
    log(f"results written to {written}")
    return 0
