"""`accrue demo` keeps its promise: Ctrl-C, SIGTERM or SIGHUP stops every process it started.

The end-to-end tests start the real demo (small seeds, free ports, a temporary
ACCRUE_HOME), signal its process group as a terminal or a supervisor would (once it runs,
and once while it is still starting), and then look for anything left behind: a listening
port, or a process whose command line or environment still mentions the demo's
ACCRUE_HOME. The unit tests cover the pieces that make this hold: stopping a whole process
tree (a grandchild in a new session included), orphans found by the demo's marker, and
signals held while a child is being recorded."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from accrue_cli import demo_orgs, demo_signals, localstack

REPO = Path(__file__).resolve().parents[2]
PORT_ENVS = (
    "ACCRUE_DAGSTER_PORT",
    "ACCRUE_APP_PORT",
    "ACCRUE_MAIL_SMTP_PORT",
    "ACCRUE_MAIL_PORT",
    *(f"ACCRUE_SANDBOX_PORT_{i}" for i in range(1, len(demo_orgs.ORGS) + 1)),
)
START_TIMEOUT_S = 150
EXIT_TIMEOUT_S = 60


# -- helpers ------------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    """Ports nobody listens on now (all bound at once, so they are distinct)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def _port_taken(port: int) -> bool:
    """True while some process listens on the port (bind fails; TIME_WAIT does not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        return _alive(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def _referencing(text: str) -> list[psutil.Process]:
    """Live processes of this user whose command line or environment mentions `text`."""
    found = []
    for proc in psutil.process_iter(["uids"]):
        if proc.pid == os.getpid() or proc.info["uids"] is None:
            continue
        if proc.info["uids"].real != os.getuid():
            continue
        try:
            if not _alive(proc):
                continue
            cmdline = " ".join(proc.cmdline())
            environ = proc.environ()
        except psutil.Error:
            continue
        if text in cmdline or any(text in value for value in environ.values()):
            found.append(proc)
    return found


def _run_workers(procs: list[psutil.Process]) -> list[psutil.Process]:
    found = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if "spawn_main" in " ".join(proc.cmdline()):
                found.append(proc)
    return found


def _describe(procs: list[psutil.Process]) -> str:
    lines = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            lines.append(f"{proc.pid}: {' '.join(proc.cmdline())[:160]}")
    return "\n".join(lines)


def _kill_everything(root: subprocess.Popen[bytes], home: Path) -> None:
    """Last resort for a failing test: SIGKILL the demo, its tree, and anything using home."""
    procs = []
    with contextlib.suppress(psutil.Error):
        parent = psutil.Process(root.pid)
        procs = [parent, *parent.children(recursive=True)]
    procs += _referencing(str(home))
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=10)
    with contextlib.suppress(subprocess.TimeoutExpired):
        root.wait(timeout=5)


def _wait_for(condition: Callable[[], object], timeout: float, what: str, output: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    pytest.fail(f"{what} within {timeout:.0f} s; demo output:\n{output.read_text()}")


def _server_info_ok(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class _DemoRun:
    proc: subprocess.Popen[bytes]
    output: Path
    home: Path
    ports: dict[str, int]


@contextlib.contextmanager
def _running_demo(tmp_path: Path) -> Iterator[_DemoRun]:
    """The real demo, started like `make demo` but small and isolated; killed no matter what."""
    home = tmp_path / "accrue-home"
    output = tmp_path / "demo.out"
    ports = dict(zip(PORT_ENVS, _free_ports(len(PORT_ENVS)), strict=True))
    drop = ("DAGSTER_HOME", "ACCRUE_DATABASE_URL", localstack.MARKER_ENV)
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update({name: str(port) for name, port in ports.items()})
    env.update(ACCRUE_HOME=str(home), PYTHONUNBUFFERED="1")
    env[demo_orgs.SCALE_ENV] = "0.02"
    with open(output, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "accrue_cli", "demo"], cwd=REPO, env=env,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            # As from a terminal, even when these tests run under nohup (SIGHUP inherited as
            # ignored, which the demo rightly honours as "survive a closed terminal").
            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
        )
    try:
        yield _DemoRun(proc, output, home, ports)
    finally:
        _kill_everything(proc, home)


# -- end to end ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "reason"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl-C")],
    ids=["sigterm-to-group", "ctrl-c"],
)
def test_demo_stop_leaves_no_process_and_no_port(
    tmp_path: Path, sig: signal.Signals, reason: str
) -> None:
    with _running_demo(tmp_path) as run:
        proc, output, home, ports = run.proc, run.output, run.home, run.ports
        dagster_port = ports["ACCRUE_DAGSTER_PORT"]
        _wait_for(lambda: "Accrue demo is running" in output.read_text() or proc.poll() is not None,
                  START_TIMEOUT_S, "the demo did not say it is running", output)
        assert proc.poll() is None, f"the demo exited early:\n{output.read_text()}"
        assert _server_info_ok(dagster_port), "Dagster does not answer /server_info"
        assert all(_port_taken(port) for port in ports.values()), ports

        demo_proc = psutil.Process(proc.pid)
        children = set(demo_proc.children())

        def grandchildren() -> list[psutil.Process]:
            return [p for p in demo_proc.children(recursive=True) if p not in children]

        # Dagster's code servers: the descendants a plain killpg of the children misses.
        _wait_for(lambda: grandchildren(), 60, "no Dagster code server appeared", output)
        # Give the sensors a moment to launch a first sync, so a run worker (a multiprocessing
        # child of a code server) is usually among the processes to stop.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _run_workers(grandchildren()):
            time.sleep(0.5)
        before = [demo_proc, *demo_proc.children(recursive=True)]
        assert len(before) >= 9, _describe(before)  # demo, 3 sandboxes, 2 Dagster, concierge, ...
        assert _referencing(str(home)), "the check below would see nothing: wrong home?"

        os.killpg(proc.pid, sig)  # the demo leads its own group, as `make demo` does in a shell
        try:
            proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the demo still runs {EXIT_TIMEOUT_S} s after {reason}:\n"
                        f"{output.read_text()}")

        text = output.read_text()
        assert proc.returncode == 0, text
        assert f"Stopping the demo ({reason})" in text, text
        assert "Demo stopped:" in text, text
        survivors = [p for p in before if _alive(p)]
        assert not survivors, f"still running after the demo exited:\n{_describe(survivors)}"
        busy = [port for port in ports.values() if _port_taken(port)]
        assert not busy, f"ports still in use after {reason}: {busy}"
        leftovers = _referencing(str(home))
        assert not leftovers, f"processes still using {home}:\n{_describe(leftovers)}"


def _sandboxes(demo_proc: psutil.Process) -> list[psutil.Process]:
    found = []
    for child in demo_proc.children():
        with contextlib.suppress(psutil.Error):
            if "sandbox" in child.cmdline():
                found.append(child)
    return found


def test_demo_stopped_while_starting_leaves_nothing(tmp_path: Path) -> None:
    """SIGHUP (a closed terminal) during sandbox start-up: nothing half-started survives."""
    with _running_demo(tmp_path) as run:
        demo_proc = psutil.Process(run.proc.pid)
        # A sandbox, not just any child: importing Dagster runs `file -b python` (croniter's
        # 32-bit probe), a short-lived child the demo rightly does not count as started.
        _wait_for(lambda: _sandboxes(demo_proc), 60, "the demo started no sandbox", run.output)
        assert "Accrue demo is running" not in run.output.read_text()
        started = [demo_proc, *demo_proc.children(recursive=True)]

        os.killpg(run.proc.pid, signal.SIGHUP)
        try:
            run.proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the demo still runs after SIGHUP:\n{run.output.read_text()}")

        text = run.output.read_text()
        assert run.proc.returncode == 0, text
        assert "Stopping the demo (SIGHUP)" in text, text
        assert not [p for p in started if _alive(p)], _describe(started)
        assert not [port for port in run.ports.values() if _port_taken(port)]
        leftovers = _referencing(str(run.home))
        assert not leftovers, _describe(leftovers)


# -- units --------------------------------------------------------------------------------

TREE_SCRIPT = """
import os, signal, subprocess, sys, time
level, record = int(sys.argv[1]), sys.argv[2]
if level == 0:  # a child of ours, and a sibling that ignores SIGTERM (needs SIGKILL)
    subprocess.Popen([sys.executable, __file__, "1", record])
    subprocess.Popen([sys.executable, __file__, "9", record])
elif level == 1:  # its child starts a grandchild in a new session, like a run worker may
    subprocess.Popen([sys.executable, __file__, "2", record], start_new_session=True)
elif level == 9:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(record, "a") as f:
    f.write(f"{os.getpid()}\\n")
time.sleep(300)
"""


def _spawn_tree(tmp_path: Path, env: dict[str, str] | None = None) -> tuple[
    subprocess.Popen[bytes], list[int]
]:
    script, record = tmp_path / "tree.py", tmp_path / "pids"
    script.write_text(TREE_SCRIPT)
    root = subprocess.Popen([sys.executable, str(script), "0", str(record)], env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pids = [int(x) for x in record.read_text().split()] if record.exists() else []
        if len(pids) == 4:
            return root, pids
        time.sleep(0.05)
    root.kill()
    pytest.fail("the process tree did not start")


def test_terminate_stops_a_whole_tree_including_a_new_session(tmp_path: Path) -> None:
    root, pids = _spawn_tree(tmp_path)
    try:
        sessions = {os.getsid(pid) for pid in pids}
        assert len(sessions) == 2, "the grandchild should be in a session of its own"
        procs = localstack.process_tree([root.pid])
        assert {p.pid for p in procs} == set(pids)

        started = time.monotonic()
        assert localstack.terminate(procs, timeout=2) == 4
        assert time.monotonic() - started < 10
        assert not [pid for pid in pids if _pid_alive(pid)]
    finally:
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        root.wait(timeout=10)


def test_stop_all_finds_orphans_by_marker(tmp_path: Path) -> None:
    """A process whose parent already died is no one's descendant: the marker finds it."""
    marker = f"test-{os.getpid()}-{time.monotonic_ns()}"
    root, pids = _spawn_tree(tmp_path, env={**os.environ, localstack.MARKER_ENV: marker})
    try:
        root.kill()  # its children are orphaned now
        root.wait(timeout=10)
        orphans = [pid for pid in pids if pid != root.pid]
        assert {p.pid for p in localstack.marked_processes(marker)} == set(orphans)

        assert localstack.stop_all([], marker, timeout=2) == 3
        assert not [pid for pid in orphans if _pid_alive(pid)]
        assert localstack.marked_processes(marker) == []
    finally:
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()


def test_stop_signals_hold_until_the_child_is_recorded_then_stop_once() -> None:
    before = signal.getsignal(signal.SIGTERM)
    signals = demo_signals.StopSignals()
    signals.install()
    recorded = []
    try:
        with pytest.raises(demo_signals.DemoStopped) as stopped, signals.held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler has run by now, and must not have raised
            recorded.append("child")
        assert recorded == ["child"]
        assert stopped.value.describe() == "SIGTERM"
        assert isinstance(stopped.value, KeyboardInterrupt)
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal while stopping is ignored
        time.sleep(0.05)
    finally:
        signals.restore()
    assert signal.getsignal(signal.SIGTERM) == before


def test_scale_must_be_a_positive_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(demo_orgs.SCALE_ENV, "0.1")
    assert demo_orgs.opportunities_scale() == 0.1
    monkeypatch.setenv(demo_orgs.SCALE_ENV, "-1")
    with pytest.raises(SystemExit, match=demo_orgs.SCALE_ENV):
        demo_orgs.opportunities_scale()


def test_demo_tenants_sync_every_fifteen_minutes(tmp_path: Path) -> None:
    """A frequency an admin would pick; an older demo home's 5 minutes is upgraded."""
    from accrue import db, tenants

    engine = db.make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    db.upgrade(engine)
    ports = {t.tenant_id: t.port for t in demo_orgs.DEMO_TENANTS}
    try:
        demo_orgs.register_demo_tenants(engine, ports)
        for t in demo_orgs.DEMO_TENANTS:
            assert tenants.require_tenant(engine, t.tenant_id).sync_frequency_minutes == 15
            assert demo_orgs.tenant_data(engine, t.tenant_id) is None
            assert demo_orgs.recommendation_count(engine, t.tenant_id) == 0
        acme = demo_orgs.DEMO_TENANTS[0].tenant_id
        tenants.set_sync_frequency(engine, acme, 5)
        demo_orgs.register_demo_tenants(engine, ports)
        assert tenants.require_tenant(engine, acme).sync_frequency_minutes == 15
        tenants.set_sync_frequency(engine, acme, 60)  # an admin's own choice is kept
        demo_orgs.register_demo_tenants(engine, ports)
        assert tenants.require_tenant(engine, acme).sync_frequency_minutes == 60
    finally:
        engine.dispose()


def test_first_data_means_every_object_synced_successfully(tmp_path: Path) -> None:
    """A running or failed sync is not "data in"; one success per object the tenant syncs
    is (an optional import it did not choose is never waited for)."""
    from accrue import db, tenants
    from accrue.warehouse import Warehouse

    engine = db.make_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    db.upgrade(engine)
    try:
        tenants.add_tenant(engine, "acme-demo", "Acme", "salesforce")
        store = Warehouse(engine)
        synced = tenants.require_tenant(engine, "acme-demo").synced_objects()
        assert "activity" not in synced
        *first, last = synced
        for name in first:
            store.finish_run(store.start_run("acme-demo", name), "succeeded")
        store.finish_run(store.start_run("acme-demo", last), "failed", error="boom")
        running = store.start_run("acme-demo", last)
        assert demo_orgs.tenant_data(engine, "acme-demo") is None
        store.finish_run(running, "succeeded")
        assert demo_orgs.tenant_data(engine, "acme-demo") == (len(synced), 0)
    finally:
        engine.dispose()
