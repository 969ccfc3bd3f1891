"""`make chaos`, push mode: the push agent and the push API under SIGKILL, then the
warehouse compared with the customer's database, record by record.

Why: the push path promises what the connectors promise (nothing lost, nothing applied
twice, deletes flagged, the newest version kept), across three processes that can each
die at any moment: the agent (`accrue-agent`: reads the source, pushes, checkpoints
after each acknowledgment), the push API (gunicorn: commits a batch to the inbox before
answering) and the processor (`accrue push process`: inbox to crm_* tables, cursor in the
same transaction). One trial, per warehouse backend:

1. a customer database (`connectors.sandbox_kit.agent_db`, SQLite) is seeded, or kept
   from the previous trial, and a mutator thread changes it all along (new, edited,
   soft- and hard-deleted records, renamed users);
2. the server, an agent looping with `--every 1` and a processor loop run as child
   processes; at random moments one of them is SIGKILLed and restarted;
3. the mutator stops; with nothing killed any more, the agent runs once, then the
   processor;
4. every record of the source is compared with the warehouse (`compare_with_source`):
   0 missing, 0 extra live, 0 differing fields or deleted flags.

`python -m benchmarks.chaos_push --help`; `make chaos` runs it after the CRMs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from accrue import crypto
from accrue.db import make_engine, upgrade
from accrue.push.process import process_inbox
from accrue.schema import crm_change_log, push_inbox
from accrue.warehouse import Warehouse
from benchmarks.chaos_cli import (
    SCRATCH_PREFIX,
    add_common_arguments,
    check_backends,
    print_mismatches,
    verdict,
)
from benchmarks.chaos_compare import Comparison, check_duplicates, differences, rows_of
from benchmarks.chaos_process import ChaosError
from benchmarks.push_bench import DEFAULT_REDIS_URL, push_tenant
from benchmarks.push_bench_server import Gunicorn, check_redis, server_env
from benchmarks.support.databases import scratch_warehouses
from benchmarks.support.processes import REPO_ROOT, BenchError, LoggedChild, free_port
from connectors.sandbox_kit import agent_db

SECRET_ENV = "ACCRUE_CHAOS_PUSH_SECRET"
SOURCE_ENV = "ACCRUE_CHAOS_PUSH_SOURCE_URL"


def _plain(value: Any) -> Any:
    """A value as both sides can be compared: instants in naive UTC, ids as text."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _plain_row(row: Mapping[str, Any], names: list[str]) -> dict[str, Any]:
    return {name: _plain(row.get(name)) for name in names}


def compare_with_source(warehouse: Warehouse, tenant: str, source: sa.Engine) -> Comparison:
    """Every record of the customer's database against the warehouse, exactly."""
    comparison = Comparison()
    for object_name, truth in agent_db.expected(source).items():
        ours = rows_of(warehouse, tenant, object_name)
        check_duplicates(warehouse, tenant, object_name, comparison)
        for source_id, wanted in truth.items():
            comparison.rows += 1
            row = ours.get(source_id)
            state = "deleted" if wanted.deleted else "live"
            if row is None:
                comparison.add(f"missing_{state}", object_name, source_id,
                               "in the source, not in the warehouse")
                continue
            if bool(row["is_deleted"]) != wanted.deleted:
                comparison.add("deleted_flag", object_name, source_id,
                               f"warehouse is_deleted={row['is_deleted']}, source "
                               f"deleted={wanted.deleted}")
                continue
            if wanted.deleted:
                continue
            names = sorted(wanted.fields)
            differing = differences(_plain_row(row, names), _plain_row(wanted.fields, names),
                                    names)
            if differing:
                comparison.add("fields_live", object_name, source_id, differing)
        for source_id, row in ours.items():
            if source_id not in truth:
                comparison.rows += 1
                if not row["is_deleted"]:
                    comparison.add("extra_live", object_name, source_id,
                                   "gone from the source, live in the warehouse")
    comparison.quarantined = warehouse.quarantine_count(tenant)
    return comparison


# ============================================================ the SIGKILL run


def check_alive(child: LoggedChild) -> None:
    """A child that exited by itself is a harness problem, shown with its log."""
    code = child.exit_code()
    if code is not None:
        raise ChaosError(f"{child.name} exited ({code}); its log ends:\n"
                         f"{child.log_tail(1500)}")


@dataclass
class PushTrial:
    backend: str
    trial: int
    mutations: int = 0
    kills: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    rows: int = 0
    mismatches: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # history of the first mismatches
    quarantined: int = 0
    seconds: float = 0.0


@dataclass
class Setup:
    """One backend's warehouse, push tenant, customer database and agent mapping."""

    backend: str
    warehouse_url: str
    workdir: Path
    tenant: str
    source_url: str
    config: Path
    env: dict[str, str]
    server: Gunicorn


def _processor_loop(warehouse_url: str, tenant: str) -> None:
    """The processor as a child process: apply the inbox, again and again, until killed."""
    engine = make_engine(warehouse_url)
    while True:
        try:
            process_inbox(engine, tenant)
        except sa.exc.OperationalError as exc:  # SQLite busy with the server's inserts
            print(f"processor: {str(exc).splitlines()[0]}", flush=True)
        time.sleep(0.2)


def prepare(backend: str, warehouse_url: str, workdir: Path, options: argparse.Namespace,
            keys: str) -> Setup:
    engine = make_engine(warehouse_url)
    try:
        upgrade(engine)
        tenant = f"chaos-push-{backend}"
        client_id, secret = push_tenant(engine, tenant, crypto.Keyring.parse(keys))
    finally:
        engine.dispose()
    source_url = f"sqlite:///{workdir / f'c2crm-{backend}.db'}"
    agent_db.build(source_url, options.opportunities, seed=options.seed).dispose()
    server = Gunicorn(free_port(), server_env(warehouse_url, options.redis_url, keys, workdir),
                      workers=2, threads=4, log=workdir / f"gunicorn-{backend}.log")
    config = workdir / f"agent-{backend}.toml"
    config.write_text(agent_db.mapping_toml(
        url=f"http://127.0.0.1:{server.port}", tenant=tenant, client_id=client_id,
        secret_env=SECRET_ENV, database_url_env=SOURCE_ENV,
        checkpoint=f"agent-{backend}.checkpoint.json", batch_size=options.batch))
    env = {**os.environ, SECRET_ENV: secret, SOURCE_ENV: source_url}
    return Setup(backend, warehouse_url, workdir, tenant, source_url, config, env, server)


def run_trial(setup: Setup, trial: int, options: argparse.Namespace) -> PushTrial:
    began = time.monotonic()
    rng = random.Random(f"{options.seed}/{setup.backend}/{trial}")
    result = PushTrial(setup.backend, trial)
    python = sys.executable
    agent = LoggedChild("agent", [python, "-m", "accrue.agent.cli", "run", "--config",
                            str(setup.config), "--every", "1"], setup.env,
                        setup.workdir / f"agent-{setup.backend}.log")
    processor = LoggedChild("processor", [python, "-m", "benchmarks.chaos_push", "--processor",
                                    setup.warehouse_url, setup.tenant], setup.env,
                            setup.workdir / f"processor-{setup.backend}.log")
    source = sa.create_engine(setup.source_url)
    mutator = agent_db.Mutator(source, seed=rng.randrange(1 << 30))
    stop = threading.Event()
    failures: list[BaseException] = []

    def mutate() -> None:
        while not stop.is_set():
            try:
                mutator.step()
                result.mutations += 1
            except sa.exc.OperationalError:  # the agent's read holds the file a moment
                pass
            except Exception as exc:  # noqa: BLE001 - reported as a harness failure below
                failures.append(exc)
                return
            stop.wait(rng.uniform(0.005, 0.05))

    setup.server.start()
    setup.server.wait_ready()
    agent.start()
    processor.start()
    writer = threading.Thread(target=mutate, name="mutator", daemon=True)
    writer.start()
    kills = {"server": 0, "agent": 0, "processor": 0}
    try:
        deadline = time.monotonic() + options.trial_seconds
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.5, 3.0))
            check_alive(agent)
            check_alive(processor)
            # The agent twice as often: its crash windows (between acknowledgment, checkpoint
            # and the next read) are the subtle ones, and it restarts fastest.
            victim = rng.choices(("server", "agent", "processor"), weights=(1, 2, 1))[0]
            kills[victim] += 1
            if victim == "server":
                setup.server.kill()
                setup.server.start()
                setup.server.wait_ready()
            else:
                child = agent if victim == "agent" else processor
                child.kill()
                child.start()
    finally:
        stop.set()
        writer.join()
        agent.kill()
        processor.kill()
    result.kills = kills
    if failures:
        raise ChaosError(f"the mutator failed: {failures[0]!r}")
    # Quiet: the agent once, to the end, then the processor; then compare.
    finish = subprocess.run([python, "-m", "accrue.agent.cli", "run", "--config",
                             str(setup.config), "--once"], env=setup.env, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=600)
    setup.server.stop()
    if finish.returncode != 0:
        raise ChaosError(f"the final agent run failed ({finish.returncode}):\n"
                         f"{finish.stdout[-1500:]}{finish.stderr[-1500:]}")
    engine = make_engine(setup.warehouse_url)
    try:
        process_inbox(engine, setup.tenant)
        comparison = compare_with_source(Warehouse(engine), setup.tenant, source)
        with engine.connect() as conn:
            result.batches = conn.scalar(sa.select(sa.func.count()).select_from(push_inbox)
                                         .where(push_inbox.c.tenant_id == setup.tenant)) or 0
    finally:
        engine.dispose()
        source.dispose()
    result.rows = comparison.rows
    result.mismatches = [str(m) for m in comparison.mismatches]
    if comparison.mismatches:  # what the inbox and the change log hold for the first few
        engine = make_engine(setup.warehouse_url)
        try:
            result.details = [f"      {line}" for m in comparison.mismatches[:3]
                                  for line in history(engine, setup.tenant, m.object_name,
                                                      m.source_id or "")]
        finally:
            engine.dispose()
    result.quarantined = comparison.quarantined
    result.seconds = time.monotonic() - began
    return result


def history(engine: sa.Engine, tenant: str, object_name: str, source_id: str) -> list[str]:
    """A record's pushes (inbox id, received, processed, action, occurred_at) and its
    versions in the change log: what a mismatch report needs to say where it went wrong."""
    lines = [f"{object_name}/{source_id}:"]
    with engine.connect() as conn:
        for row in conn.execute(sa.select(push_inbox).where(push_inbox.c.tenant_id == tenant)
                                .order_by(push_inbox.c.id)).mappings():
            for record in json.loads(row["body"])["records"]:
                if record["object"] == object_name and str(record["id"]) == source_id:
                    lines.append(f"pushed: inbox {row['id']} received {row['received_at']} "
                                 f"processed {row['processed_at']} {record['action']} "
                                 f"occurred_at {record.get('occurred_at')}")
        log = crm_change_log
        for row in conn.execute(sa.select(log).where(
                log.c.tenant_id == tenant, log.c.object_name == object_name,
                log.c.source_id == source_id)).mappings():
            lines.append(f"logged: {row['source_modified_at']} deleted={row['is_deleted']}")
    return lines


HEADER_LINE = (f"{'backend':<11}{'trial':>6}{'mutations':>10}{'kills s/a/p':>13}"
               f"{'batches':>9}{'records':>9}{'missing':>8}{'extra':>6}{'differ':>7}"
               f"{'quar.':>6}{'s':>6}")


def line(r: PushTrial) -> str:
    missing = sum(m.startswith("missing") for m in r.mismatches)
    extra = sum(m.startswith(("extra", "duplicate")) for m in r.mismatches)
    differ = len(r.mismatches) - missing - extra
    kills = f"{r.kills['server']}/{r.kills['agent']}/{r.kills['processor']}"
    return (f"{r.backend:<11}{r.trial:>6}{r.mutations:>10}{kills:>13}{r.batches:>9}"
            f"{r.rows:>9}{missing:>8}{extra:>6}{differ:>7}{r.quarantined:>6}"
            f"{r.seconds:>6.0f}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chaos_push",
        description="The push agent, the push API (gunicorn) and the processor SIGKILLed at "
        "random while a customer database changes; then the warehouse must equal it.")
    add_common_arguments(parser)
    parser.add_argument("--opportunities", type=int, default=300,
                        help="deals in the customer database (default %(default)s)")
    parser.add_argument("--batch", type=int, default=50,
                        help="the agent's batch size: small, many checkpoints to die between "
                        "(default %(default)s)")
    parser.add_argument("--trial-seconds", type=float, default=20.0,
                        help="how long changes and kills run per trial (default %(default)s)")
    parser.add_argument("--redis-url", default=os.environ.get("ACCRUE_RATELIMIT_STORAGE_URI",
                                                              DEFAULT_REDIS_URL))
    parser.add_argument("--processor", nargs=2, metavar=("WAREHOUSE_URL", "TENANT"),
                        help=argparse.SUPPRESS)  # the processor child
    args = parser.parse_args(argv)
    if args.trials < 1 or args.opportunities < 10 or args.trial_seconds <= 0:
        parser.error("--trials >= 1, --opportunities >= 10 and --trial-seconds > 0")
    if not 1 <= args.batch <= 1000:
        parser.error("--batch is 1 to 1,000")
    check_backends(parser, args)
    return args


def run(args: argparse.Namespace) -> list[PushTrial]:
    """Every trial on every backend reachable; ChaosError on a harness problem."""
    check_redis(args.redis_url)
    keys = crypto.generate_key()
    results: list[PushTrial] = []
    with scratch_warehouses(args.backends, args.postgres_url, SCRATCH_PREFIX,
                            args.keep) as (workdir, urls):
        print(f"chaos push: {args.trials} trial(s) x {len(urls)} backend(s), "
              f"{args.opportunities} deals, batches of {args.batch}, {args.trial_seconds:g} s "
              f"of changes and SIGKILLs (server/agent/processor) per trial, seed {args.seed}",
              flush=True)
        print(HEADER_LINE, flush=True)
        for backend, url in urls.items():
            setup = prepare(backend, url, workdir, args, keys)
            try:
                for trial in range(1, args.trials + 1):
                    result = run_trial(setup, trial, args)
                    results.append(result)
                    print(line(result), flush=True)
                    print_mismatches(result.mismatches, args.verbose)
                    for detail in result.details:
                        print(detail, flush=True)
            finally:
                setup.server.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.processor:
        _processor_loop(*args.processor)
        return 0
    began = time.monotonic()
    try:
        results = run(args)
    except (ChaosError, BenchError) as exc:
        print(f"chaos push failed (a harness problem, not a finding): {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return verdict(sum(len(r.mismatches) for r in results), len(results), began,
                   f"{sum(sum(r.kills.values()) for r in results)} SIGKILLs",
                   f"{sum(r.rows for r in results):,} records compared")


if __name__ == "__main__":
    sys.exit(main())
